"""The flag rules about what people did with the outputs: unread outputs, self-votes and
rejections, claimed value, split tasks and slash loops.

Mixed into `meshagent.ledger.flagrules.Rules`, which holds the period's state (`c`, `s`,
`agents`, `people`, `value`, ...) and gives `add`, `material`, `habit` and `runs`.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import timedelta
from decimal import Decimal

from meshagent.ledger import flagdata as data
from meshagent.ledger.flagbase import RuleState, usd

__all__ = ["PeopleRules"]


class PeopleRules(RuleState):
    """Unread, self-votes, negative feedback, claimed value, split tasks, slash loops."""

    def _unread(self) -> None:
        s = self.s
        for name, agent in sorted(self.agents.items()):
            alone = agent.total("alone")
            cost = sum((c.alone_cost for c in agent.cells), Decimal(0))
            if alone >= s.audience_of_one_runs and self.material(cost, self.habit(name, "alone")):
                self.add(
                    "unread",
                    agent,
                    f"{name}: {alone} outputs that nobody but their owner could see ({usd(cost)})",
                    self.runs(name, "alone"),
                    usd=cost,
                    evidence=(f"{alone} outputs with an audience of one",),
                    innocent="a personal assistant: useful to its owner, not to the company",
                    fix="post where the readers are, or keep it personal and claim no minutes "
                    f"saved for others: {usd(cost)} this period",
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
                f"anyone but its owner ({usd(cost)})",
                self.runs(name, "delivered"),
                usd=cost,
                evidence=(
                    f"{outputs} checked outputs of {runs} runs since {since.date()}",
                    "no reaction, reply, comment or vote from anyone but owner and triggerer",
                ),
                innocent="read but not reacted to: most useful output draws no reaction",
                fix="ask the readers; post less often or where it is read: "
                f"{usd(cost)} in {s.history_days} days",
            )

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
                f"({sum(days.values())} times this period, {usd(cost[name, who])})",
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
