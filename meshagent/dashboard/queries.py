"""The reads behind the pages: daily rollups for totals and series, indexed entries for runs.

Totals fold small teams and small groups into "other" exactly as the ledger's reports do (the
same `privacy.fold`), with the page's team and value-tag filters applied before folding. Series
over time withhold any point with fewer than `min_group_size` people, unless the viewer may see
everyone's figures.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import Any

from sqlalchemy import ColumnElement, Connection, case, distinct, func, or_, select

from meshagent.ledger.people import People, directory
from meshagent.ledger.periods import Period
from meshagent.ledger.privacy import OTHER, PrivacyLike, fold, is_admin
from meshagent.ledger.records import PLANNED
from meshagent.ledger.reports import GROUPINGS, NONE_LABEL, ReportRow, summary
from meshagent.ledger.schema import (
    DAILY_SUMS,
    TOKEN_KINDS,
    daily,
    entries,
    events,
    feedback,
    spent_tokens,
)
from meshagent.ledger.schema import outcomes as outcomes_table
from meshagent.ledger.store import Ledger

__all__ = [
    "AgentRows",
    "Bucket",
    "Folded",
    "RunDetail",
    "agent_cells",
    "agent_owner",
    "buckets",
    "choices",
    "folded_report",
    "report_row",
    "run_detail",
    "run_summaries",
    "runs_of_agent",
    "subjects",
    "visible_run",
]


def _stored(value: str | None) -> str:
    """The rollup stores a missing team or tag as ''; pages name it "(none)"."""
    return "" if value in (None, NONE_LABEL) else value


def _where(
    period: Period,
    *,
    team: str | None = None,
    tag: str | None = None,
    agent: str | None = None,
    owner: str | None = None,
) -> list[ColumnElement[bool]]:
    clauses = [daily.c.day >= period.start, daily.c.day < period.end]
    if team is not None:
        clauses.append(daily.c.team == _stored(team))
    if tag is not None:
        clauses.append(daily.c.value_tag == _stored(tag))
    if agent is not None:
        clauses.append(daily.c.agent == agent)
    if owner is not None:
        clauses.append(daily.c.owner == owner)
    return clauses


def _sums() -> list[Any]:
    return [func.sum(daily.c[name]).label(name) for name in DAILY_SUMS]


def report_row(name: str, sums: dict[str, Any], people: int) -> ReportRow:
    """A report row from summed rollup columns: cost is None when no run had a known price."""
    values = {key: sums.get(key) or 0 for key in DAILY_SUMS}
    runs, unknown = values["runs"], values["runs_cost_unknown"]
    cost = None if runs and unknown == runs else Decimal(values["cost_usd"])
    values.update(cost_usd=cost, minutes_saved=Decimal(values["minutes_saved"]))
    return ReportRow(group=name, people=people, **values)


@dataclass(frozen=True)
class Folded:
    """Report rows as a viewer may see them, like `reports.Report` without the period."""

    rows: tuple[ReportRow, ...]
    folded: int
    withheld: bool
    hidden_runs: int = 0  # runs in no row: groups of too few people to show
    hidden_people: int = 0  # the people behind them


def _ordered(rows: Iterable[ReportRow]) -> tuple[ReportRow, ...]:
    return tuple(sorted(rows, key=lambda r: (r.group == OTHER, -(r.cost_usd or 0), r.group)))


_NO_SUMS: dict[str, Any] = {}  # fold only reads a cell's sums; here it needs none


def _folded(
    ledger: Ledger,
    column: Any,
    where: list[ColumnElement[bool]],
    *,
    by: str,
    viewer: str | None,
    privacy: PrivacyLike,
) -> Folded:
    """The groups `privacy.fold` lets `viewer` see, with their sums.

    `fold` decides from the (team, group, person) cells alone which groups keep their name; a
    named group then holds exactly its cells outside small teams, and "other" everything else.
    So the sums are read per (team, group) in SQL, never per person (a few hundred rows).
    """
    if is_admin(viewer, privacy):
        return _unfolded(ledger, column, where)
    if by == "owner":
        raise ValueError("rows per owner are not folded: read them for the viewer only")
    persons = (
        select(daily.c.team, column, daily.c.person)
        .where(*where)
        .group_by(daily.c.team, column, daily.c.person)
    )
    sums = select(daily.c.team, column, *_sums()).where(*where).group_by(daily.c.team, column)
    found = ledger.read(
        lambda c: (c.execute(persons).all(), c.execute(sums).all()), what="read a dashboard report"
    )
    people = directory(ledger)  # a person's Slack id, email and login are one person
    cells = [
        (team, name or NONE_LABEL, people.key(person), _NO_SUMS) for team, name, person in found[0]
    ]
    result = fold(cells, by=by, viewer=viewer, privacy=privacy)
    everyone = {person for _, _, person, _ in cells}
    at = 2 + DAILY_SUMS.index("runs")  # in a (team, group, *sums) row
    total_runs = sum(row[at] or 0 for row in found[1])
    if result.withheld:
        return Folded((), result.folded, True, total_runs, len(everyone))
    team_people: dict[str, set[str]] = defaultdict(set)
    for team, _, person, _ in cells:
        team_people[team].add(person)
    small = {team for team, members in team_people.items() if len(members) < privacy.min_group_size}
    totals: dict[str, dict[str, Any]] = {name: {} for name in result.groups}
    for team, name, *values in found[1]:
        name = name or NONE_LABEL
        target = name if name != OTHER and name in totals and team not in small else OTHER
        total = totals[target]
        for key, value in zip(DAILY_SUMS, values, strict=True):
            total[key] = total.get(key, 0) + (value or 0)
    rows = [
        report_row(name, totals[name], len(group.people)) for name, group in result.groups.items()
    ]
    hidden = total_runs - sum(r.runs for r in rows)
    shown = set().union(*(group.people for group in result.groups.values()))
    hidden_people = len(everyone - shown) if hidden else 0
    return Folded(_ordered(rows), result.folded, False, hidden, hidden_people)


def folded_report(
    ledger: Ledger,
    period: Period,
    *,
    by: str,
    viewer: str | None,
    privacy: PrivacyLike,
    team: str | None = None,
    tag: str | None = None,
) -> Folded:
    """`reports.summary` with the team and tag filters applied before folding."""
    if viewer is not None and not is_admin(viewer, privacy):
        # The viewer's own agents in full, the rest folded: exactly the CLI's report. Its rows
        # only: the pages read the credited units and value figures once per ledger version
        # (`Pages.credits`, `Pages.value_rows`), not at every request (seconds over a big ledger).
        report = summary(ledger, by=by, period=period, viewer=viewer, privacy=privacy, team=team,
                         tag=tag, credited=(), value_rows=())  # fmt: skip
        return Folded(
            report.rows, report.folded, report.withheld, report.hidden_runs, report.hidden_people
        )
    column = daily.c[GROUPINGS[by]]
    where = _where(period, team=team, tag=tag)
    return _folded(ledger, column, where, by=by, viewer=viewer, privacy=privacy)


def _unfolded(ledger: Ledger, column: Any, where: list[ColumnElement[bool]]) -> Folded:
    """Every group with its distinct people (an admin's report, or a person's own rows)."""
    query = select(column, *_sums()).where(*where).group_by(column)
    persons = select(column, daily.c.person).where(*where).group_by(column, daily.c.person)
    found, pairs = ledger.read(
        lambda c: (c.execute(query).all(), c.execute(persons).all()),
        what="read a dashboard report",
    )
    people = directory(ledger)
    members: dict[str, set[str]] = defaultdict(set)
    for name, person in pairs:
        members[name or NONE_LABEL].add(people.key(person))
    rows = [
        report_row(
            name or NONE_LABEL,
            dict(zip(DAILY_SUMS, values, strict=True)),
            len(members[name or NONE_LABEL]),
        )
        for name, *values in found
    ]
    return Folded(_ordered(rows), 0, False)


@dataclass(frozen=True)
class AgentRows:
    """The agents table: the viewer's own agents in full, everyone else's folded.

    The first `own` rows are the viewer's own runs; an agent that others ran as owners too
    (it changed hands, or two people use one name) may follow with a row of theirs.
    """

    rows: tuple[ReportRow, ...]
    yours: frozenset[str]
    folded: int
    withheld: bool
    own: int = 0


def agent_cells(
    ledger: Ledger,
    period: Period,
    *,
    viewer: str | None,
    privacy: PrivacyLike,
    team: str | None = None,
    tag: str | None = None,
) -> AgentRows:
    """Per agent over `period`: an admin sees all; others their own agents and folded rows.

    An agent's runs are its owner's (as in the forecast), so its owner sees them in full. The
    rest is folded without the viewer's own cells, so "other" never hides fewer than
    `min_group_size` other people behind what the viewer can subtract.
    """
    where = _where(period, team=team, tag=tag)
    if is_admin(viewer, privacy):
        report = _unfolded(ledger, daily.c.agent, where)
        return AgentRows(report.rows, frozenset(), 0, False)
    if viewer is None:
        others = _folded(ledger, daily.c.agent, where, by="agent", viewer=None, privacy=privacy)
        return AgentRows(others.rows, frozenset(), others.folded, others.withheld)
    own = _unfolded(ledger, daily.c.agent, [*where, daily.c.owner == viewer]).rows
    others = _folded(
        ledger,
        daily.c.agent,
        [*where, daily.c.owner != viewer],
        by="agent",
        viewer=viewer,
        privacy=privacy,
    )
    yours = frozenset(row.group for row in own)
    return AgentRows(
        (*own, *others.rows), yours, others.folded, others.withheld and not own, len(own)
    )


@dataclass
class Bucket:
    """Sums over one day or week, and the people behind them."""

    start: date
    sums: dict[str, Any] = field(default_factory=dict)
    people: int = 0
    people_with_outcome: int = 0
    people_with_usage: int = 0

    @property
    def row(self) -> ReportRow:
        return report_row(str(self.start), self.sums, self.people)


def buckets(
    ledger: Ledger,
    edges: Sequence[date],
    *,
    team: str | None = None,
    tag: str | None = None,
    agent: str | None = None,
    owner: str | None = None,
) -> list[Bucket]:
    """Sums per consecutive [edges[i], edges[i+1]) span (one query; empty spans are zeros)."""
    spans = list(zip(edges, edges[1:], strict=False))
    where = _where(Period(edges[0], edges[-1]), team=team, tag=tag, agent=agent, owner=owner)
    by_day = all((end - start).days == 1 for start, end in spans)
    index: Any = (
        daily.c.day
        if by_day
        else case(*((daily.c.day < end, i) for i, (_, end) in enumerate(spans)), else_=-1)
    )
    position = {start: i for i, (start, _) in enumerate(spans)} if by_day else {}
    tokens = spent_tokens(daily)
    query = select(index.label("bucket"), *_sums()).where(*where).group_by(index)
    # People are counted in Python, each identity folded into its person (a Slack id, an email
    # and a login of one person are one): one row per bucket and identity.
    persons = (
        select(
            index.label("bucket"),
            daily.c.person,
            func.max(case((daily.c.runs_with_outcome > 0, 1), else_=0)),
            func.max(case((tokens > 0, 1), else_=0)),
        )
        .where(*where)
        .group_by(index, daily.c.person)
    )
    found, pairs = ledger.read(
        lambda c: (c.execute(query).all(), c.execute(persons).all()), what="read a series"
    )
    result = [Bucket(start) for start, _ in spans]

    def bucket_of(key: Any) -> Bucket | None:
        number = position.get(key, -1) if by_day else key
        return result[number] if 0 <= number < len(result) else None

    for key, *values in found:
        if (bucket := bucket_of(key)) is not None:
            bucket.sums = dict(zip(DAILY_SUMS, values, strict=True))
    people = directory(ledger) if pairs else None
    seen: dict[int, tuple[set[str], set[str], set[str]]] = defaultdict(
        lambda: (set(), set(), set())
    )
    for key, person, with_outcome, with_usage in pairs:
        if (bucket := bucket_of(key)) is None or people is None:
            continue
        everyone, outcome, usage = seen[id(bucket)]
        who = people.key(person)
        everyone.add(who)
        if with_outcome:
            outcome.add(who)
        if with_usage:
            usage.add(who)
    for bucket in result:
        everyone, outcome, usage = seen.get(id(bucket), (set(), set(), set()))
        bucket.people, bucket.people_with_outcome = len(everyone), len(outcome)
        bucket.people_with_usage = len(usage)
    return result


def choices(ledger: Ledger, period: Period, *, min_people: int = 1) -> list[str]:
    """The teams with runs of at least `min_people` people in `period` (for the team filter)."""
    people = func.count(distinct(daily.c.person))
    query = (
        select(daily.c.team)
        .where(*_where(period))
        .group_by(daily.c.team)
        .having(people >= min_people)
    )
    found = ledger.read(lambda c: c.execute(query).scalars().all(), what="read teams")
    return sorted(team or NONE_LABEL for team in found)


def subjects(ledger: Ledger, period: Period, *, team: str | None, tag: str | None) -> set[str]:
    """The agents and owners with runs in `period` in that team and tag (to filter flags)."""
    where = _where(period, team=team, tag=tag)
    query = (
        select(daily.c.agent, daily.c.owner).where(*where).group_by(daily.c.agent, daily.c.owner)
    )
    found = ledger.read(lambda c: c.execute(query).all(), what="read flag subjects")
    return {agent for agent, _ in found} | {owner for _, owner in found}


def agent_owner(ledger: Ledger, agent: str) -> str | None:
    """The owner of the agent's latest entry (its owner now), or None without entries."""
    query = (
        select(entries.c.owner)
        .where(entries.c.agent == agent)
        .order_by(entries.c.started_at.desc(), entries.c.id.desc())
        .limit(1)
    )
    return ledger.read(lambda c: c.execute(query).scalar(), what="read an agent's owner")


