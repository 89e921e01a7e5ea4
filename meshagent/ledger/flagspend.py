"""The flag rules about spend and its habits: bursts, runs that produced nothing, failures,
unchanged re-runs, token outliers and runs off their schedule.

Mixed into `meshagent.ledger.flagrules.Rules`, which holds the period's state (`c`, `s`,
`agents`, `past`, ...) and gives `add`, `material`, `habit` and `runs`.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Callable
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import select

from meshagent.ledger import flagdata as data
from meshagent.ledger.flagbase import AgentCells, RuleState, usd
from meshagent.ledger.schema import entries, spent_tokens

__all__ = ["SpendRules"]


class SpendRules(RuleState):
    """Bursts, no outcome, failing, unchanged re-runs, token outliers, off schedule."""

    def _bursts(self) -> None:
        s = self.s
        oldest = self.period.start - timedelta(days=s.burst_window_days)
        for name, agent in sorted(self.agents.items()):
            past = self.past.get(name, [])
            if not past or min(day for day, *_ in past) > oldest or len(past) < 5:
                continue
            usual = Decimal(statistics.median(cost for _, _, cost, _ in past))
            by_day: dict[str, list[data.Cell]] = defaultdict(list)
            for cell in agent.cells:
                by_day[cell.day].append(cell)
            for day, cells in sorted(by_day.items()):
                self._burst_day(agent, day, cells, usual)

    def _burst_day(
        self, agent: AgentCells, day: str, cells: list[data.Cell], usual: Decimal
    ) -> None:
        s = self.s
        threshold = max(usual * Decimal(str(s.burst_factor)), usual + Decimal(str(s.burst_min_usd)))
        spent = sum((c.cost for c in cells), Decimal(0))
        if spent <= threshold or any(c.accepted for c in cells):
            return
        askers = {self.people.key(c.triggered_by) for c in cells if c.triggered_by}
        askers.discard(agent.owner)
        per_person: dict[str, Decimal] = defaultdict(Decimal)
        for c in cells:
            per_person[self.people.key(c.triggered_by or c.owner)] += c.cost
        looper, top = max(per_person.items(), key=lambda item: (item[1], item[0]))
        if len(askers) >= s.burst_breadth_people and top <= threshold:
            return  # many people asked for it on the same day: demand, not a burst
        asked = [c for c in cells if c.triggered_by and self.people.key(c.triggered_by) in askers]
        runs_asked = sum(c.runs for c in asked)
        if (
            runs_asked >= 0.8 * sum(c.runs for c in cells)
            and min(sum(c.distinct_inputs for c in asked), sum(c.delivered for c in asked))
            >= 0.8 * runs_asked
        ):
            return  # others asked, each time about something else, and got an answer: demand
        one = top > threshold and looper != agent.owner
        when = datetime.fromisoformat(day)
        runs = data.runs_where(self.c, agent.name, when, when + timedelta(days=1))
        if one:
            runs = [r for r in runs if self.people.key(r[2] or r[1]) == looper]
        extra = (top if one else spent) - usual
        whose = f"{looper}'s runs of {agent.name}" if one else agent.name
        self.add(
            "burst",
            agent,
            f"{whose}: {usd(top if one else spent)} on {day}, over {self.s.burst_factor:g}x "
            f"the agent's usual day of {usd(usual)}, with no accepted outcome",
            runs,
            usd=extra,
            evidence=(
                f"{len(runs)} runs on {day} cost {usd(top if one else spent)}",
                f"median day with runs over the {self.s.history_days} days before: {usd(usual)}",
                "no outcome of that day was accepted by anyone",
            ),
            innocent="a real spike in demand (an incident, a release day) or a one-off backfill",
            fix=f"check what ran on {day}; cap it with budget.max_usd_per_day: {usd(extra)} "
            "above a usual day",
            accountable=looper if one else None,
        )

    def _no_outcome(self) -> None:
        s = self.s
        for name, agent in sorted(self.agents.items()):
            empty, spent = agent.total("empty"), agent.total("spent")
            cost = agent.total("empty_cost")
            if empty < s.no_outcome_min_runs or empty < s.no_outcome_share * spent:
                continue
            if not self.material(cost, self.habit(name, "no_outcome")):
                continue
            quiet = agent.total("quiet")
            self.add(
                "no_outcome",
                agent,
                f"{name}: {empty} of {spent} runs spent tokens and produced nothing ({usd(cost)})",
                self.runs(name, "no_outcome"),
                usd=cost,
                evidence=(
                    f"{empty} ok runs with tokens and no outcome, plan or quiet result",
                    f"{quiet} runs declared a quiet result and are not counted",
                ),
                innocent="a monitor that found nothing to report, without saying so",
                fix=f"declare a quiet result when there is nothing to say, or run it less "
                f"often: {usd(cost)} this period",
            )

    def _failing(self) -> None:
        s = self.s
        for name, agent in sorted(self.agents.items()):
            bad, runs = agent.total("failures"), agent.total("runs")
            if bad < s.failure_min_runs or bad < s.failure_share * runs:
                continue
            cost = sum((c.cost for c in agent.cells if c.failures), Decimal(0))
            self.add(
                "failing",
                agent,
                f"{name}: {bad} of {runs} runs failed, went over budget or were interrupted",
                self.runs(name, "failing"),
                usd=cost,
                evidence=(f"{bad} failed runs of {runs}",),
                innocent="a broken credential, a flaky API or a budget set too low",
                fix="read the runs' errors and fix the agent; this is reliability, not waste",
                kind="reliability",
            )

    def _reruns(self) -> None:
        s = self.s
        found: dict[str, list[tuple[Any, ...]]] = defaultdict(list)
        for row in data.rerun_rows(self.c, self.since, self.until):
            found[row[1]].append(row)
        cheap = [
            name
            for name, rows in found.items()
            if len(rows) >= s.unchanged_rerun_min
            and sum((Decimal(r[4] or 0) for r in rows), Decimal(0)) < self.min_usd
        ]
        start = min(self.since, self.until - timedelta(days=s.history_days))
        before = data.rerun_counts(self.c, start, self.since, cheap)  # one query for them all

        def habit(name: str, start: datetime, end: datetime) -> int:
            return before.get(name, 0) if end <= self.since else len(found[name])

        for name, rows in sorted(found.items()):
            cost = sum((Decimal(r[4] or 0) for r in rows), Decimal(0))
            if len(rows) < s.unchanged_rerun_min or name not in self.agents:
                continue
            if not self.material(cost, lambda a, b, name=name: habit(name, a, b)):
                continue
            self.add(
                "unchanged_rerun",
                self.agents[name],
                f"{name}: {len(rows)} runs spent tokens on the same input as its last ok run "
                f"({usd(cost)})",
                [(r[0], r[2] or "", r[3] or "") for r in rows],
                usd=cost,
                evidence=(
                    f"{len(rows)} ok runs whose context hashed the same as the ok run before",
                    "retries after a failure and other people's requests are not counted",
                ),
                innocent="a scheduled job whose source did not change since the last run",
                fix=f"turn on skip_if_unchanged: {usd(cost)} this period",
            )

    def _token_outliers(self) -> None:
        s = self.s
        per_run: dict[str, float] = {}
        for name, agent in self.agents.items():
            runs = agent.total("delivered")
            if runs:
                per_run[name] = agent.total("delivered_tokens") / runs
        for name, tokens in sorted(per_run.items()):
            agent = self.agents[name]
            peers = [
                t
                for other, t in per_run.items()
                if other != name and self.agents[other].tag == agent.tag
            ]
            past = self.past.get(name, [])
            past_runs = sum(r for _, r, _, _ in past)
            if len(peers) < 2 or past_runs < 5:
                continue
            own = sum(t for _, _, _, t in past) / past_runs
            usual = statistics.median(peers)
            if tokens < s.token_outlier_factor * usual or tokens < s.token_outlier_own_factor * own:
                continue
            cost = sum((c.cost for c in agent.cells if c.delivered), Decimal(0))
            extra = cost * Decimal(str(1 - own / tokens))
            over = spent_tokens(entries) >= s.token_outlier_factor * usual
            big = data.run_condition("delivered") & over
            if not self.material(extra, lambda a, b, n=name, c=big: self._count(n, a, b, c)):
                continue
            accepted = agent.total("accepted")
            per_accepted = (
                f"{agent.total('delivered_tokens') / accepted:,.0f} tokens per accepted outcome"
                if accepted
                else "no accepted outcome"
            )
            self.add(
                "token_outlier",
                agent,
                f"{name}: {tokens:,.0f} tokens per run, {tokens / usual:.1f}x agents tagged "
                f"{agent.tag or '(none)'} and {tokens / own:.1f}x its own past",
                self.runs(name, "delivered"),
                usd=extra,
                evidence=(
                    f"{tokens:,.0f} tokens per run with an outcome; {per_accepted}",
                    f"median of {len(peers)} agents with the same tag: {usual:,.0f}",
                    f"its own runs over the {s.history_days} days before: {own:,.0f}",
                ),
                innocent="a bigger input this week (a large release, a long incident)",
                fix=f"trim the context and instructions back: {usd(extra)} this period",
            )

    def _count(self, name: str, start: datetime, end: datetime, condition: Any) -> int:
        return data.count_where(self.c, name, start, end, condition)

    def _off_schedule(self) -> None:
        s = self.s
        for name, agent in sorted(self.agents.items()):
            off = agent.total("off_schedule")
            cost = sum((c.off_schedule_cost for c in agent.cells), Decimal(0))
            runs: list[Any] = []
            if self.schedule_check is not None:
                runs = self._scheduled_off(name, self.schedule_check)
                off = max(off, len(runs))
            if off < s.off_schedule_min_runs:
                continue
            if not runs:
                runs = self._scheduled_off(name, None)
            self.add(
                "off_schedule",
                agent,
                f"{name}: {off} scheduled runs spent outside the agent's declared schedule "
                f"(tolerance {s.off_schedule_tolerance_minutes} min)",
                runs,
                usd=cost,
                evidence=(f"{off} runs marked scheduled, away from a fire time",),
                innocent="a fleet too busy to start on time, or a clock set wrong",
                fix="trigger extra runs by hand (cli, slash), not as scheduled ones",
            )

    def _scheduled_off(self, name: str, check: Callable[[str, datetime], bool] | None) -> list[Any]:
        """The agent's scheduled runs away from their fire time (or from the declared schedule,
        with `check`): a loop over one agent's scheduled runs of the period."""
        tolerance = timedelta(minutes=self.s.off_schedule_tolerance_minutes)
        query = select(
            entries.c.run_id,
            entries.c.owner,
            entries.c.triggered_by,
            entries.c.started_at,
            entries.c.scheduled_for,
        ).where(
            entries.c.agent == name,
            entries.c.started_at >= self.since,
            entries.c.started_at < self.until,
            entries.c.trigger_kind == "schedule",
            entries.c.status.not_in(("running", "skipped_unchanged", "missed")),
        )
        return [
            (r[0], r[1] or "", r[2] or "")
            for r in self.c.execute(query.order_by(entries.c.started_at, entries.c.id))
            if r[4] is None
            or abs(r[3] - r[4]) > tolerance
            or (check is not None and not check(name, r[4]))
        ]
