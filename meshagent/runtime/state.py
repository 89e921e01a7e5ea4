"""The state of one task while it runs, what the runtime lends it, and what the task returns.

The runtime (``runtime.py``), its model guard (``model_calls.py``) and its tool loop
(``agent_loop.py``) all work on one run's state; it lives here, below the three, so that each
of them imports it and none imports another's internals. ``Host`` is what a run needs of the
runtime it runs in, so this module and those above it depend on that and not on ``Runtime``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Protocol

from meshagent.ledger import records
from meshagent.runtime.prompt import FrameworkShare

if TYPE_CHECKING:
    from meshagent.actions import Outcome, Registry
    from meshagent.agentfile.spec import AgentSpec
    from meshagent.ledger.store import Ledger

__all__ = ["Host", "Refusal", "RunResult", "RunState", "Stop", "compact"]

log = logging.getLogger("meshagent.runtime.runner")


class Stop(Exception):
    """Ends a run early with a status (over_budget, skipped_unchanged, denied)."""

    def __init__(self, status: str, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


@dataclass(frozen=True)
class Refusal:
    """A tool call the runtime refused because it fell outside the agent's grant."""

    action: str
    reason: str
    arguments: dict[str, Any]


class Host(Protocol):
    """What a run needs of the runtime it runs in (``meshagent.runtime.runner.Runtime`` is one)."""

    ledger: Ledger
    registry: Registry
    env: Mapping[str, str]
    connector_settings: Mapping[str, Mapping[str, Any]]
    retries: int
    retry_base_seconds: float
    now: Callable[[], datetime]

    def alone(self) -> bool: ...

    def price(self, model: str, usage: records.Usage) -> records.Cost | None: ...

    def semaphore(self, model: str) -> asyncio.Semaphore: ...

    def time_limit(self, spec: AgentSpec) -> tuple[float, bool]: ...


@dataclass
class RunResult:
    """What one task did: its answer, what it delivered, what it spent, and its ledger entry."""

    run_id: str
    agent: str
    status: str
    model: str
    answer: str | None = None
    outcomes: list[Outcome] = field(default_factory=list)
    usage: records.Usage = field(default_factory=records.Usage)
    cost_usd: Decimal | None = Decimal(0)
    #: Prompt tokens the framework wrote (estimated), and their parts in words (README:
    #: "framework share"): headings, tool schemas, refusal notes, over every model call.
    framework_prompt_tokens: int = 0
    framework_share: str = ""
    refusals: list[Refusal] = field(default_factory=list)
    error: str | None = None
    dry_run: bool = False
    input_hash: str | None = None
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0
    entry: dict[str, Any] | None = None  # the ledger entry, when the caller asked for it
    staged: list[Any] = field(default_factory=list)  # writes waiting for approval (Approval)

    @property
    def ok(self) -> bool:
        return self.status in ("ok", "skipped_unchanged")


