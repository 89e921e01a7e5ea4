"""Plain values the ledger API takes: usage that adds up, exact costs, outcomes, closed runs."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from datetime import datetime
from decimal import Decimal
from typing import Any

__all__ = ["PLANNED", "Cost", "Event", "Outcome", "RunRecord", "Usage"]


@dataclass(frozen=True)
class Usage:
    """Tokens and calls spent; `a + b` adds every count, `estimated` sticks once set."""

    input_tokens: int = 0  # including cached input
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    output_tokens: int = 0
    reasoning_tokens: int = 0
    model_calls: int = 0
    tool_calls: int = 0
    estimated: bool = False

    def __add__(self, other: Usage) -> Usage:
        counts = {
            f.name: getattr(self, f.name) + getattr(other, f.name)
            for f in fields(self)
            if f.name != "estimated"
        }
        return Usage(**counts, estimated=self.estimated or other.estimated)

    def columns(self) -> dict[str, Any]:
        """The entry columns this usage fills."""
        values = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "estimated"}
        return {**values, "usage_estimated": self.estimated}

    @classmethod
    def from_columns(cls, row: Mapping[str, Any]) -> Usage:
        names = [f.name for f in fields(cls) if f.name != "estimated"]
        return cls(**{name: row[name] for name in names}, estimated=row["usage_estimated"])


@dataclass(frozen=True)
class Cost:
    """What a run cost in USD, split by kind; build it only when the model's price is known.

    An unknown price is `cost=None` on the call, never a Cost of zero.
    """

    input_usd: Decimal
    cache_usd: Decimal
    output_usd: Decimal
    source: str | None = None
    version: str | None = None

    @property
    def total_usd(self) -> Decimal:
        return Decimal(self.input_usd) + Decimal(self.cache_usd) + Decimal(self.output_usd)

    def columns(self) -> dict[str, Any]:
        return {
            "cost_input_usd": Decimal(self.input_usd),
            "cost_cache_usd": Decimal(self.cache_usd),
            "cost_output_usd": Decimal(self.output_usd),
            "cost_usd": self.total_usd,
            "price_source": self.source,
            "price_version": self.version,
        }


#: The kind of a dry run's outcome: what a write would have done. It is kept, but it is not
#: value: reports, adoption and the no-outcome flag count only outcomes of other kinds.
PLANNED = "planned"


@dataclass(frozen=True)
class Outcome:
    """Something a run produced: a Slack message, a Jira issue, a planned action in dry-run."""

    kind: str
    ref: str
    url: str | None = None

    @property
    def delivered(self) -> bool:
        """True unless this is only a dry run's plan."""
        return self.kind != PLANNED


@dataclass(frozen=True)
class Event:
    """A step of a run worth seeing later: a tool call, a refused call, a failed call."""

    kind: str  # tool_call, tool_refused, tool_failed
    name: str  # the action, e.g. slack.post_message
    detail: str | None = None
    at: datetime | None = None


@dataclass
class RunRecord:
    """A whole run, already finished, for the batching writer: opened, spent and closed at once."""

    agent: str
    status: str
    started_at: datetime
    finished_at: datetime
    agent_version: str | None = None  # hash of the agent's spec
    owner: str | None = None
    team: str | None = None
    value_tag: str | None = None
    minutes_saved: Decimal | float | int | None = None
    trigger_kind: str = "api"
    triggered_by: str | None = None
    scheduled_for: datetime | None = None
    provider: str | None = None
    model_requested: str | None = None
    model_answered: str | None = None
    usage: Usage = field(default_factory=Usage)
    cost: Cost | None = None
    input_hash: str | None = None
    error: str | None = None
    outcomes: tuple[Outcome, ...] = ()
    run_id: str | None = None
    idempotency_key: str | None = None
