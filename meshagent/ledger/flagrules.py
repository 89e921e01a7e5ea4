"""The rules behind `meshagent.ledger.flags`, over one period on one read connection.

Each rule reads the period's aggregates (`meshagent.ledger.flagdata`), decides, and adds a
`Flag` with its owner, people, dollars, evidence, innocent explanation and fix; the thresholds
and what each rule means are in the docstring of `meshagent.ledger.flags`.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, select

from meshagent.config import ValueSettings
from meshagent.ledger import flagdata as data
from meshagent.ledger.flags import RULES, Flag, ScheduleCheck
from meshagent.ledger.periods import Period
from meshagent.ledger.schema import entries, spent_tokens

if TYPE_CHECKING:
    from meshagent.ledger.people import People

__all__ = ["Rules"]

_CENT = Decimal("0.01")


def _usd(amount: Decimal) -> str:
    return f"${amount.quantize(_CENT)}"


@dataclass
class _Agent:
    name: str
    owners: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    tag: str = ""
    cells: list[data.Cell] = field(default_factory=list)

    @property
    def owner(self) -> str:
        return max(self.owners.items(), key=lambda item: (item[1], item[0]))[0]

    def total(self, name: str) -> Any:
        return sum((getattr(cell, name) for cell in self.cells), 0)


class Rules:
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
        self.agents: dict[str, _Agent] = {}
        for cell in data.cells(connection, self.since, self.until, tolerance):
            agent = self.agents.setdefault(cell.agent, _Agent(cell.agent))
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
        agent: _Agent,
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
                usd=usd.quantize(_CENT),
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

    def _burst_day(self, agent: _Agent, day: str, cells: list[data.Cell], usual: Decimal) -> None:
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
            f"{whose}: {_usd(top if one else spent)} on {day}, over {self.s.burst_factor:g}x "
            f"the agent's usual day of {_usd(usual)}, with no accepted outcome",
            runs,
            usd=extra,
            evidence=(
                f"{len(runs)} runs on {day} cost {_usd(top if one else spent)}",
                f"median day with runs over the {self.s.history_days} days before: {_usd(usual)}",
                "no outcome of that day was accepted by anyone",
            ),
            innocent="a real spike in demand (an incident, a release day) or a one-off backfill",
            fix=f"check what ran on {day}; cap it with budget.max_usd_per_day: {_usd(extra)} "
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
                f"{name}: {empty} of {spent} runs spent tokens and produced nothing ({_usd(cost)})",
                self.runs(name, "no_outcome"),
                usd=cost,
                evidence=(
                    f"{empty} ok runs with tokens and no outcome, plan or quiet result",
                    f"{quiet} runs declared a quiet result and are not counted",
                ),
                innocent="a monitor that found nothing to report, without saying so",
                fix=f"declare a quiet result when there is nothing to say, or run it less "
                f"often: {_usd(cost)} this period",
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

    def _unread(self) -> None:
        s = self.s
        for name, agent in sorted(self.agents.items()):
            alone = agent.total("alone")
            cost = sum((c.alone_cost for c in agent.cells), Decimal(0))
            if alone >= s.audience_of_one_runs and self.material(cost, self.habit(name, "alone")):
                self.add(
                    "unread",
                    agent,
                    f"{name}: {alone} outputs that nobody but their owner could see ({_usd(cost)})",
                    self.runs(name, "alone"),
                    usd=cost,
                    evidence=(f"{alone} outputs with an audience of one",),
                    innocent="a personal assistant: useful to its owner, not to the company",
                    fix="post where the readers are, or keep it personal and claim no minutes "
                    f"saved for others: {_usd(cost)} this period",
                )
        since = self.until - timedelta(days=s.history_days)
        engaged = data.engaged_agents(self.c, since, self.until)
        votes = self.votes_by_others
        candidates = [
            name
            for name, agent in self.agents.items()
            if name not in engaged
            and name not in votes
            and agent.total("delivered") > 0
            and not any(r.rule == "unread" and r.subject == name for r in self.found)
        ]
        counts = data.unread_counts(self.c, candidates, since, self.until)
        for name, (outputs, runs, cost) in sorted(counts.items()):
            if outputs < s.no_reaction_runs or not self.material(cost, self.habit(name, "unread")):
                continue
            agent = self.agents[name]
            self.add(
                "unread",
                agent,
                f"{name}: {outputs} outputs in {s.history_days} days, none engaged with by "
                f"anyone but its owner ({_usd(cost)})",
                self.runs(name, "delivered"),
                usd=cost,
                evidence=(
                    f"{outputs} checked outputs of {runs} runs since {since.date()}",
                    "no reaction, reply, comment or vote from anyone but owner and triggerer",
                ),
                innocent="read but not reacted to: most useful output draws no reaction",
                fix="ask the readers; post less often or where it is read: "
                f"{_usd(cost)} in {s.history_days} days",
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
                f"({_usd(cost)})",
                [(r[0], r[2] or "", r[3] or "") for r in rows],
                usd=cost,
                evidence=(
                    f"{len(rows)} ok runs whose context hashed the same as the ok run before",
                    "retries after a failure and other people's requests are not counted",
                ),
                innocent="a scheduled job whose source did not change since the last run",
                fix=f"turn on skip_if_unchanged: {_usd(cost)} this period",
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
                fix=f"trim the context and instructions back: {_usd(extra)} this period",
            )

    def _count(self, name: str, start: datetime, end: datetime, condition: Any) -> int:
        return data.count_where(self.c, name, start, end, condition)

    @property
    def votes_by_others(self) -> set[str]:
        if not hasattr(self, "_votes_cache"):
            self._vote_rows = data.votes(self.c, self.since, self.until)
            self._votes_cache = {v.agent for v in self._vote_rows if not self._own_vote(v)}
        return self._votes_cache

    def _own_vote(self, v: data.Vote) -> bool:
        """A vote by the run's owner, or by its triggerer on an answer that others saw too."""
        if self.people.same(v.person, v.owner):
            return True
        return self.people.same(v.person, v.triggered_by) and not v.asker_only

    def _self_vote(self, v: data.Vote) -> bool:
        """A Useful vote on one's own run; not the asker's say on an answer shown to them
        alone (nobody else could vote on it), even when they own the agent."""
        asker = v.asker_only and self.people.same(v.person, v.triggered_by)
        return v.vote == 1 and self._own_vote(v) and not asker

    def _votes(self) -> None:
        s = self.s
        _ = self.votes_by_others
        own: dict[str, list[data.Vote]] = defaultdict(list)
        negative: dict[str, int] = defaultdict(int)
        positive: dict[str, int] = defaultdict(int)
        for v in self._vote_rows:
            mine = self._own_vote(v)
            if self._self_vote(v):
                own[v.agent].append(v)
            elif not mine:
                (positive if v.vote == 1 else negative)[v.agent] += 1
        earlier = self._own_votes_before(
            [name for name, found in own.items() if len(found) < s.self_vote_min]
        )
        for name, found in sorted(own.items()):
            if len(found) + earlier.get(name, 0) < s.self_vote_min or name not in self.agents:
                continue
            cost = sum((v.cost for v in found), Decimal(0))
            voters = sorted({self.people.key(v.person) for v in found})
            self.add(
                "self_vote",
                self.agents[name],
                f"{name}: {len(found)} Useful votes by the runs' own owner or triggerer "
                f"({', '.join(voters)})",
                [(v.run_id, v.owner, v.triggered_by) for v in found],
                usd=cost,
                evidence=(
                    f"{len(found)} votes by {', '.join(voters)} on their own runs",
                    *(
                        [f"{earlier[name]} more in the {s.history_days} days before"]
                        if earlier.get(name)
                        else []
                    ),
                    "identities joined: a Slack id and an email of one person are one voter",
                ),
                innocent="an owner trying the buttons out, or marking runs for their own notes",
                fix="self-votes never count as evidence; ask the readers to vote",
                accountable=voters[0],
            )
        for name, agent in sorted(self.agents.items()):
            rejected = agent.total("rejected") + negative.get(name, 0)
            accepted = agent.total("accepted") + positive.get(name, 0)
            if rejected < s.negative_feedback_min_votes or rejected <= accepted:
                continue
            runs = self.runs(name, "rejected")
            voted = {v.run_id for v in self._vote_rows if v.agent == name and v.vote == -1}
            if voted:
                runs = sorted(
                    {
                        *runs,
                        *(
                            (v.run_id, v.owner, v.triggered_by)
                            for v in self._vote_rows
                            if v.run_id in voted
                        ),
                    }
                )
            self.add(
                "negative_feedback",
                agent,
                f"{name}: {rejected} rejections (deleted, won't do, thumbs-down) against "
                f"{accepted} acceptances",
                runs,
                usd=agent.total("cost"),
                evidence=(f"{rejected} rejections, {accepted} acceptances by other people",),
                innocent="a hard problem, or readers who want it changed rather than gone",
                fix="read the rejections' evidence and change or retire the agent",
            )

    def _own_votes_before(self, names: list[str]) -> dict[str, int]:
        """Self-votes on the agents' runs in the `history_days` before the period: a habit of
        a few a week adds up to `self_vote_min` over the window."""
        if not names:
            return {}
        start = self.until - timedelta(days=self.s.history_days)
        counts: dict[str, int] = defaultdict(int)
        for v in data.votes(self.c, start, self.since, agents=names):
            if self._self_vote(v):
                counts[v.agent] += 1
        return counts

    def _claims_and_splits(self) -> None:
        s = self.s
        gap = 60.0 * self.value.request_gap_minutes
        found = data.sessions(self.c, self.since, self.until, gap, 1)
        requests: dict[str, int] = defaultdict(int)
        for agent_name, *_ in found:
            requests[agent_name] += 1
        cap = Decimal(self.value.weekly_cap_minutes) * Decimal(
            max(1, (self.until - self.since).days) / 7
        )
        for name, agent in sorted(self.agents.items()):
            claimed = agent.total("claimed")
            delivered = agent.total("delivered")
            if claimed < s.claimed_minutes_min or not delivered:
                continue
            per_run = claimed / delivered
            units = agent.total("scheduled_delivered") + requests.get(name, 0)
            supported = min(per_run * units, cap)
            if claimed <= Decimal(str(s.claimed_factor)) * supported:
                continue
            self.add(
                "claimed_value",
                agent,
                f"{name}: claims {claimed:,.0f} minutes saved this period; its {units} fires "
                f"and requests support at most {supported:,.0f}",
                self.runs(name, "delivered"),
                usd=agent.total("cost"),
                evidence=(
                    f"{delivered} runs with an outcome x {per_run:,.0f} minutes claimed",
                    f"{units} distinct fires and requests; weekly cap {cap:,.0f} minutes",
                    f"{agent.total('accepted')} runs with an accepted outcome",
                ),
                innocent="a minutes_saved written for a daily run, kept when it ran more often",
                fix="set value.minutes_saved to what one reader saves once; only evidenced "
                "minutes count in the headline",
            )
        for agent_name, _owner, person, count, cost, first, last in found:
            if agent_name not in self.agents or count < s.split_min_runs:
                continue
            who = self.people.key(person)
            runs = data.runs_where(self.c, agent_name, first, last + timedelta(microseconds=1))
            runs = [r for r in runs if self.people.key(r[2] or r[1]) == who]
            self.add(
                "split_task",
                self.agents[agent_name],
                f"{agent_name}: {count} runs by {who}, each within "
                f"{self.value.request_gap_minutes} min of the last, from {first:%Y-%m-%d %H:%M}",
                runs,
                usd=Decimal(cost or 0),
                evidence=(
                    f"{count} runs, {first:%H:%M}-{last:%H:%M}, by one person",
                    "credited once as one request in evidenced value",
                ),
                innocent="a batch over many items, each worth its own answer",
                fix="give the agent the whole task in one run (an input list): it is one "
                "request however many runs it takes",
                accountable=who,
            )

    def _loops(self) -> None:
        s = self.s
        per: dict[tuple[str, str], dict[str, int]] = defaultdict(lambda: defaultdict(int))
        cost: dict[tuple[str, str], Decimal] = defaultdict(Decimal)
        for name, agent in self.agents.items():
            for cell in agent.cells:
                if cell.trigger_kind != "slash":
                    continue
                key = (name, self.people.key(cell.triggered_by or cell.owner))
                per[key][cell.day] += cell.runs
                cost[key] += cell.cost
        for (name, who), days in sorted(per.items()):
            busiest, most = max(days.items(), key=lambda item: (item[1], item[0]))
            if most < s.loop_runs_per_day:
                continue
            agent = self.agents[name]
            runs = [r for r in self.runs(name, "slash") if self.people.key(r[2] or r[1]) == who]
            self.add(
                "slash_loop",
                agent,
                f"{who} ran /{name} {most} times on {busiest} "
                f"({sum(days.values())} times this period, {_usd(cost[name, who])})",
                runs,
                usd=cost[name, who],
                evidence=(
                    f"{most} runs on {busiest} by {who}",
                    f"owner: {agent.owner}"
                    + (" (a teammate's agent)" if who != agent.owner else ""),
                ),
                innocent="a long working session, or a script calling the command",
                fix=f"{who}: ask once with the whole question; the owner may cap the agent "
                "with budget.max_usd_per_day",
                accountable=who,
            )

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

    def _scheduled_off(self, name: str, check: ScheduleCheck | None) -> list[Any]:
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
