"""Flags benchmark (not a test): do the flags and the headline value figure tell gaming from
honest use, with the default settings, on simulated organisations? And how long do a week's flags
take over a 1,000,000-entry ledger, on SQLite and PostgreSQL?

Each seed builds a company of its own: 6 to 8 teams of 5 to 8 people, each person with an email
(agent owners), a Slack user id (slash commands, votes, reactions) and a login (the CLI and
scripts); the Slack connector joins ids and emails, `[people] aliases` most logins. Over 8 weeks
its agents run as their archetype says, every parameter drawn per agent from wide ranges
(frequency, tokens, model, claimed minutes, audience, how often people react), with noise on
every figure. Everything goes in through the public API: `Ledger.write_records` (runs, their
outcomes and reach), `Ledger.add_feedback` (votes), `people.link` / `sync_aliases`, and the
follow-up pass's `verdicts.judge_many` with the evidence it would read back (reactions of any
kind, replies, Jira resolutions, deletions; by others, by the owner, by bots), a day and a week
after each outcome. People engage with 5-10 % of useful outputs, as in real life.

Honest archetypes: daily digest, weekly report, incident bot (some incidents with one person on
call asking again and again), quiet monitor, busy alerts, brand-new agent, expensive release
notes, ephemeral slash helper, flaky-but-honest digest, Jira triage, a helper with one heavy
(honest) user. Gaming: 5-minute poller, posts nobody reads, padded prompts (they
keep growing), a teammate looping a slash agent, one task split into many runs, owner
self-votes, a private channel of one, unchanged re-runs, inflated claims, an agent loop that
delivers nothing.

The flags are computed per week for weeks 5-8 with `FlagSettings()` and `ValueSettings()`: an
(agent, week) pair is "flagged" when a waste flag names the agent (reliability flags, the flaky
agent's failures, are reported apart), and gaming when the agent gamed that week (a looper's
agent in a week without loops, a padder before it pads, are honest weeks). Printed per seed and
overall: the share flagged per archetype, precision and recall against the truth, the false
flags with their reasons, and the rank AUC of the headline value figure over all weeks, honest
above gaming: `value_per_dollar` (evidenced minutes saved per dollar, weighed by how much evidence
there is: `meshagent.ledger.value.estimate`), and beside it the raw evidenced minutes per dollar.

    python bench/bench_flags.py [--seeds 5] [--first-seed 1] [--quick] [--big] [--perturb]
                                [--backend sqlite|postgresql|both] [--entries 1000000]

--perturb prints the overall figures again for the same seeds with the organisation varied
(PERTURBATIONS: people engaging half or twice as often, prices x0.3 and x3, teams of 3-5 or
9-14 people, 6 or 12 weeks), the settings still the defaults: figures that hold only for the
organisation as first drawn would be fitted to it.

--quick runs 2 seeds of 4 weeks (--seeds 0: the timing alone). --big times a week of flags over
the 1,000,000-entry ledger that bench_dashboard seeds (bulk inserts; its own SQLite file, and a
PostgreSQL schema dropped after).
"""

from __future__ import annotations

import argparse
import hashlib
import random
import statistics
import tempfile
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from meshagent.config import FlagSettings, PrivacySettings, ValueSettings
from meshagent.ledger import Cost, Ledger, Outcome, RunRecord, Usage, people, value, verdicts
from meshagent.ledger.flags import flags
from meshagent.ledger.periods import Period
from meshagent.ledger.records import PLANNED, QUIET
from meshagent.ledger.verdicts import Evidence

START = datetime(2026, 9, 7, tzinfo=UTC)  # a Monday
ADMIN = "bench-admin"
PRIVACY = PrivacySettings(admins=(ADMIN,))
MODELS = {  # USD per million tokens (input, output)
    "openai:gpt-4.1-mini": (0.4, 1.6),
    "openai:gpt-4.1": (2.0, 8.0),
    "anthropic:claude-sonnet-4-5": (3.0, 15.0),
}
TARGETS = {"precision": 0.9, "recall": 0.9, "auc": 0.9}


@dataclass
class Knobs:
    """What --perturb varies around the organisation every archetype is drawn in: how often
    people engage (a factor on every engagement and vote rate), what tokens cost (a factor on
    every price) and how many people a team has. The archetypes and their truth never change."""

    feedback: float = 1.0
    cost: float = 1.0
    team: tuple[int, int] = (5, 8)


KNOBS = Knobs()
PERTURBATIONS = {  # name: (knobs, weeks or None for --weeks)
    "feedback x0.5": (Knobs(feedback=0.5), None),
    "feedback x2": (Knobs(feedback=2.0), None),
    "costs x0.3": (Knobs(cost=0.3), None),
    "costs x3": (Knobs(cost=3.0), None),
    "teams of 3-5": (Knobs(team=(3, 5)), None),
    "teams of 9-14": (Knobs(team=(9, 14)), None),
    "6 weeks": (Knobs(), 6),
    "12 weeks": (Knobs(), 12),
}
POSITIVE = ("reaction:+1", "reaction:eyes", "reaction:white_check_mark", "reply", "reaction:tada")


