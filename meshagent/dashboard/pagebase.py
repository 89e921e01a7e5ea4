"""What every dashboard page shares: the viewer, one request's time for slow results, and the
pieces of data several pages use (flags, forecasts, the weekly trend, the credited units).

Every page applies the ledger's privacy rules before returning: folded totals for everyone, rows
per person only for that person or an admin, runs only for their owner, whoever triggered them,
and admins.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields, replace
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from meshagent.config import Config, PrivacySettings
from meshagent.dashboard import queries
from meshagent.dashboard.cache import Answer, Memo, ledger_version
from meshagent.dashboard.filters import Filters
from meshagent.dashboard.worker import Worker
from meshagent.exceptions import LedgerError
from meshagent.ledger.flags import Flag, FlagReport, flag_report, runs_of
from meshagent.ledger.people import directory
from meshagent.ledger.periods import Period
from meshagent.ledger.reports import ForecastRow, ReportRow, forecast
from meshagent.ledger.store import Ledger
from meshagent.ledger.value import ValueRow, credits, headline

log = logging.getLogger(__name__)

# A page waits this long in all for slow results (flags, forecast, trend), then shows the
# previous ones (or says they are being computed); the API waits for them.
PAGE_WAIT = 0.15
API_WAIT = 120.0
TREND_WEEKS = 12
RUNS_PER_PAGE = 50
# Computes the flags as an admin would see them; no header or user can carry a NUL character.
_EVERYONE = "\x00dashboard"


@dataclass(frozen=True)
class Viewer:
    """Who is looking: a person (from the proxy's header or local mode), or nobody known."""

    name: str | None
    admin: bool
    mode: str  # local, header, anonymous

    def as_json(self) -> dict[str, Any]:
        return {"name": self.name, "admin": self.admin, "mode": self.mode}


def row_dict(row: ReportRow) -> dict[str, Any]:
    """A report row with its derived figures (tokens, minutes per dollar, cost per outcome)."""
    values = {f.name: getattr(row, f.name) for f in fields(row)}
    values.update(
        tokens=row.tokens,
        minutes_per_dollar=row.minutes_per_dollar,
        cost_per_outcome=row.cost_per_outcome,
    )
    return values


def jsonable(value: Any) -> Any:
    """JSON-ready: exact decimals as strings, dates and times in ISO 8601."""
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Mapping):
        return {str(key): jsonable(item) for key, item in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [jsonable(item) for item in value]
    return value


def _status(answer: Answer[Any]) -> dict[str, Any]:
    state = "fresh" if answer.fresh else ("stale" if answer.value is not None else "pending")
    return {"state": state, "as_of": answer.as_of}


class Budget:
    """One request's time for slow results, and the ledger version it reads them at."""

    def __init__(self, pages: PagesBase, seconds: float) -> None:
        self.deadline = time.monotonic() + seconds
        self._pages = pages
        self._version: tuple[Any, ...] | None = None

    @property
    def left(self) -> float:
        return max(0.0, self.deadline - time.monotonic())

    @property
    def version(self) -> tuple[Any, ...]:
        if self._version is None:
            self._version = self._pages.version()
        return self._version

    def no_wait(self) -> Budget:
        """The same ledger version and no time: starts a computation and moves on."""
        other = Budget(self._pages, 0.0)
        other._version = self.version
        return other


class PagesBase:
    """The state every page reads (config, ledger, memo, workers) and the shared pieces."""

    def __init__(
        self,
        config: Config,
        ledger: Ledger,
        *,
        today: Callable[[], date],
        fires_per_month: Callable[[date], Mapping[str, float]] | None = None,
    ) -> None:
        self.config = config
        self.ledger = ledger
        self.privacy = config.privacy
        self.today = today
        self.memo = Memo()
        # Flags take seconds over a big ledger; forecasts a moment: each has its own process,
        # so that a page waiting for a forecast does not wait behind the flags.
        self.flag_worker = Worker(ledger)
        self.forecast_worker = Worker(ledger)
        # The credited units and value figures take seconds too: a process of their own keeps
        # them from holding the GIL that the pages need.
        self.value_worker = Worker(ledger)
        self._fires = fires_per_month or self._scan_fires
        self._fires_cache: tuple[float, date, Mapping[str, float]] | None = None

    def start(self) -> None:
        """Start the worker processes and this week's flags, for the first pages."""
        self.flag_worker.start()
        self.forecast_worker.start()
        self.value_worker.start()
        try:
            self.all_flags(Period.week(self.today()), Budget(self, 0.0))
        except LedgerError as exc:  # a page will say so; the app itself can start
            log.warning("the dashboard cannot read the ledger yet: %s", exc)

    def ready(self) -> bool:
        """Whether the worker processes have booted: until then their start-up (a second or
        two of imports each) takes the cores that pages and Slack acknowledgements need."""
        workers = (self.flag_worker, self.forecast_worker, self.value_worker)
        return all(worker.ready() for worker in workers)

    def close(self) -> None:
        """Stop the worker processes that compute the slow results (abandoning what they
        compute), then wait for the threads that read the ledger: the ledger may be closed
        next, and a read still running would open a connection nobody closes."""
        self.flag_worker.close()
        self.forecast_worker.close()
        self.value_worker.close()
        self.memo.close()

    # -- shared pieces ----------------------------------------------------------------------

    def version(self) -> tuple[Any, ...]:
        return self.ledger.read(ledger_version, what="read the ledger version")

    def fires(self) -> Mapping[str, float]:
        """Scheduled runs per month of each enabled agent (read again after a minute)."""
        today = self.today()
        cached = self._fires_cache
        if cached is None or cached[1] != today or time.monotonic() - cached[0] > 60:
            cached = (time.monotonic(), today, dict(self._fires(today)))
            self._fires_cache = cached
        return cached[2]

    def _scan_fires(self, today: date) -> Mapping[str, float]:
        from meshagent.agentfile.loader import scan_agents

        if not self.config.agents_dir.is_dir():
            return {}
        found = scan_agents(
            self.config.agents_dir,
            value_tags=self.config.value_tags,
            min_interval_seconds=self.config.serve.min_interval_seconds,
        )
        return {spec.name: spec.fires_per_month(today) for spec in found.agents if spec.enabled}

    def all_flags(self, period: Period, budget: Budget) -> Answer[list[Flag]]:
        """Every flag raised in `period`, as an admin sees them (computed once per version)."""
        everyone = PrivacySettings(min_group_size=self.privacy.min_group_size, admins=(_EVERYONE,))

        def compute() -> list[Flag]:
            report: FlagReport = self.flag_worker.run(
                flag_report,
                period=period,
                settings=self.config.flags,
                viewer=_EVERYONE,
                privacy=everyone,
            )
            return list(report.flags)

        key = ("flags", period.start, period.end)
        return self.memo.get(key, budget.version, compute, wait=budget.left)

    def flags_for(self, viewer: Viewer, period: Period, budget: Budget) -> Answer[list[Flag]]:
        """The flags `viewer` may see, as `flag_report(viewer=...)` gives them: all for an admin,
        else those on runs they own or triggered (any of their identities), with only those
        runs; every other field (owner, people, dollars, evidence, fix) kept."""
        answer = self.all_flags(period, budget)
        if viewer.admin or answer.value is None:
            return answer
        if viewer.name is None:
            return Answer([], answer.as_of, answer.fresh)
        ids = sorted({run_id for flag in answer.value for run_id in flag.run_ids})
        mine = runs_of(self.ledger, viewer.name, ids, directory(self.ledger))
        kept = []
        for flag in answer.value:
            runs = tuple(r for r in flag.run_ids if r in mine)
            if runs:
                kept.append(flag if len(runs) == len(flag.run_ids) else replace(flag, run_ids=runs))
        return Answer(kept, answer.as_of, answer.fresh)

    def flag_scope(self, viewer: Viewer) -> str:
        """Whose flags a page shows, in `FlagReport.scope`'s words."""
        if viewer.admin:
            return f"every flag (admin: {viewer.name or 'local'})"
        if viewer.name is None:
            return "no flags: nobody is viewing (give a viewer)"
        return f"flags on runs owned or triggered by {directory(self.ledger).key(viewer.name)}"

    def forecasts(
        self, viewer: Viewer, agents: frozenset[str] | None, budget: Budget
    ) -> Answer[dict[str, ForecastRow]]:
        """Monthly spend forecasts of the agents `viewer` may see (owners, admins)."""
        if viewer.name is None:
            return Answer({}, None, True)
        fires = self.fires()
        if not viewer.admin:
            fires = {a: n for a, n in fires.items() if agents is not None and a in agents}
        if not fires:
            return Answer({}, None, True)
        today = self.today()

        def compute() -> dict[str, ForecastRow]:
            rows = self.forecast_worker.run(
                forecast, dict(fires), today=today, viewer=viewer.name, privacy=self.privacy
            )
            return {row.agent: row for row in rows}

        key = ("forecast", today, None if viewer.admin else viewer.name, tuple(sorted(fires)))
        return self.memo.get(key, budget.version, compute, wait=budget.left)

    def trend(
        self, edges: list[date], team: str | None, tag: str | None, budget: Budget
    ) -> Answer[list[queries.Bucket]]:
        """Sums and people per week (one scan of the rollup, kept until the ledger changes)."""

        def compute() -> list[queries.Bucket]:
            return queries.buckets(self.ledger, edges, team=team, tag=tag)

        key = ("trend", tuple(edges), team, tag)
        return self.memo.get(key, budget.version, compute, wait=budget.left)

    def _team_choices(self, viewer: Viewer, filters: Filters) -> list[str]:
        """Teams for the filter: every team for an admin, else teams big enough to be named.

        A team picked here is still folded like any other selection: naming it shows nothing
        that its figures in the overview would not.
        """
        least = 1 if viewer.admin else self.privacy.min_group_size
        return queries.choices(self.ledger, filters.period, min_people=least)

    def _withheld(self, people: int, privileged: bool) -> bool:
        return not privileged and 0 < people < self.privacy.min_group_size

    def _point(self, bucket: queries.Bucket, privileged: bool) -> dict[str, Any]:
        """One point of a series; every figure None when too few people are behind it, or when
        its day or week has not begun (a chart leaves a gap there, never draws $0)."""
        future = bucket.start > self.today()
        hidden = self._withheld(bucket.people, privileged) or future
        users_hidden = future or (
            not privileged and bucket.people_with_usage < self.privacy.min_group_size
        )
        row = bucket.row
        return {
            "start": bucket.start,
            "future": future,
            "withheld": hidden and not future,
            "runs": None if hidden else row.runs,
            "runs_with_outcome": None if hidden else row.runs_with_outcome,
            "cost_usd": None if hidden else row.cost_usd,
            "runs_cost_unknown": None if hidden else row.runs_cost_unknown,
            "minutes_saved": None if hidden else row.minutes_saved,
            "minutes_per_dollar": None if hidden else row.minutes_per_dollar,
            "tokens": None if hidden else row.tokens,
            "people_with_outcome": None if users_hidden else bucket.people_with_outcome,
            "people_with_usage": None if users_hidden else bucket.people_with_usage,
        }

    def value_rows(self, period: Period, by: str, budget: Budget) -> Answer[list[ValueRow]]:
        """`value.headline`'s rows of `period` by team or agent, once per ledger version: each
        group's value per dollar, the figure that ranks groups (evidenced minutes per dollar,
        weighted by how much evidence there is); `reports.ranking` gives it to a row. The
        period's credited units are handed to it when `credits` has them at this version."""

        def compute() -> list[ValueRow]:
            made = self.credits(period, budget.no_wait())  # the credited units, when read
            credited = made.value if made.fresh else None
            return self.value_worker.run(
                headline, period=period, by=by, value=self.config.value, credited=credited
            )

        key = ("value", by, period.start, period.end)
        return self.memo.get(key, budget.version, compute, wait=budget.left)

    def credits(self, period: Period, budget: Budget) -> Answer[list[Any]]:
        """The period's credited units (`value.credits`), once per ledger version."""

        def compute() -> list[Any]:
            return list(self.value_worker.run(credits, period, value=self.config.value))

        key = ("credits", period.start, period.end)
        return self.memo.get(key, budget.version, compute, wait=budget.left)


def _flag_dict(flag: Flag) -> dict[str, Any]:
    return {
        "rule": flag.rule,
        "subject": flag.subject,
        "reason": flag.reason,
        "count": len(flag.run_ids),
        "run_ids": list(flag.run_ids),
        "owner": flag.owner,
        "people": list(flag.people),
        "accountable": flag.accountable,
        "usd": flag.usd,
        "evidence": list(flag.evidence),
        "innocent": flag.innocent,
        "fix": flag.fix,
        "strength": flag.strength,
        "kind": flag.kind,
    }