RUN_COLUMNS = (
    "run_id",
    "started_at",
    "finished_at",
    "status",
    "trigger_kind",
    "triggered_by",
    "owner",
    "model_answered",
    "model_requested",
    *TOKEN_KINDS,
    "cost_usd",
    "minutes_saved",
)


def runs_of_agent(
    ledger: Ledger,
    agent: str,
    period: Period,
    *,
    team: str | None,
    tag: str | None,
    person: str | None,
    everyone: bool,
    owner: str | None = None,
    limit: int = 50,
    offset: int = 0,
) -> list[dict[str, Any]]:
    """The agent's runs in `period`, newest first, with their outcome and vote counts.

    Unless `everyone`, only runs of `owner` (when given) or triggered or owned by `person`;
    nobody's runs when neither is known.
    """
    if not everyone and owner is None and person is None:
        return []
    where = [
        entries.c.agent == agent,
        entries.c.started_at >= period.start_time,
        entries.c.started_at < period.end_time,
    ]
    if team is not None:
        where.append(func.coalesce(entries.c.team, "") == _stored(team))
    if tag is not None:
        where.append(func.coalesce(entries.c.value_tag, "") == _stored(tag))
    if owner is not None:
        where.append(entries.c.owner == owner)
    elif not everyone:
        where.append(or_(entries.c.triggered_by == person, entries.c.owner == person))
    query = (
        select(*(entries.c[name] for name in RUN_COLUMNS))
        .where(*where)
        .order_by(entries.c.started_at.desc(), entries.c.id.desc())
        .limit(limit)
        .offset(offset)
    )

    def read(connection: Connection) -> list[dict[str, Any]]:
        runs = [dict(row) for row in connection.execute(query).mappings()]
        ids = [run["run_id"] for run in runs]
        delivered = dict(
            connection.execute(
                select(outcomes_table.c.run_id, func.count())
                .where(outcomes_table.c.run_id.in_(ids), outcomes_table.c.kind != PLANNED)
                .group_by(outcomes_table.c.run_id)
            ).all()
        )
        votes: dict[tuple[str, int], int] = {
            (run_id, vote): n
            for run_id, vote, n in connection.execute(
                select(feedback.c.run_id, feedback.c.vote, func.count())
                .where(feedback.c.run_id.in_(ids))
                .group_by(feedback.c.run_id, feedback.c.vote)
            )
        }
        for run in runs:
            run["outcomes"] = delivered.get(run["run_id"], 0)
            run["feedback_pos"] = votes.get((run["run_id"], 1), 0)
            run["feedback_neg"] = votes.get((run["run_id"], -1), 0)
        return runs

    return ledger.read(read, what="read an agent's runs")