@dataclass
class Person:
    email: str
    slack: str
    login: str
    team: str


@dataclass
class Agent:
    name: str
    archetype: str
    gaming: bool
    owner: Person
    team: str
    tag: str
    model: str
    minutes: int
    p: dict[str, Any] = field(default_factory=dict)


@dataclass
class Planned:
    record: RunRecord
    evidence: list[Evidence]  # what the follow-up pass will find on each of its outcomes
    votes: list[tuple[str, int]]


@dataclass
class World:
    rng: random.Random
    weeks: int
    people: list[Person]
    teams: dict[str, list[Person]]
    agents: list[Agent] = field(default_factory=list)
    gamed: set[tuple[str, int]] = field(default_factory=set)  # (agent, week) it gamed in
    runs: list[Planned] = field(default_factory=list)

    @property
    def end(self) -> datetime:
        return START + timedelta(weeks=self.weeks)


# -- the company ---------------------------------------------------------------------------------


def company(rng: random.Random, weeks: int) -> World:
    teams: dict[str, list[Person]] = {}
    everyone = []
    for t in range(rng.randint(6, 8)):
        team = f"team{t}"
        for i in range(rng.randint(*KNOBS.team)):
            login = f"{team}p{i}"
            slack = "U" + hashlib.sha1(login.encode()).hexdigest()[:8].upper()
            person = Person(f"{login}@example.com", slack, login, team)
            teams.setdefault(team, []).append(person)
            everyone.append(person)
    return World(rng, weeks, everyone, teams)


def _cost(model: str, tokens_in: int, tokens_out: int) -> Cost:
    price_in, price_out = (price * KNOBS.cost for price in MODELS[model])
    return Cost(
        Decimal(tokens_in) * Decimal(str(price_in)) / 1_000_000,
        Decimal(0),
        Decimal(tokens_out) * Decimal(str(price_out)) / 1_000_000,
        source="bench",
    )


def _noisy(rng: random.Random, base: float, sigma: float = 0.3) -> int:
    return max(1, int(base * rng.lognormvariate(0, sigma)))


