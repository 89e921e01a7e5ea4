"""The rules behind `meshagent.ledger.flags`, over one period on one read connection.

Each rule reads the period's aggregates (`meshagent.ledger.flagdata`), decides, and adds a
`Flag` with its owner, people, dollars, evidence, innocent explanation and fix; the thresholds
and what each rule means are in the docstring of `meshagent.ledger.flags`.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection

from meshagent.config import ValueSettings
from meshagent.ledger import flagdata as data
from meshagent.ledger.flagbase import CENT, RULES, AgentCells, Flag, ScheduleCheck
from meshagent.ledger.flagpeople import PeopleRules
from meshagent.ledger.flagspend import SpendRules
from meshagent.ledger.periods import Period

if TYPE_CHECKING:
    from meshagent.ledger.people import People

__all__ = ["Rules"]


class Rules(SpendRules, PeopleRules):
    """Every rule over one period, on one read connection."""

    def __init__(
        self,
        connection: Connection,
        period: Period,
        s: Any,
        value: ValueSettings,
        people: People,
        schedule_check: ScheduleCheck | None,
    ) -> None:
        self.c = connection
        self.period = period
        self.s = s
        self.value = value
        self.people = people
        self.schedule_check = schedule_check
        self.since, self.until = period.start_time, period.end_time
        self.found: list[Flag] = []
        tolerance = 60.0 * s.off_schedule_tolerance_minutes
        self.agents: dict[str, AgentCells] = {}
        for cell in data.cells(connection, self.since, self.until, tolerance):
            agent = self.agents.setdefault(cell.agent, AgentCells(cell.agent))
            agent.owners[people.key(cell.owner)] += cell.runs
            agent.tag = agent.tag or cell.value_tag
            agent.cells.append(cell)
        self.min_usd = Decimal(str(s.min_usd))

    def run(self) -> list[Flag]:
        if not self.agents:
            return []
        history = data.daily_history(
            self.c, self.period.start - timedelta(days=self.s.history_days), self.period.start
        )
        self.past: dict[str, list[tuple[date, int, Decimal, int]]] = defaultdict(list)
        for agent, day, runs, cost, tokens in history:
            self.past[agent].append((day, int(runs), Decimal(cost or 0), int(tokens or 0)))
        for rule in (
            self._bursts,
            self._no_outcome,
            self._failing,
            self._unread,
            self._reruns,
            self._token_outliers,
            self._votes,
            self._claims_and_splits,
            self._loops,
            self._off_schedule,
        ):
            rule()
        return self.found

    # -- helpers --------------------------------------------------------------------------------

    def add(
        self,
        rule: str,
        agent: AgentCells,
        reason: str,
        runs: Iterable[tuple[str, str, str]],
        *,
        usd: Decimal,
        evidence: Iterable[str],
        innocent: str,
        fix: str,
        accountable: str | None = None,
        kind: str = "waste",
    ) -> None:
        runs = list(runs)
        triggerers = sorted({self.people.key(t) for _, _, t in runs if t})
        self.found.append(
            Flag(
                rule=rule,
                subject=agent.name,
                reason=reason,
                run_ids=tuple(run_id for run_id, _, _ in runs),
                owner=agent.owner,
                people=tuple(triggerers),
                accountable=accountable or agent.owner,
                usd=usd.quantize(CENT),
                evidence=tuple(evidence),
                innocent=innocent,
                fix=fix,
                strength=RULES[rule],
                kind=kind,
                period=self.period,
            )
        )

    def material(self, cost: Decimal, habit: Callable[[datetime, datetime], int]) -> bool:
        """Worth a flag: `min_usd` at stake in the period, or a habit whatever it costs: the
        pattern in `habit_runs` runs over the `history_days` up to the period's end, half of
        them before the period (it has gone on for weeks: a one-week spree is no habit).
        `habit(start, end)` counts the pattern's runs started in [start, end)."""
        if cost >= self.min_usd:
            return True
        start = min(self.since, self.until - timedelta(days=self.s.history_days))
        need = self.s.habit_runs
        before = habit(start, self.since)
        return 2 * before >= need and before + habit(self.since, self.until) >= need

    def habit(self, agent: str, condition: str) -> Callable[[datetime, datetime], int]:
        """Counts the agent's runs meeting a rule's condition (`runs`) in a window."""
        cond = data.run_condition(condition)
        return lambda start, end: data.count_where(self.c, agent, start, end, cond)

    def runs(self, agent: str, condition: str | None = None, **options: Any) -> list[Any]:
        cond = data.run_condition(condition) if condition else None
        return data.runs_where(self.c, agent, self.since, self.until, condition=cond, **options)

    # -- rules ----------------------------------------------------------------------------------