def run_summaries(ledger: Ledger, run_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Agent, start, status and tokens of the given runs (the runs behind flags)."""
    if not run_ids:
        return {}
    tokens = spent_tokens(entries)
    query = select(
        entries.c.run_id,
        entries.c.agent,
        entries.c.owner,
        entries.c.started_at,
        entries.c.status,
        tokens.label("tokens"),
        entries.c.cost_usd,
    ).where(entries.c.run_id.in_(list(run_ids)))
    found = ledger.read(lambda c: c.execute(query).mappings().all(), what="read flagged runs")
    return {row["run_id"]: dict(row) for row in found}


@dataclass(frozen=True)
class RunDetail:
    entry: dict[str, Any]
    outcomes: list[dict[str, Any]]
    feedback: list[dict[str, Any]]
    events: list[dict[str, Any]]


def run_detail(ledger: Ledger, run_id: str) -> RunDetail | None:
    """Everything recorded about one run, or None when there is no such run."""

    def read(connection: Connection) -> RunDetail | None:
        entry = (
            connection.execute(select(entries).where(entries.c.run_id == run_id))
            .mappings()
            .one_or_none()
        )
        if entry is None:
            return None

        def rows(table: Any, *order: Any) -> list[dict[str, Any]]:
            query = select(table).where(table.c.run_id == run_id).order_by(*order)
            return [dict(row) for row in connection.execute(query).mappings()]

        return RunDetail(
            dict(entry),
            rows(outcomes_table, outcomes_table.c.id),
            rows(feedback, feedback.c.created_at, feedback.c.id),
            rows(events, events.c.id),
        )

    return ledger.read(read, what="read a run")


def visible_run(
    entry: dict[str, Any], viewer: str | None, privacy: PrivacyLike, people: People | None = None
) -> bool:
    """A run is its owner's and its trigger's (any of their identities, with `people`): shown
    to them and to admins."""
    if is_admin(viewer, privacy):
        return True
    if viewer is None:
        return False
    if people is None:
        return viewer in (entry.get("owner"), entry.get("triggered_by"))
    return people.same(viewer, entry.get("owner")) or people.same(viewer, entry.get("triggered_by"))