class Run:
    """Builds one run of an agent: its tokens, cost, outcome with reach, and what people do."""

    def __init__(self, world: World, agent: Agent, at: datetime) -> None:
        self.world, self.agent, self.at = world, agent, at
        self.rng = world.rng
        self.status = "ok"
        self.trigger = "schedule"
        self.by: str | None = None
        self.scheduled: datetime | None = at
        self.tokens_in = _noisy(self.rng, agent.p.get("tokens", 4000))
        self.tokens_out = _noisy(self.rng, agent.p.get("out", 400))
        self.input_hash = uuid.uuid4().hex
        self.outcomes: list[Outcome] = []
        self.evidence: list[Evidence] = []
        self.votes: list[tuple[str, int]] = []
        # Whether this run games: always for a gaming archetype, except those that game at
        # times (a looper on the days it loops, a splitter's split tasks, ...), which say so.
        self.gaming = agent.gaming and agent.archetype not in PART_TIME

    def asked(self, person: Person, kind: str = "slash") -> Run:
        self.trigger, self.scheduled = kind, None
        self.by = person.slack if kind == "slash" else person.login
        return self

    def post(
        self, audience: str, size: int, *, others: bool = True, kind: str = "slack.message"
    ) -> Run:
        ref = f"C{self.rng.randrange(10**9)}:{self.at.timestamp()}"
        self.outcomes.append(
            Outcome(kind, ref, audience=audience, audience_size=size, reaches_others=others)
        )
        return self

    def jira(self, watchers: int) -> Run:
        key = f"OPS-{self.rng.randrange(10**6)}"
        detail = {"project": "OPS", "reporter": self.agent.owner.email, "watchers": watchers}
        self.outcomes.append(
            Outcome(
                "jira.issue",
                key,
                audience="jira",
                audience_size=1 + watchers,
                reaches_others=True,
                reach_detail=detail,
            )  # fmt: skip
        )
        return self

    def engage(self, rate: float, *, pool: list[Person] | None = None) -> Run:
        """People other than the owner react, reply or vote with probability `rate`; the owner
        and bots add noise that the verdict rule leaves out."""
        rng, when = self.rng, self.at + timedelta(minutes=self.rng.randint(5, 600))
        pool = pool or self.world.teams[self.agent.team]
        others = [p for p in pool if p is not self.agent.owner and p.slack != self.by]
        if others and rng.random() < rate * KNOBS.feedback:
            who = rng.choice(others)
            if rng.random() < 0.25:
                self.votes.append((who.slack, 1))
            else:
                self.evidence.append(Evidence(who.slack, rng.choice(POSITIVE), when))
            if rng.random() < 0.03:
                self.evidence.append(Evidence(rng.choice(others).slack, "reaction:-1", when))
        if rng.random() < 0.1:
            self.evidence.append(Evidence(self.agent.owner.slack, "reaction:+1", when))
        if rng.random() < 0.03:
            self.evidence.append(Evidence("U0BOTBOT1", "reaction:white_check_mark", when, True))
        return self

    def asker_votes(self, rate: float) -> Run:
        """An ephemeral answer can only be voted on, by the person who asked."""
        if self.by is not None and self.rng.random() < rate * KNOBS.feedback:
            self.votes.append((self.by, 1 if self.rng.random() > 0.1 else -1))
        return self

    def fail(self) -> Run:
        self.status, self.outcomes, self.evidence = "failed", [], []
        self.tokens_out = 0
        return self

    def skip(self) -> Run:
        self.status, self.tokens_in, self.tokens_out = "skipped_unchanged", 0, 0
        return self

    def add(self) -> None:
        agent = self.agent
        spent = self.status != "skipped_unchanged"
        usage = Usage(input_tokens=self.tokens_in, output_tokens=self.tokens_out,
                      model_calls=int(spent))  # fmt: skip
        record = RunRecord(
            agent=agent.name,
            status=self.status,
            started_at=self.at,
            finished_at=self.at + timedelta(seconds=self.rng.uniform(2, 40)),
            owner=agent.owner.email,
            team=agent.team,
            value_tag=agent.tag,
            minutes_saved=agent.minutes,
            trigger_kind=self.trigger,
            triggered_by=self.by,
            scheduled_for=self.scheduled,
            provider=agent.model.partition(":")[0],
            model_requested=agent.model,
            model_answered=agent.model.partition(":")[2],
            usage=usage,
            cost=_cost(agent.model, self.tokens_in, self.tokens_out),
            input_hash=self.input_hash if spent else None,
            outcomes=tuple(self.outcomes),
            run_id=str(uuid.uuid4()),
            error="upstream 503" if self.status == "failed" else None,
        )
        self.world.runs.append(Planned(record, self.evidence, self.votes))
        if self.gaming:
            self.world.gamed.add((agent.name, (self.at - START).days // 7))


# -- schedules -----------------------------------------------------------------------------------


def _days(world: World, first_week: int = 0) -> list[datetime]:
    return [START + timedelta(days=d) for d in range(7 * first_week, 7 * world.weeks)]


def _weekdays(world: World, first_week: int = 0) -> list[datetime]:
    return [day for day in _days(world, first_week) if day.weekday() < 5]


def _every(world: World, minutes: float, hours: tuple[int, int] = (0, 24)) -> list[datetime]:
    found, at = [], START + timedelta(minutes=world.rng.uniform(0, minutes))
    while at < world.end:
        if hours[0] <= at.hour < hours[1] and (hours != (8, 19) or at.weekday() < 5):
            found.append(at)
        at += timedelta(minutes=minutes)
    return found


def _at(day: datetime, hour: float, rng: random.Random, jitter: float = 0.02) -> datetime:
    return day + timedelta(hours=hour, seconds=rng.uniform(0, jitter * 3600))


# -- archetypes: honest --------------------------------------------------------------------------


def daily_digest(world: World, agent: Agent, first_week: int = 0) -> None:
    rng, p = world.rng, agent.p
    for day in _weekdays(world, first_week):
        run = Run(world, agent, _at(day, 9, rng))
        if rng.random() < p["unchanged"]:
            if p["skip"]:
                run.skip()
            else:
                run.post("public", p["members"]).engage(p["rate"])
            run.input_hash = p.setdefault("last", run.input_hash)
        elif rng.random() < p.get("fails", 0.0):
            run.fail()
        else:
            run.post("public", p["members"]).engage(p["rate"])
            p["last"] = run.input_hash
        run.add()
        if rng.random() < 0.05:  # the owner tries a change with a dry run
            dry = Run(world, agent, _at(day, 14, rng, 3)).asked(agent.owner, "cli")
            dry.outcomes.append(Outcome(PLANNED, "slack.post_message #digest"))
            dry.add()


def weekly_report(world: World, agent: Agent) -> None:
    for day in _days(world):
        if day.weekday() == 0:
            Run(world, agent, _at(day, 8.5, world.rng)).post("public", agent.p["members"]).engage(
                agent.p["rate"] * 2
            ).add()


def incident_bot(world: World, agent: Agent) -> None:
    rng, team = world.rng, world.teams[agent.team]
    for day in _days(world):
        if rng.random() > agent.p["incidents"]:
            continue
        askers = rng.sample(team, rng.randint(1, min(5, len(team))))
        requests = rng.randint(2, agent.p["requests"])
        if rng.random() < 0.3:  # a long incident: the one person on call asks again and again
            askers, requests = askers[:1], rng.randint(8, 20)
        for _ in range(requests):
            run = Run(world, agent, _at(day, rng.uniform(8, 20), rng, 0.5))
            run.asked(rng.choice(askers)).post("thread", agent.p["members"])
            run.engage(agent.p["rate"] * 2).add()


def hourly_alerts(world: World, agent: Agent) -> None:
    """Honest and busy: every alert is worth a look, and some get a reaction."""
    for at in _every(world, agent.p["every"], (8, 19)):
        Run(world, agent, at).post("public", agent.p["members"]).engage(agent.p["rate"]).add()


def quiet_monitor(world: World, agent: Agent) -> None:
    rng = world.rng
    for at in _every(world, agent.p["every"]):
        run = Run(world, agent, at)
        if rng.random() < agent.p["alerts"]:
            run.post("public", agent.p["members"]).engage(0.3)
        else:
            run.outcomes.append(Outcome(QUIET, "all checks passed"))
        run.add()


def brand_new(world: World, agent: Agent) -> None:
    daily_digest(world, agent, first_week=world.weeks - world.rng.randint(1, 2))


def release_notes(world: World, agent: Agent) -> None:
    rng = world.rng
    manager = rng.choice(world.teams[agent.team])
    for day in _weekdays(world):
        if rng.random() < agent.p["releases"] / 5:
            run = Run(world, agent, _at(day, rng.uniform(10, 17), rng, 0.5)).asked(manager)
            run.post("public", agent.p["members"]).engage(agent.p["rate"] * 2)
            if rng.random() < 0.5:
                run.jira(rng.randint(1, 4)).engage(0.2)
            run.add()


def ephemeral_helper(world: World, agent: Agent, heavy: Person | None = None) -> None:
    rng = world.rng
    users = rng.sample(world.people, agent.p["users"])
    for day in _weekdays(world):
        for _ in range(rng.randint(0, agent.p["per_day"])):
            asker = rng.choice(users)
            run = Run(world, agent, _at(day, rng.uniform(8, 19), rng, 0.2)).asked(asker)
            run.post("ephemeral", 1, others=asker is not agent.owner, kind="slack.ephemeral")
            run.asker_votes(agent.p["rate"]).add()
        if heavy is not None:
            at = _at(day, 9, rng, 0.1)
            for _ in range(rng.randint(5, agent.p["heavy"])):
                at += timedelta(minutes=rng.uniform(8, 40))
                run = Run(world, agent, at).asked(heavy)
                run.post("ephemeral", 1, kind="slack.ephemeral").asker_votes(0.05).add()


def heavy_user_helper(world: World, agent: Agent) -> None:
    heavy = world.rng.choice([p for p in world.people if p is not agent.owner])
    ephemeral_helper(world, agent, heavy)


def flaky_digest(world: World, agent: Agent) -> None:
    agent.p["fails"] = world.rng.uniform(0.2, 0.5)
    daily_digest(world, agent)


def jira_triage(world: World, agent: Agent) -> None:
    rng = world.rng
    for day in _weekdays(world):
        run = Run(world, agent, _at(day, 7, rng))
        for _ in range(rng.randint(0, 3)):
            run.jira(rng.randint(0, 3))
        if not run.outcomes:
            run.outcomes.append(Outcome(QUIET, "no new tickets"))
        run.engage(agent.p["rate"] * 1.5).add()


# -- archetypes: gaming --------------------------------------------------------------------------


def poller(world: World, agent: Agent) -> None:
    rng, p = world.rng, agent.p
    last = uuid.uuid4().hex
    for at in _every(world, p["every"]):
        run = Run(world, agent, at)
        if rng.random() < p["same"]:
            run.input_hash = last
        last = run.input_hash
        if rng.random() < p["posts"]:
            run.post("public", p["members"]).engage(0.005)
        run.add()


def unread_channel(world: World, agent: Agent) -> None:
    for at in _every(world, agent.p["every"], (8, 19)):
        Run(world, agent, at).post("public", agent.p["members"]).engage(0.0).add()


def padded_prompts(world: World, agent: Agent) -> None:
    rng, p = world.rng, agent.p
    base = p["tokens"]
    for day in _weekdays(world):
        week = (day - START).days // 7
        grown = p["growth"] ** max(0, week - p["from"] + 1) if week >= p["from"] else 1.0
        p["tokens"] = base * grown
        for _ in range(p["runs_per_day"]):
            run = Run(world, agent, _at(day, rng.uniform(8, 18), rng, 0.1))
            run.gaming = week >= p["from"]
            run.post("public", p["members"]).engage(p["rate"]).add()
    p["tokens"] = base


def slash_looper(world: World, agent: Agent) -> None:
    rng, p = world.rng, agent.p
    looper = rng.choice([x for x in world.people if x is not agent.owner])
    agent.p["users"], agent.p["per_day"] = rng.randint(2, 6), rng.randint(1, 4)
    ephemeral_helper(world, agent)
    for day in _weekdays(world):
        if rng.random() > p["loop_days"] / 5:
            continue
        at = _at(day, rng.uniform(8, 12), rng)
        for _ in range(rng.randint(p["loops"] // 2, p["loops"])):
            at += timedelta(minutes=rng.uniform(2.5, 9))
            run = Run(world, agent, at).asked(looper)
            run.gaming = True
            run.input_hash = hashlib.sha1(f"{rng.randint(0, 3)}".encode()).hexdigest()
            run.post("ephemeral", 1, kind="slack.ephemeral").add()


def task_splitter(world: World, agent: Agent) -> None:
    rng, p = world.rng, agent.p
    for day in _weekdays(world):
        if rng.random() > p["tasks"] / 5:
            continue
        at = _at(day, rng.uniform(9, 17), rng)
        for _ in range(rng.randint(p["parts"] // 2, p["parts"])):
            at += timedelta(seconds=rng.uniform(5, 90))
            run = Run(world, agent, at).asked(agent.owner, "api")
            run.gaming = True
            run.post("public", p["members"]).engage(p["rate"]).add()


def self_voter(world: World, agent: Agent) -> None:
    rng, p = world.rng, agent.p
    for day in _weekdays(world):
        for _ in range(p["runs_per_day"]):
            run = Run(world, agent, _at(day, rng.uniform(8, 18), rng, 0.1))
            run.post("public", p["members"]).engage(0.01)
            if rng.random() < p["votes"]:
                run.votes.append((agent.owner.slack, 1))
                run.gaming = True
            run.add()


def private_channel(world: World, agent: Agent) -> None:
    for at in _every(world, agent.p["every"], (8, 19)):
        run = Run(world, agent, at).post("private", 1, others=False)
        run.evidence.append(Evidence(agent.owner.slack, "reaction:+1", at))
        run.add()


def unchanged_reruns(world: World, agent: Agent) -> None:
    rng, p = world.rng, agent.p
    last = uuid.uuid4().hex
    for at in _every(world, p["every"], (8, 19)):
        run = Run(world, agent, at)
        if rng.random() < p["same"]:
            run.input_hash = last
        last = run.input_hash
        run.post("public", p["members"]).engage(p["rate"] * 0.3).add()


def claim_inflator(world: World, agent: Agent) -> None:
    for at in _every(world, agent.p["every"], (8, 19)):
        Run(world, agent, at).post("public", agent.p["members"]).engage(0.02).add()


def empty_loop(world: World, agent: Agent) -> None:
    rng = world.rng
    for day in _days(world):
        for _ in range(agent.p["runs_per_day"]):
            run = Run(world, agent, _at(day, rng.uniform(0, 23), rng))
            run.tokens_in *= 8
            run.add()


Maker = Callable[[World, Agent], None]
PART_TIME = {"padded-prompts", "slash-looper", "task-splitter", "self-voter"}
# name: (gaming, maker, value tag, draws of its parameters)
ARCHETYPES: dict[str, tuple[bool, Maker, str]] = {
    "daily-digest": (False, daily_digest, "toil-reduction"),
    "weekly-report": (False, weekly_report, "toil-reduction"),
    "incident-bot": (False, incident_bot, "incident-response"),
    "quiet-monitor": (False, quiet_monitor, "incident-response"),
    "hourly-alerts": (False, hourly_alerts, "incident-response"),
    "brand-new": (False, brand_new, "toil-reduction"),
    "release-notes": (False, release_notes, "toil-reduction"),
    "ephemeral-helper": (False, ephemeral_helper, "customer-support"),
    "flaky-digest": (False, flaky_digest, "toil-reduction"),
    "jira-triage": (False, jira_triage, "customer-support"),
    "heavy-user-helper": (False, heavy_user_helper, "code-quality"),
    "poller": (True, poller, "toil-reduction"),
    "unread-channel": (True, unread_channel, "toil-reduction"),
    "padded-prompts": (True, padded_prompts, "toil-reduction"),
    "slash-looper": (True, slash_looper, "code-quality"),
    "task-splitter": (True, task_splitter, "customer-support"),
    "self-voter": (True, self_voter, "toil-reduction"),
    "private-channel": (True, private_channel, "toil-reduction"),
    "unchanged-reruns": (True, unchanged_reruns, "incident-response"),
    "claim-inflator": (True, claim_inflator, "toil-reduction"),
    "empty-loop": (True, empty_loop, "code-quality"),
}


def _draw(rng: random.Random, archetype: str) -> dict[str, Any]:
    """Wide per-agent parameters: how often, how big, how read."""
    u, r = rng.uniform, rng.randint
    p: dict[str, Any] = {
        "tokens": u(1500, 12000),
        "out": u(150, 900),
        "members": r(5, 120),
        "rate": u(0.05, 0.10),  # people engage with 5-10 % of useful outputs
        "unchanged": u(0.0, 0.5),
        "skip": rng.random() < 0.5,
    }
    extra = {
        "weekly-report": {"tokens": u(8000, 40000), "out": u(600, 2000)},
        "incident-bot": {"incidents": u(0.05, 0.3), "requests": r(3, 12), "tokens": u(5000, 80000)},
        "quiet-monitor": {"every": u(10, 240), "alerts": u(0.01, 0.06), "tokens": u(800, 4000)},
        "hourly-alerts": {"every": u(40, 180), "tokens": u(1000, 8000)},
        "release-notes": {"tokens": u(40000, 300000), "out": u(1500, 5000), "releases": u(0.5, 2)},
        "ephemeral-helper": {"users": r(3, 12), "per_day": r(2, 25)},
        "heavy-user-helper": {"users": r(3, 10), "per_day": r(1, 6), "heavy": r(8, 24)},
        "jira-triage": {"tokens": u(3000, 15000)},
        "poller": {"every": u(5, 15), "same": u(0.5, 0.95), "posts": u(0.0, 1.0)},
        "unread-channel": {"every": u(45, 180), "members": r(2, 15)},
        "padded-prompts": {"growth": u(1.6, 2.5), "from": r(1, 3), "runs_per_day": r(1, 3)},
        "slash-looper": {"loop_days": u(1.5, 4), "loops": r(40, 120), "rate": u(0.05, 0.1)},
        "task-splitter": {"tasks": u(1, 4), "parts": r(14, 60), "tokens": u(1000, 5000)},
        "self-voter": {"runs_per_day": r(1, 4), "votes": u(0.4, 0.9)},
        "private-channel": {"every": u(45, 180), "tokens": u(4000, 20000)},
        "unchanged-reruns": {"every": u(30, 120), "same": u(0.5, 0.9)},
        "claim-inflator": {"every": u(15, 45), "tokens": u(2000, 8000)},
        "empty-loop": {"runs_per_day": r(4, 20), "tokens": u(5000, 20000)},
    }.get(archetype, {})
    p.update(extra)
    return p


def populate(world: World) -> None:
    rng = world.rng
    for archetype, (gaming, make, tag) in ARCHETYPES.items():
        for n in range(rng.randint(1, 3)):
            owner = rng.choice(world.people)
            minutes = r = rng.randint(5, 30)
            if archetype in ("weekly-report", "release-notes"):
                minutes = r * 4
            if archetype == "claim-inflator":
                minutes = rng.randint(60, 240)
            agent = Agent(
                name=f"{archetype}-{n}",
                archetype=archetype,
                gaming=gaming,
                owner=owner,
                team=owner.team,
                tag=tag,
                model=rng.choice(list(MODELS)),
                minutes=minutes,
                p=_draw(rng, archetype),
            )
            world.agents.append(agent)
            make(world, agent)


# -- through the public API ----------------------------------------------------------------------


def record_world(world: World, ledger: Ledger) -> None:
    for person in world.people:
        people.link(ledger, person.email, person.slack, source="slack")
    aliases = {p.email: [p.login] for p in world.people if world.rng.random() < 0.85}
    people.sync_aliases(ledger, aliases)
    planned = sorted(world.runs, key=lambda p: p.record.started_at)
    for at in range(0, len(planned), 2000):
        ledger.write_records([p.record for p in planned[at : at + 2000]])
    for plan in planned:
        for who, vote in plan.votes:
            ledger.add_feedback(plan.record.run_id or "", who, vote, at=plan.record.finished_at)
    follow_up(world, ledger, planned)


def follow_up(world: World, ledger: Ledger, planned: list[Planned]) -> None:
    """What the follow-up pass records: a check a day after each outcome, a final one a week
    after, each with the evidence there was by then."""
    ids = verdicts.outcome_ids(ledger, [p.record.run_id or "" for p in planned])
    checks: dict[datetime, dict[int, list[Evidence]]] = defaultdict(dict)
    for plan in planned:
        made = plan.record.finished_at
        for check in (made + timedelta(days=1), made + timedelta(days=7, minutes=1)):
            if check > world.end:
                break
            day = check.replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=1)
            seen = [e for e in plan.evidence if e.when is None or e.when <= check]
            for outcome_id in ids[plan.record.run_id or ""]:
                checks[day][outcome_id] = seen
    directory = people.directory(ledger)
    for day in sorted(checks):
        verdicts.judge_many(ledger, checks[day], checked_at=day, people=directory)


# -- measuring -----------------------------------------------------------------------------------


def auc(honest: list[float], gaming: list[float]) -> float:
    if not honest or not gaming:
        return float("nan")
    wins = sum((h > g) + 0.5 * (h == g) for h in honest for g in gaming)
    return wins / (len(honest) * len(gaming))


@dataclass
class SeedResult:
    seed: int
    pairs: list[tuple[str, str, int, bool, bool]]  # agent, archetype, week, gaming, flagged
    floor_only: list[tuple[str, str, int, bool, bool]]  # the same with the dollar floor alone
    spend: dict[tuple[str, int], Decimal]  # what each agent spent each week
    false_flags: list[str]
    auc: float
    auc_raw: float  # of evidenced minutes per dollar as observed, for comparison
    entries: int
    seconds: float


def run_seed(seed: int, weeks: int, first_week: int) -> SeedResult:
    started = time.perf_counter()
    rng = random.Random(seed)
    world = company(rng, weeks)
    populate(world)
    with (
        tempfile.TemporaryDirectory() as tmp,
        Ledger.open(f"sqlite:///{Path(tmp) / 'l.db'}") as ledger,
    ):
        record_world(world, ledger)
        by_name = {agent.name: agent for agent in world.agents}
        active: dict[int, set[str]] = defaultdict(set)
        for plan in world.runs:
            active[(plan.record.started_at - START).days // 7].add(plan.record.agent)
        pairs, false_flags, floor_only = [], [], []
        no_habit = FlagSettings(habit_runs=10**9)  # what the $ floor alone would flag
        spend: dict[tuple[str, int], Decimal] = {}
        for week in range(first_week, weeks):
            period = Period.week((START + timedelta(weeks=week)).date())
            found = flags(ledger, period=period, viewer=ADMIN, privacy=PRIVACY,
                          settings=FlagSettings(), value=ValueSettings())  # fmt: skip
            waste: dict[str, list[Any]] = defaultdict(list)
            for flag in found:
                if flag.kind == "waste":
                    waste[flag.subject].append(flag)
            for row in value.headline(ledger, period=period, by="agent"):
                spend[row.group, week] = row.cost_usd
            plain = {f.subject for f in flags(ledger, period=period, viewer=ADMIN, privacy=PRIVACY,
                     settings=no_habit) if f.kind == "waste"}  # fmt: skip
            for name in sorted(active[week]):
                agent = by_name[name]
                gamed = (name, week) in world.gamed
                pairs.append((name, agent.archetype, week, gamed, name in waste))
                floor_only.append((name, agent.archetype, week, gamed, name in plain))
                if name in waste and not gamed:
                    for flag in waste[name]:
                        false_flags.append(
                            f"seed {seed} week {week + 1} {agent.archetype}: {flag.rule}: "
                            f"{flag.reason} [{flag.usd}]"
                        )
        whole = Period(START.date(), (START + timedelta(weeks=weeks)).date())
        rows = {row.group: row for row in value.headline(ledger, period=whole, by="agent")}
        aucs = []
        for figure in ("value_per_dollar", "evidenced_per_dollar"):
            score = {name: float(getattr(row, figure) or 0) for name, row in rows.items()}
            honest = [score.get(a.name, 0.0) for a in world.agents if not a.gaming]
            gaming = [score.get(a.name, 0.0) for a in world.agents if a.gaming]
            aucs.append(auc(honest, gaming))
        return SeedResult(
            seed, pairs, floor_only, spend, false_flags, aucs[0], aucs[1], len(world.runs),
            time.perf_counter() - started,
        )  # fmt: skip


def report(results: list[SeedResult]) -> dict[str, float]:
    share: dict[tuple[str, bool], list[bool]] = defaultdict(list)
    for result in results:
        for _, archetype, _, gaming, flagged in result.pairs:
            share[archetype, gaming].append(flagged)
    print("\nshare of (agent, week) pairs flagged, per archetype, all seeds")
    print(f"{'archetype':<20} {'kind':<7} {'gaming weeks':>12} {'flagged':>8} "
          f"{'honest weeks':>12} {'flagged':>8}")  # fmt: skip
    for archetype, (gaming, _, _) in ARCHETYPES.items():
        cells = []
        for truth in (True, False):
            found = share.get((archetype, truth), [])
            rate = f"{sum(found) / len(found):.0%}" if found else "-"
            cells.append(f"{len(found):>12} {rate:>8}")
        kind = "gaming" if gaming else "honest"
        print(f"{archetype:<20} {kind:<7} {' '.join(cells)}")
    print(f"\n{'seed':>5} {'entries':>8} {'precision':>10} {'recall':>8} {'false':>6} {'AUC':>6} "
          f"{'seconds':>8}")  # fmt: skip
    everything = []
    for result in results:
        everything += result.pairs
        p, r, false = _precision_recall(result.pairs)
        print(f"{result.seed:>5} {result.entries:>8,} {p:>10.3f} {r:>8.3f} {false:>6} "
              f"{result.auc:>6.3f} {result.seconds:>8.1f}")  # fmt: skip
    p, r, false = _precision_recall(everything)
    mean_auc = statistics.mean(result.auc for result in results)
    print(f"{'all':>5} {sum(x.entries for x in results):>8,} {p:>10.3f} {r:>8.3f} {false:>6} "
          f"{mean_auc:>6.3f}")  # fmt: skip
    falses = [line for result in results for line in result.false_flags]
    print(f"\nfalse flags ({len(falses)} flags on honest agents):")
    for line in falses[:40]:
        print("  " + line)
    missed = Counter(a for result in results for _, a, _, g, f in result.pairs if g and not f)
    floor = Decimal(str(FlagSettings().min_usd))
    costly = [
        pair
        for result in results
        for pair in result.pairs
        if result.spend.get((pair[0], pair[2]), Decimal(0)) >= floor
    ]
    _, costly_recall, _ = _precision_recall(costly)
    cheap = sum(
        1
        for result in results
        for name, _, week, g, f in result.pairs
        if g and not f and result.spend.get((name, week), Decimal(0)) < floor
    )
    print(f"gaming weeks not flagged: {sum(missed.values())}, of which {cheap} spent under the "
          f"${floor} a week below which a waste flag needs a habit; recall over the weeks that "
          f"spent ${floor} or more: {costly_recall:.3f}")  # fmt: skip
    fp, fr, _ = _precision_recall([pair for result in results for pair in result.floor_only])
    print(f"with the dollar floor alone (no habits): precision {fp:.3f}, recall {fr:.3f}")
    raw = statistics.mean(result.auc_raw for result in results)
    print(f"rank AUC of raw evidenced minutes per dollar (no weighting by evidence): {raw:.3f}")
    if missed:
        print("gaming (agent, week) pairs not flagged, by archetype: " + ", ".join(
            f"{a} {n}" for a, n in missed.most_common()))  # fmt: skip
    return {"precision": p, "recall": r, "auc": mean_auc}


def _precision_recall(pairs: list[tuple[str, str, int, bool, bool]]) -> tuple[float, float, int]:
    tp = sum(1 for *_, g, f in pairs if g and f)
    fp = sum(1 for *_, g, f in pairs if f and not g)
    fn = sum(1 for *_, g, f in pairs if g and not f)
    return tp / max(1, tp + fp), tp / max(1, tp + fn), fp


# -- a week of flags over a million entries ------------------------------------------------------


def big(backend: str, count: int, fresh: bool) -> dict[str, float]:
    import bench_dashboard as seeded

    timings: dict[str, float] = {}

    def measure(url: str, name: str) -> None:
        with Ledger.open(url) as ledger:
            total = ledger.count()
            for label, day in (("last week", seeded.TODAY - timedelta(days=7)),
                               ("this week", seeded.TODAY)):  # fmt: skip
                period = Period.week(day)
                times = []
                for _ in range(3):
                    started = time.perf_counter()
                    found = flags(ledger, period=period, viewer=ADMIN, privacy=PRIVACY)
                    times.append(time.perf_counter() - started)
                timings[f"{name} {label}"] = min(times)
                print(f"{name}: {total:,} entries, flags for {label} ({period.label}): "
                      f"{len(found)} flags in {min(times):.3f} s (best of 3; "
                      f"{', '.join(f'{t:.3f}' for t in times)})", flush=True)  # fmt: skip

    if backend in ("sqlite", "both"):
        url = seeded._sqlite_ledger(Path("/tmp/meshagent-bench-flags.db"), count, fresh)
        measure(url, "sqlite")
    if backend in ("postgresql", "both"):
        with seeded._postgresql_ledger(count) as url:
            measure(url, "postgresql")
    return timings


def perturb(seeds: range, weeks: int, defaults: dict[str, float]) -> None:
    """The overall figures again with each perturbation of the organisation, same seeds."""
    global KNOBS
    rows = [("as drawn", defaults)]
    for name, (knobs, changed) in PERTURBATIONS.items():
        KNOBS, length = knobs, changed or weeks
        results = [run_seed(seed, length, max(1, length - 4)) for seed in seeds]
        rows.append((name, _overall(results)))
        print(f"perturbed: {name}: done", flush=True)
    KNOBS = Knobs()
    print(f"\nunder perturbations (seeds {seeds.start}-{seeds.stop - 1}, default settings)")
    print(f"{'organisation':<16} {'precision':>10} {'recall':>8} {'AUC':>6}   "
          f"{'$ floor alone: precision':>24} {'recall':>8}   {'raw AUC':>7}")  # fmt: skip
    for name, f in rows:
        print(f"{name:<16} {f['precision']:>10.3f} {f['recall']:>8.3f} {f['auc']:>6.3f}   "
              f"{f['floor_precision']:>24.3f} {f['floor_recall']:>8.3f}   "
              f"{f['auc_raw']:>7.3f}")  # fmt: skip


def _overall(results: list[SeedResult]) -> dict[str, float]:
    """Precision, recall and AUC over all seeds; those of the dollar floor alone (no habits)
    and of the raw evidenced minutes per dollar beside them."""
    p, r, _ = _precision_recall([pair for result in results for pair in result.pairs])
    fp, fr, _ = _precision_recall([pair for result in results for pair in result.floor_only])
    return {
        "precision": p,
        "recall": r,
        "auc": statistics.mean(x.auc for x in results),
        "floor_precision": fp,
        "floor_recall": fr,
        "auc_raw": statistics.mean(x.auc_raw for x in results),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--first-seed", type=int, default=1)
    parser.add_argument("--weeks", type=int, default=8)
    parser.add_argument("--quick", action="store_true", help="2 seeds of 4 weeks")
    parser.add_argument("--big", action="store_true", help="time flags over a million entries")
    parser.add_argument("--backend", choices=("sqlite", "postgresql", "both"), default="both")
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--fresh", action="store_true", help="seed the big SQLite file again")
    parser.add_argument(
        "--perturb",
        action="store_true",
        help="also the figures under each of PERTURBATIONS (feedback, costs, team sizes, weeks)",
    )
    args = parser.parse_args()
    seeds, weeks = (2, 4) if args.quick else (args.seeds, args.weeks)
    first = max(1, weeks - 4)
    results = []
    for seed in range(args.first_seed, args.first_seed + seeds):
        results.append(run_seed(seed, weeks, first))
        print(f"seed {seed}: {results[-1].entries:,} entries, {results[-1].seconds:.1f} s",
              flush=True)  # fmt: skip
    if results:
        figures = report(results)
        print("\ntargets with the default settings:")
        for name, target in TARGETS.items():
            state = "met" if figures[name] >= target else "MISSED"
            print(f"  {name:<10} {figures[name]:.3f} (target >= {target}): {state}")
    if args.perturb and results:
        perturb(range(args.first_seed, args.first_seed + seeds), weeks, _overall(results))
    if args.big:
        print()
        for name, seconds in big(args.backend, args.entries, args.fresh).items():
            state = "met" if seconds <= 1.0 else "MISSED"
            print(f"  flags {name}: {seconds:.3f} s (target <= 1 s): {state}")


if __name__ == "__main__":
    main()