class RunState:
    """The state of one task while it runs: what it spent, produced and was refused."""

    def __init__(self, runtime: Host, spec: AgentSpec, run_id: str, model: str) -> None:
        self.runtime = runtime
        self.spec = spec
        self.run_id = run_id
        self.model = model
        self.usage = records.Usage()
        self.cost = Decimal(0)
        self.cost_known = True
        self.outcomes: list[Outcome] = []
        self.refusals: list[Refusal] = []
        self.events: list[records.Event] = []
        self.answer: str | None = None
        self.said: str | None = None  # the last text the model answered with
        self.stopped: Stop | None = None
        self.model_answered: str | None = None
        self.tool_calls = 0
        self.framework = FrameworkShare()  # prompt tokens the author did not write
        # Spent but not yet in the ledger: written before the run's next step, or by the close.
        self.unrecorded: list[tuple[records.Usage, records.Cost | None, str | None]] = []
        # max_usd_per_day: the UTC day whose budget the run spends, whether it holds
        # reservations not yet released (dropped with the next write of its spending), and
        # what its last call reserved.
        self.day: date | None = None
        self.reserved = False
        self.reservation: Decimal | None = None

    def closing(self, status: str, error: str | None, input_hash: str | None) -> dict[str, Any]:
        """The arguments of close_run: the status, the spending not yet written, what it made."""
        usage, cost, answered = self.take_unrecorded()
        finished, events = self.runtime.now(), list(self.events)
        if self.framework.calls:  # what of its prompts the framework wrote, call by call
            share = self.framework.as_detail()
            events.append(records.Event(records.PROMPT_SHARE, "framework share", share, finished))
        return {
            "status": status,
            "usage": usage + records.Usage(tool_calls=self.tool_calls),
            "cost": cost,
            "model_answered": answered,
            "error": error[:2000] if error else None,
            "outcomes": [records.Outcome.of(o) for o in self.outcomes],
            "input_hash": input_hash,
            "finished_at": finished,
            "events": events,
            "release_reservations": self.reserved,
        }

    # -- spending -----------------------------------------------------------------------------

    def spend(self, usage: records.Usage, model_answered: str | None) -> None:
        """Add one model response's usage, priced, to the run; `record()` writes it."""
        cost = self.runtime.price(self.model, usage)
        self.usage = self.usage + usage
        tokens = usage.input_tokens + usage.output_tokens
        if cost is None and tokens:
            self.cost_known = False
        elif cost is not None:
            self.cost += cost.total_usd
        self.model_answered = model_answered or self.model_answered
        self.unrecorded.append((usage, cost, model_answered))
        if self.reservation is not None and cost is not None and cost.total_usd > self.reservation:
            log.warning(
                "run %s of %s: a model call cost $%s, more than the $%s it reserved of "
                "max_usd_per_day (its prompt or output was larger than estimated)",
                self.run_id, self.spec.name, cost.total_usd, self.reservation,
            )  # fmt: skip

    async def record(self) -> None:
        """Write what the run spent since the last write into its entry; durable on return.

        Called before every step that waits on the world (a tool call, a model call, a
        delivery): a crash or kill there leaves the spent tokens in the ledger. When nothing
        comes between a response and the close, the close writes it instead, in one commit.
        """
        if self.unrecorded:
            usage, cost, answered = self.take_unrecorded()
            # The calls whose spending this is end their budget reservations in the same write.
            release = self.reserved
            if self.runtime.alone():
                self.runtime.ledger.record_usage(
                    self.run_id,
                    usage,
                    cost=cost,
                    model_answered=answered,
                    release_reservations=release,
                )
            else:
                await self.runtime.ledger.arecord_usage(
                    self.run_id,
                    usage,
                    cost=cost,
                    model_answered=answered,
                    release_reservations=release,
                )
            if release:  # not before: a run whose write failed still releases at its close
                self.reserved = False

    def take_unrecorded(self) -> tuple[records.Usage, records.Cost | None, str | None]:
        """The spending not yet written, added up (an unknown price makes the sum unknown)."""
        spent, self.unrecorded = self.unrecorded, []
        usage = records.Usage()
        for part, _, _ in spent:
            usage = usage + part
        answered = next((a for _, _, a in reversed(spent) if a is not None), None)
        costs = [cost for _, cost, _ in spent if cost is not None]
        unknown = any(cost is None and _tokens(part) for part, cost, _ in spent)
        if unknown or not costs:
            return usage, None, answered
        return usage, _sum_costs(costs), answered

    def over_budget(self, *, before_call: bool) -> str | None:
        """Why the run may not make another model call (or went over), or None."""
        budget = self.spec.budget
        used = self.usage
        if (
            before_call
            and budget.max_model_calls is not None
            and used.model_calls >= budget.max_model_calls
        ):
            return f"max_model_calls of {budget.max_model_calls} reached"
        tokens = used.input_tokens + used.output_tokens
        if budget.max_tokens_per_run is not None and tokens >= budget.max_tokens_per_run:
            return f"max_tokens_per_run of {budget.max_tokens_per_run:,} reached ({tokens:,})"
        if budget.max_usd_per_run is not None and self.cost >= budget.max_usd_per_run:
            return f"max_usd_per_run of ${budget.max_usd_per_run} reached (${self.cost:.4f})"
        return None

    def tool_event(self, kind: str, name: str, detail: str) -> None:
        self.events.append(records.Event(kind, name, detail, datetime.now(UTC)))
        if kind != "tool_refused":  # a refused call never ran
            self.tool_calls += 1
            self.usage = self.usage + records.Usage(tool_calls=1)


def _tokens(usage: records.Usage) -> int:
    return usage.input_tokens + usage.output_tokens


def _sum_costs(costs: list[records.Cost]) -> records.Cost:
    last = costs[-1]
    return records.Cost(
        sum((c.input_usd for c in costs), Decimal(0)),
        sum((c.cache_usd for c in costs), Decimal(0)),
        sum((c.output_usd for c in costs), Decimal(0)),
        last.source,
        last.version,
    )


def compact(data: Any) -> Any:
    """Data without empty values: nulls, empty strings and lists cost tokens and say nothing."""
    if isinstance(data, dict):
        return {k: compact(v) for k, v in data.items() if v not in (None, "", [], {})}
    if isinstance(data, list):
        return [compact(v) for v in data]
    return data
