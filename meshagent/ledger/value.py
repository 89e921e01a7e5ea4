"""Evidenced value: minutes saved credited only where people took up what an agent delivered.

An agent file *claims* minutes saved per useful run; the reports have always summed that claim
over runs with an outcome (`ReportRow.minutes_saved`, now also `minutes_claimed`). This module
computes the figure a company can trust beside it:

- a run is *accepted* when one of its outcomes has the verdict `accepted` (someone other than
  the owner, the triggerer or a bot engaged with it: `meshagent.ledger.verdicts`), or someone
  other than its owner and triggerer voted it Useful;
- an answer shown only to the person who asked (audience "ephemeral") can only be taken up by
  them: their Useful vote (or engagement) counts when they are not the owner, but such an answer
  reached nobody else, so it is no honest adoption;
- accepted runs are credited once per *unit*: a scheduled fire (agent, scheduled_for; fires
  that read the same input, the same content posted again, are one unit), or a
  distinct request (agent, person, and runs each within `[value] request_gap_minutes` of the
  last one, so a task split into 40 runs is one request; the same question asked again the
  same day is the same request); a request of many runs earns the share of them taken up (4 of
  40 parts accepted: a tenth; the same for fires of one content), so that splitting neither
  multiplies the credit nor buys more chances of some acceptance;
- a unit earns the agent's `minutes_saved` once, and a fire at most the median minutes between
  the agent's fires (what its schedule can support: a job every 15 minutes cannot save a reader
  two hours each time); a fire that claims more than that earns that share of its claim, the
  claim itself held to `[value] peer_claim_factor` x the median `minutes_saved` of the agents
  with its value tag (a claim shown false by the schedule is not trusted beyond its peers'
  either); an agent's evidenced minutes in an ISO week are capped at
  `[value] weekly_cap_minutes` (its units scaled down together);
- *honest adoption* is the people (identities folded) whose runs have a credited unit: an accepted
  outcome reached someone other than themselves.

The figure that ranks groups, `value_per_dollar` (`estimate`), weighs a group's own evidenced
minutes per dollar by its *judged runs* against `[value] prior_runs` runs of the typical group's
(the median of the groups that have evidenced value): a judged run is one whose delivered outcomes
have all been checked, or one that spent tokens and produced nothing; quiet results, dry runs and
failures are evidence neither way (a monitor that rightly says nothing is not silence).

`credits(ledger, period)` returns the credited units (agent, team, owner, tag, model, person,
week, minutes, runs); `headline(ledger, period, by=...)` the per-group figures: accepted
outcomes (credited units), cost per accepted outcome, minutes claimed and evidenced, honest
adoption. `reports.summary` gives the same figures per row (`Report.evidence`, `evidence_of`),
folded by its privacy rules, and `reports.adoption` honest adoption per week.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, and_, case, func, select

from meshagent.config import ValueSettings
from meshagent.ledger.periods import Period
from meshagent.ledger.records import PLANNED, QUIET
from meshagent.ledger.schema import entries, feedback, outcomes, spent_tokens
from meshagent.ledger.types import utc

if TYPE_CHECKING:
    from meshagent.ledger.people import People
    from meshagent.ledger.store import Ledger

__all__ = ["Credit", "Evidenced", "ValueRow", "credits", "headline", "honest_people"]

_GROUPS = ("team", "agent", "owner", "tag", "model")


@dataclass(frozen=True)
class Credit:
    """One credited unit: a fire or a distinct request with an accepted outcome."""

    agent: str
    team: str
    owner: str
    value_tag: str
    model: str
    person: str  # the person (identities folded) who triggered it, else the owner
    week: date  # the Monday of its ISO week
    minutes: Decimal  # after the weekly cap
    run_ids: tuple[str, ...]
    accepted_outcomes: int  # outcome rows accepted in its runs (a split task has many)
    reached_others: bool = True  # False: an answer accepted by the person who asked, alone

    def group(self, by: str) -> str:
        return {
            "team": self.team,
            "agent": self.agent,
            "owner": self.owner,
            "tag": self.value_tag,
            "model": self.model,
        }[by]


@dataclass(frozen=True)
class Evidenced:
    """Observed value beside what it cost and claimed (a report row's, or a group's)."""

    accepted_outcomes: int  # fires and distinct requests with an accepted outcome
    minutes_evidenced: Decimal  # credited once each, capped per agent and week
    minutes_claimed: Decimal  # minutes_saved x runs with an outcome, as the agent file says
    cost_usd: Decimal | None

    @property
    def cost_per_accepted(self) -> Decimal | None:
        if self.cost_usd is None or not self.accepted_outcomes:
            return None
        return (self.cost_usd / self.accepted_outcomes).quantize(Decimal("0.0001"))

    @property
    def evidenced_per_dollar(self) -> Decimal | None:
        if not self.cost_usd:
            return None
        return (self.minutes_evidenced / self.cost_usd).quantize(Decimal("0.01"))


@dataclass(frozen=True)
class ValueRow(Evidenced):
    """A group's headline figures over a period, every run counted (an admin's view)."""

    group: str = ""
    runs: int = 0
    honest_people: int = 0
    judged_runs: int = 0  # delivered runs all checked, and runs that produced nothing
    value_per_dollar: Decimal | None = None  # the ranking figure: see `estimate`


def estimate(
    own: Decimal | None, judged: int, typical: Decimal | None, prior_runs: int
) -> Decimal | None:
    """Evidenced minutes per dollar as far as the evidence goes: the group's own figure
    weighted by its judged runs against `prior_runs` runs of the typical group's.

    People engage with about one in 10-20 useful outputs, so silence over a handful of runs
    (a new agent, a weekly report) says little, and over hundreds a lot: with no judged run a
    group stands at the typical figure, and its own figure takes over as its evidence grows.
    """
    if own is None:
        return typical
    if typical is None:
        return own
    weight = Decimal(judged) / Decimal(judged + prior_runs)
    return (weight * own + (1 - weight) * typical).quantize(Decimal("0.01"))


_RUN_COLUMNS = (
    entries.c.run_id,
    entries.c.agent,
    entries.c.owner,
    entries.c.team,
    entries.c.value_tag,
    func.coalesce(entries.c.model_answered, entries.c.model_requested, ""),
    entries.c.triggered_by,
    entries.c.trigger_kind,
    entries.c.scheduled_for,
    entries.c.started_at,
    entries.c.minutes_saved,
    entries.c.input_hash,
)
_ASKER_ONLY = (
    select(outcomes.c.id)
    .where(outcomes.c.run_id == entries.c.run_id, outcomes.c.audience == "ephemeral")
    .exists()
)


def _accepted(connection: Connection, since: datetime, until: datetime) -> dict[str, Any]:
    window = (entries.c.started_at >= since, entries.c.started_at < until)
    reached = func.max(case((outcomes.c.audience == "ephemeral", 0), else_=1))
    by_outcome = (
        select(*_RUN_COLUMNS, func.count(outcomes.c.id), reached)
        .join(outcomes, outcomes.c.run_id == entries.c.run_id)
        .where(*window, outcomes.c.verdict == "accepted")
        .group_by(*_RUN_COLUMNS)
    )
    votes = (
        select(*_RUN_COLUMNS, feedback.c.person, _ASKER_ONLY)
        .join(feedback, feedback.c.run_id == entries.c.run_id)
        .where(*window, feedback.c.vote == 1)
    )
    return {
        "outcomes": connection.execute(by_outcome).all(),
        "votes": connection.execute(votes).all(),
    }


def _requests(
    connection: Connection, agents: list[str], since: datetime, until: datetime
) -> list[Any]:
    query = select(
        entries.c.run_id,
        entries.c.agent,
        entries.c.owner,
        entries.c.triggered_by,
        entries.c.started_at,
        entries.c.input_hash,
    ).where(
        entries.c.started_at >= since,
        entries.c.started_at < until,
        entries.c.trigger_kind != "schedule",
        entries.c.agent.in_(agents),
    )
    return connection.execute(query.order_by(entries.c.started_at, entries.c.id)).all()


def _fire_gaps(
    connection: Connection, agents: list[str], since: datetime, until: datetime
) -> dict[str, Decimal]:
    """Per agent: the median minutes between its scheduled fires in the window."""
    query = (
        select(entries.c.agent, entries.c.scheduled_for)
        .where(
            entries.c.started_at >= since,
            entries.c.started_at < until,
            entries.c.trigger_kind == "schedule",
            entries.c.scheduled_for.is_not(None),
            entries.c.agent.in_(agents),
        )
        .distinct()
        .order_by(entries.c.agent, entries.c.scheduled_for)
    )
    fires: dict[str, list[datetime]] = defaultdict(list)
    for agent, fire in connection.execute(query):
        fires[agent].append(utc(fire))
    gaps = {}
    for agent, times in fires.items():
        between = [(b - a).total_seconds() / 60 for a, b in zip(times, times[1:], strict=False)]
        if between:
            gaps[agent] = Decimal(str(statistics.median(between))).quantize(Decimal("0.01"))
    return gaps


def _contents(
    connection: Connection, agents: list[str], since: datetime, until: datetime
) -> dict[tuple[str, str], int]:
    """Per (agent, input hash): its scheduled runs in the window that spent tokens."""
    query = (
        select(entries.c.agent, entries.c.input_hash, func.count())
        .where(
            entries.c.started_at >= since,
            entries.c.started_at < until,
            entries.c.trigger_kind == "schedule",
            entries.c.input_hash.is_not(None),
            entries.c.status.not_in(("running", "skipped_unchanged", "missed")),
            entries.c.agent.in_(agents),
        )
        .group_by(entries.c.agent, entries.c.input_hash)
    )
    return {(agent, digest): int(count) for agent, digest, count in connection.execute(query)}


def _peer_claims(connection: Connection, since: datetime, until: datetime) -> dict[str, Decimal]:
    """Per value tag: the median `minutes_saved` of its agents (each agent once, at the claim
    most of its runs made), over the agents that ran in the window claiming minutes; a tag
    shared by fewer than 3 such agents takes the median of all of them."""
    query = (
        select(entries.c.agent, entries.c.value_tag, entries.c.minutes_saved, func.count())
        .where(
            entries.c.started_at >= since,
            entries.c.started_at < until,
            entries.c.status != "running",
            entries.c.minutes_saved > 0,
        )
        .group_by(entries.c.agent, entries.c.value_tag, entries.c.minutes_saved)
    )
    claims: dict[str, tuple[int, str, Decimal]] = {}
    for agent, tag, minutes, count in connection.execute(query):
        current = claims.get(agent)
        if current is None or int(count) > current[0]:
            claims[agent] = (int(count), tag or "", Decimal(minutes or 0))
    by_tag: dict[str, list[Decimal]] = defaultdict(list)
    for _, tag, minutes in claims.values():
        by_tag[tag].append(minutes)
    everyone = [minutes for _, _, minutes in claims.values()]
    if not everyone:
        return {}
    fallback = Decimal(statistics.median(everyone))
    return {
        tag: Decimal(statistics.median(found)) if len(found) >= 3 else fallback
        for tag, found in by_tag.items()
    }


def _fire_minutes(
    claim: Decimal, gap: Decimal | None, peers: Decimal | None, factor: Decimal
) -> Decimal:
    """What one accepted fire earns: its claim, or, when the claim exceeds the minutes between
    the agent's fires, the share `gap / claim` of the claim held to `factor` x its peers'."""
    if gap is None or claim <= gap or not claim:
        return claim
    credible = claim if peers is None else min(claim, factor * peers)
    return (credible * gap / claim).quantize(Decimal("0.01"))


def _units(
    ledger: Ledger,
    runs: dict[str, tuple[Any, int, bool]],
    people: People,
    gap: timedelta,
    since: datetime,
    until: datetime,
) -> tuple[dict[tuple[Any, ...], list[tuple[Any, int, bool]]], dict[tuple[Any, ...], int]]:
    """Accepted runs grouped by what they are credited as: a fire (its runs on the same input
    as other fires are one: the same content posted again), or one distinct request (a person's
    runs each within `gap` of the last, or asking the same again the same day); and how many
    runs, accepted or not, each unit has."""
    session: dict[str, tuple[Any, ...]] = {}
    sizes: dict[tuple[Any, ...], int] = defaultdict(int)
    asked = sorted({r[1] for r, _, _ in runs.values() if r[7] != "schedule"})
    if asked:
        found = ledger.read(lambda c: _requests(c, asked, since, until), what="read requests")
        last: dict[tuple[str, str], tuple[datetime, int]] = {}
        seen: dict[tuple[str, str, Any, str], tuple[Any, ...]] = {}
        for run_id, agent, owner, triggerer, started, input_hash in found:
            who = people.key(triggerer or owner)
            started = utc(started)
            before = last.get((agent, who))
            if before is None:
                number = 0
            elif started - before[0] <= gap:
                number = before[1]
            else:
                number = before[1] + 1
            last[agent, who] = (started, number)
            key: tuple[Any, ...] = ("request", agent, who, number)
            if input_hash:  # the same question again the same day is the same request
                key = seen.setdefault((agent, who, started.date(), input_hash), key)
            session[run_id] = key
            sizes[key] += 1
    scheduled = sorted({r[1] for r, _, _ in runs.values() if r[7] == "schedule"})
    if scheduled:
        contents = ledger.read(lambda c: _contents(c, scheduled, since, until))
        for (agent, digest), count in contents.items():
            sizes[agent, "content", digest] = count
    units: dict[tuple[Any, ...], list[tuple[Any, int, bool]]] = defaultdict(list)
    for run_id, (row, accepted, reached) in runs.items():
        if row[7] == "schedule" and row[11]:  # the same content posted again is one unit
            key = (row[1], "content", row[11])
        elif row[7] == "schedule" and row[8] is not None:
            key = (row[1], "fire", utc(row[8]))
        else:
            key = session.get(run_id, ("request", row[1], people.key(row[6] or row[2]), run_id))
        units[key].append((row, accepted, reached))
    return units, sizes


def credits(
    ledger: Ledger,
    period: Period,
    *,
    value: ValueSettings | None = None,
    people: People | None = None,
) -> list[Credit]:
    """The credited units of runs started in `period` (see the module docstring)."""
    from meshagent.ledger.people import directory

    value = value or ValueSettings()
    people = people if people is not None else directory(ledger)
    since, until = period.start_time, period.end_time
    found = ledger.read(lambda c: _accepted(c, since, until), what="read accepted runs")
    runs: dict[str, tuple[Any, int, bool]] = {}
    for row in found["outcomes"]:
        runs[row[0]] = (row[:-2], int(row[-2]), bool(row[-1]))
    for row in found["votes"]:
        *columns, voter, asker_only = row
        owner, triggerer = columns[2], columns[6]
        if people.same(voter, owner):
            continue  # a vote for one's own agent is no evidence
        mine = people.same(voter, triggerer)
        if mine and not asker_only:
            continue  # nor for one's own request, unless the answer was for the asker alone
        if row[0] not in runs:
            runs[row[0]] = (tuple(columns), 0, not mine)
    if not runs:
        return []
    gap = timedelta(minutes=value.request_gap_minutes)
    units, sizes = _units(ledger, runs, people, gap, since, until)
    scheduled = sorted({r[1] for r, _, _ in runs.values() if r[7] == "schedule"})
    gaps = ledger.read(lambda c: _fire_gaps(c, scheduled, since, until)) if scheduled else {}
    over = any(
        r[7] == "schedule" and r[1] in gaps and Decimal(r[10] or 0) > gaps[r[1]]
        for r, _, _ in runs.values()
    )
    peers = ledger.read(lambda c: _peer_claims(c, since, until)) if over else {}
    factor = Decimal(str(value.peer_claim_factor))
    made = []
    for key, members in units.items():
        members.sort(key=lambda m: (utc(m[0][9]), m[0][0]))
        row = members[0][0]
        started = utc(row[9]).date()
        minutes = Decimal(row[10] or 0)
        if row[7] == "schedule" and row[1] in gaps:  # what the schedule can support
            minutes = _fire_minutes(minutes, gaps[row[1]], peers.get(row[4] or ""), factor)
        if sizes.get(key, 1) > len(members):  # a request of many runs, some of them taken up
            minutes = (minutes * len(members) / sizes[key]).quantize(Decimal("0.01"))
        made.append(
            Credit(
                agent=row[1],
                team=row[3] or "",
                owner=row[2] or "",
                value_tag=row[4] or "",
                model=row[5] or "",
                person=people.key(row[6] or row[2]),
                week=started - timedelta(days=started.weekday()),
                minutes=minutes,
                run_ids=tuple(m[0][0] for m in members),
                accepted_outcomes=sum(m[1] for m in members),
                reached_others=any(m[2] for m in members),
            )
        )
    return _capped(made, Decimal(value.weekly_cap_minutes))


def _capped(made: list[Credit], cap: Decimal) -> list[Credit]:
    totals: dict[tuple[str, date], Decimal] = defaultdict(Decimal)
    for credit in made:
        totals[credit.agent, credit.week] += credit.minutes
    result = []
    for credit in made:
        total = totals[credit.agent, credit.week]
        if total > cap:
            scaled = (credit.minutes * cap / total).quantize(Decimal("0.01"))
            credit = Credit(**{**credit.__dict__, "minutes": scaled})
        result.append(credit)
    result.sort(key=lambda c: (c.week, c.agent, c.run_ids))
    return result


def headline(
    ledger: Ledger,
    *,
    period: Period,
    by: str = "agent",
    value: ValueSettings | None = None,
    people: People | None = None,
    credited: Iterable[Credit] | None = None,
) -> list[ValueRow]:
    """Per group (team, agent, owner, tag, model), every run's figures, as an admin sees them;
    the privacy-aware figures are in `reports.summary`'s rows.

    `credited`, the period's `credits` (with the same `value` settings), is read from the
    ledger unless given: a caller that has read them already hands them over.
    """
    if by not in _GROUPS:
        raise ValueError(f"cannot group value by {by!r}: use one of {', '.join(_GROUPS)}")
    if credited is None:
        credited = credits(ledger, period, value=value, people=people)
    column = {
        "team": entries.c.team,
        "agent": entries.c.agent,
        "owner": entries.c.owner,
        "tag": entries.c.value_tag,
        "model": func.coalesce(entries.c.model_answered, entries.c.model_requested, ""),
    }[by]

    # Each a lookup of the run's outcomes by the run_id index, for the period's runs only
    # (`NOT IN` the pending outcomes read every pending outcome of the ledger at each call).
    def outcome(*where: Any) -> Any:
        return select(outcomes.c.id).where(outcomes.c.run_id == entries.c.run_id, *where).exists()

    delivered = outcomes.c.kind.not_in((PLANNED, QUIET))
    has = outcome(delivered)
    # coalesce: SQLite without statistics would look the verdict up in the due index, a scan
    # of every pending outcome per run, instead of the run's outcomes by run_id.
    waiting = outcome(delivered, func.coalesce(outcomes.c.verdict, "") == "pending")
    # A run that spent tokens and produced nothing is evidence too; a quiet result, a dry run
    # or a failure is evidence neither way.
    nothing = and_(entries.c.status == "ok", spent_tokens(entries) > 0, ~outcome())
    query = (
        select(
            column,
            func.count(),
            func.coalesce(func.sum(entries.c.cost_usd), 0),
            func.sum(case((and_(has, ~waiting), 1), (nothing, 1), else_=0)),
            func.sum(case((has, entries.c.minutes_saved), else_=None)),
        )
        .where(
            entries.c.started_at >= period.start_time,
            entries.c.started_at < period.end_time,
            entries.c.status != "running",
        )
        .group_by(column)
    )

    def read(connection: Connection) -> tuple[list[Any], dict[str, Any]]:
        found = connection.execute(query).all()
        return [row[:4] for row in found], {row[0]: row[4] for row in found}

    totals, claimed_by = ledger.read(read, what="read value figures")
    accepted: dict[str, int] = defaultdict(int)
    minutes: dict[str, Decimal] = defaultdict(Decimal)
    honest: dict[str, set[str]] = defaultdict(set)
    for credit in credited:
        name = credit.group(by)
        accepted[name] += 1
        minutes[name] += credit.minutes
        if credit.reached_others:
            honest[name].add(credit.person)
    rows = [
        ValueRow(
            group=name or "",
            runs=int(count),
            cost_usd=Decimal(cost or 0),
            accepted_outcomes=accepted.get(name or "", 0),
            minutes_claimed=Decimal(claimed_by.get(name) or 0),
            minutes_evidenced=minutes.get(name or "", Decimal(0)),
            honest_people=len(honest.get(name or "", ())),
            judged_runs=int(judged or 0),
        )
        for name, count, cost, judged in totals
    ]
    known = [r.evidenced_per_dollar for r in rows if r.evidenced_per_dollar]  # shown value
    typical = Decimal(statistics.median(known)) if known else None
    prior = (value or ValueSettings()).prior_runs
    rows = [
        replace(r, value_per_dollar=estimate(r.evidenced_per_dollar, r.judged_runs, typical, prior))
        for r in rows
    ]
    rows.sort(key=lambda r: (-(r.minutes_evidenced), r.cost_usd, r.group))
    return rows


def honest_people(made: Iterable[Credit]) -> dict[date, set[str]]:
    """Per week (Monday): the people with a credited unit."""
    weeks: dict[date, set[str]] = defaultdict(set)
    for credit in made:
        if credit.reached_others:
            weeks[credit.week].add(credit.person)
    return dict(weeks)
