"""Plain values the ledger API takes: usage that adds up, exact costs, outcomes, closed runs."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

__all__ = [
    "AUDIENCES",
    "FINAL_CHECK",
    "FIRST_CHECK",
    "PLANNED",
    "PROMPT_SHARE",
    "QUIET",
    "STAGED",
    "Cost",
    "Event",
    "Outcome",
    "RunRecord",
    "Usage",
    "prompt_share_of",
]


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
#: The kind of a declared quiet result: "nothing to report" (a monitor that found nothing, a
#: nightly check that passed). A result, not waste: the no-outcome and unread flags leave it out;
#: it is never accepted, so it earns no evidenced minutes. Its ref says what was checked.
QUIET = "quiet"
#: The kind of a write staged for a person's approval (`meshagent.ledger.approvals`) until it is
#: made: its approver judges it (accepted once made, rejected, or ignored when it expired), never
#: the follow-up pass.
STAGED = "staged"
#: Where an outcome can be seen (`Outcome.audience`): a public or private channel, a DM, an
#: ephemeral answer shown only to the person who asked, a thread, a Jira issue or comment.
AUDIENCES = ("public", "private", "dm", "ephemeral", "thread", "jira", "other")


@dataclass(frozen=True)
class Outcome:
    """Something a run produced: a Slack message, a Jira issue, a planned action in dry-run.

    The reach fields say who could see it, as the connector knew at delivery; None is unknown.
    `reaches_others` is whether anyone but the agent's owner and the run's triggerer can see it
    (an ephemeral answer to the person who asked: audience "ephemeral", size 1, and False when
    that person is the owner). `reach_detail` holds what else is known (Jira project, reporter,
    assignee, watchers; a channel's name), stored as JSON.
    """

    kind: str
    ref: str
    url: str | None = None
    audience: str | None = None
    audience_size: int | None = None
    reaches_others: bool | None = None
    reach_detail: Mapping[str, Any] | None = field(default=None, compare=False)

    @classmethod
    def of(cls, made: Any) -> Outcome:
        """The ledger's record of an action's outcome (``meshagent.actions.Outcome``), its reach
        as the connector knew it: read by field, so that the connector interface, below the
        ledger, never imports it."""
        reach = ("audience", "audience_size", "reaches_others", "reach_detail")
        return cls(made.kind, made.reference, made.url, **{n: getattr(made, n) for n in reach})

    @property
    def delivered(self) -> bool:
        """True unless this is only a dry run's plan."""
        return self.kind != PLANNED

    @property
    def quiet(self) -> bool:
        """A declared "nothing to report"."""
        return self.kind == QUIET

    def reach_columns(self) -> dict[str, Any]:
        """The outcome row's reach columns (and its first follow-up, set by the writer)."""
        if self.audience is not None and self.audience not in AUDIENCES:
            raise ValueError(f"audience {self.audience!r} is not one of {', '.join(AUDIENCES)}")
        detail = None
        if self.reach_detail is not None:
            detail = json.dumps(dict(self.reach_detail), sort_keys=True, default=str)
        return {
            "audience": self.audience,
            "audience_size": self.audience_size,
            "reaches_others": self.reaches_others,
            "reach_detail": detail,
        }

    def row(self, run_id: str, created_at: datetime) -> dict[str, Any]:
        """The whole `ledger_outcomes` row of this outcome, pending its first check.

        Plans and quiet results are never checked: nobody is meant to react to them.
        """
        checked = self.delivered and not self.quiet
        return {
            "run_id": run_id,
            "kind": self.kind,
            "ref": self.ref,
            "url": self.url,
            "created_at": created_at,
            **self.reach_columns(),
            "verdict": "pending",
            "next_check_at": created_at + FIRST_CHECK if checked else None,
        }


#: When the follow-up pass first reads an outcome back, and when its verdict is final.
FIRST_CHECK = timedelta(days=1)
FINAL_CHECK = timedelta(days=7)
#: The kind of the event that keeps what of a run's prompts the framework wrote, not the
#: author (``meshagent.runtime.prompt.FrameworkShare``): its detail is JSON with ``tokens`` and
#: parts. Read with ``Ledger.prompt_share``; ``Ledger.events`` lists a run's steps without it.
PROMPT_SHARE = "prompt"


def prompt_share_of(detail: str | None) -> dict[str, int] | None:
    """The framework share an event of kind PROMPT_SHARE keeps (None: none, or unreadable)."""
    try:
        found = json.loads(detail) if detail else None
    except ValueError:
        return None
    if not isinstance(found, dict) or not isinstance(found.get("tokens"), int):
        return None
    return {key: value for key, value in found.items() if isinstance(value, int)}


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
