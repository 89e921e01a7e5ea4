"""The SQL behind the flags: every figure a rule needs, aggregated in the database.

Each function reads one thing for a period with GROUP BY or window functions (LAG for re-runs
and request gaps), so a week of flags over a million entries reads a few thousand rows into
Python, never one row per run of the history. Baselines (an agent's usual day, its own past
tokens per run) come from the daily rollups. Runs of a flag are read afterwards, only for the
agents flagged (`runs_where`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, and_, case, false, func, literal, or_, select, true

from meshagent.ledger.records import PLANNED, QUIET
from meshagent.ledger.schema import daily, entries, feedback, outcomes, spent_tokens

__all__ = [
    "BAD_STATUSES",
    "Cell",
    "Vote",
    "cells",
    "count_where",
    "daily_history",
    "engaged_agents",
    "rerun_counts",
    "rerun_rows",
    "runs_where",
    "sessions",
    "unread_counts",
    "votes",
]

BAD_STATUSES = ("failed", "over_budget", "interrupted")
_NOT_SPENDING = ("running", "skipped_unchanged", "missed")


def day_of(column: Any, dialect: str) -> Any:
    """The UTC day of a timestamp column, as 'YYYY-MM-DD' text."""
    if dialect == "sqlite":
        return func.substr(column, 1, 10)
    return func.to_char(func.timezone("UTC", column), "YYYY-MM-DD")


def seconds_of(column: Any, dialect: str) -> Any:
    """A timestamp column as seconds since the epoch (a float)."""
    if dialect == "sqlite":
        return (func.julianday(column) - 2440587.5) * 86400.0
    return func.extract("epoch", column)


def _window(since: datetime, until: datetime) -> tuple[Any, Any]:
    return entries.c.started_at >= since, entries.c.started_at < until


def _flag(condition: Any) -> Any:
    return func.max(case((condition, 1), else_=0))


def _outcome_facts(since: datetime, until: datetime) -> Any:
    """Per run started in the window: what kinds of outcome it has, and their verdicts."""
    delivered = outcomes.c.kind.not_in((PLANNED, QUIET))
    return (
        select(
            outcomes.c.run_id.label("run_id"),
            _flag(delivered).label("delivered"),
            _flag(outcomes.c.kind == QUIET).label("quiet"),
            _flag(outcomes.c.kind == PLANNED).label("planned"),
            _flag(and_(delivered, outcomes.c.verdict == "accepted")).label("accepted"),
            _flag(and_(delivered, outcomes.c.verdict == "rejected")).label("rejected"),
            _flag(and_(delivered, outcomes.c.reaches_others == true())).label("reach"),
            _flag(and_(delivered, outcomes.c.reaches_others == false())).label("alone"),
            _flag(and_(delivered, outcomes.c.audience == "ephemeral")).label("ephemeral"),
        )
        .select_from(entries.join(outcomes, outcomes.c.run_id == entries.c.run_id))
        .where(*_window(since, until))
        .group_by(outcomes.c.run_id)
        .subquery()
    )


@dataclass
class Cell:
    """Runs of one agent by one (owner, triggerer, trigger kind) on one day of the period."""

    agent: str
    owner: str
    triggered_by: str
    trigger_kind: str
    day: str
    value_tag: str
    runs: int
    cost: Decimal
    tokens: int
    failures: int
    spent: int  # ok runs that spent tokens
    empty: int  # ...with no outcome of any kind (not even a plan or a quiet result)
    empty_cost: Decimal
    delivered: int
    delivered_tokens: int
    quiet: int
    accepted: int
    rejected: int
    alone: int  # delivered runs that nobody but the owner and triggerer could see
    alone_cost: Decimal
    claimed: Decimal  # minutes_saved over delivered runs
    scheduled_delivered: int
    off_schedule: int
    off_schedule_cost: Decimal
    distinct_inputs: int  # different contexts read: another thread, another question


def cells(
    connection: Connection, since: datetime, until: datetime, tolerance_seconds: float
) -> list[Cell]:
    """Every (agent, owner, triggerer, trigger kind, day, tag) of the period, with its sums."""
    dialect = connection.dialect.name
    facts = _outcome_facts(since, until)
    tokens = spent_tokens(entries)
    cost = entries.c.cost_usd

    def has(column: Any) -> Any:
        return func.coalesce(column, 0) == 1

    spent = and_(entries.c.status == "ok", tokens > 0)
    anything = or_(has(facts.c.delivered), has(facts.c.quiet), has(facts.c.planned))
    empty = and_(spent, ~anything)
    alone = and_(has(facts.c.alone), ~has(facts.c.reach), ~has(facts.c.ephemeral))
    late = func.abs(
        seconds_of(entries.c.started_at, dialect) - seconds_of(entries.c.scheduled_for, dialect)
    )
    off = and_(
        entries.c.trigger_kind == "schedule",
        entries.c.status.not_in(_NOT_SPENDING),
        tokens > 0,
        or_(entries.c.scheduled_for.is_(None), late > tolerance_seconds),
    )

    def count(condition: Any) -> Any:
        return func.sum(case((condition, 1), else_=0))

    def total(condition: Any, value: Any) -> Any:
        return func.sum(case((condition, value), else_=None))

    day = day_of(entries.c.started_at, dialect)
    keys = (
        entries.c.agent,
        func.coalesce(entries.c.owner, ""),
        func.coalesce(entries.c.triggered_by, ""),
        entries.c.trigger_kind,
        day,
        func.coalesce(entries.c.value_tag, ""),
    )
    query = (
        select(
            *keys,
            func.count(),
            func.sum(cost),
            func.sum(tokens),
            count(entries.c.status.in_(BAD_STATUSES)),
            count(spent),
            count(empty),
            total(empty, cost),
            count(has(facts.c.delivered)),
            total(has(facts.c.delivered), tokens),
            count(has(facts.c.quiet)),
            count(has(facts.c.accepted)),
            count(has(facts.c.rejected)),
            count(alone),
            total(alone, cost),
            total(has(facts.c.delivered), entries.c.minutes_saved),
            count(and_(has(facts.c.delivered), entries.c.trigger_kind == "schedule")),
            count(off),
            total(off, cost),
            func.count(entries.c.input_hash.distinct()),
        )
        .select_from(entries.outerjoin(facts, facts.c.run_id == entries.c.run_id))
        .where(*_window(since, until), entries.c.status != "running")
        .group_by(*keys)
    )
    result = []
    for row in connection.execute(query):
        values = list(row)
        for at in (7, 12, 19, 20, 23):  # money and minutes: None when nothing was summed
            values[at] = Decimal(values[at] or 0)
        for at in (6, 8, 9, 10, 11, 13, 14, 15, 16, 17, 18, 21, 22, 24):
            values[at] = int(values[at] or 0)
        result.append(Cell(*values))
    return result


def daily_history(connection: Connection, start: date, end: date) -> list[tuple[Any, ...]]:
    """(agent, day, runs, cost, tokens) per agent and day from the rollups, days in [start, end)."""
    tokens = daily.c.input_tokens + daily.c.output_tokens
    query = (
        select(
            daily.c.agent,
            daily.c.day,
            func.sum(daily.c.runs),
            func.sum(daily.c.cost_usd),
            func.sum(tokens),
        )
        .where(daily.c.day >= start, daily.c.day < end)
        .group_by(daily.c.agent, daily.c.day)
    )
    return [tuple(row) for row in connection.execute(query)]


def rerun_rows(connection: Connection, since: datetime, until: datetime) -> list[tuple[Any, ...]]:
    """Ok runs in the period that spent tokens on the input of the agent's run just before,
    itself ok (a retry after a failure is left out) and asked by the same person (run_id, agent,
    owner, triggered_by, cost). The run before may be up to a day before the period."""
    return [tuple(row) for row in connection.execute(_reruns(since, until))]


def rerun_counts(
    connection: Connection, since: datetime, until: datetime, agents: Sequence[str]
) -> dict[str, int]:
    """How many `rerun_rows` each of `agents` has in the window (counted in the database)."""
    if not agents:
        return {}
    found = _reruns(since, until, agents).subquery()
    query = select(found.c.agent, func.count()).group_by(found.c.agent)
    return {agent: int(count) for agent, count in connection.execute(query)}


def _reruns(since: datetime, until: datetime, agents: Sequence[str] | None = None) -> Any:
    """The query of `rerun_rows`, of every agent or of `agents`."""
    tokens = spent_tokens(entries)
    order = (entries.c.started_at, entries.c.id)
    lag = {
        name: func.lag(entries.c[name]).over(partition_by=entries.c.agent, order_by=order)
        for name in ("input_hash", "status", "triggered_by")
    }
    inner = (
        select(
            entries.c.run_id,
            entries.c.agent,
            entries.c.owner,
            entries.c.triggered_by,
            entries.c.cost_usd,
            entries.c.started_at,
            entries.c.status,
            entries.c.input_hash,
            tokens.label("tokens"),
            lag["input_hash"].label("prev_hash"),
            lag["status"].label("prev_status"),
            lag["triggered_by"].label("prev_by"),
        )
        .where(
            *_window(since - timedelta(days=1), until),
            entries.c.status.not_in(_NOT_SPENDING),
            *([entries.c.agent.in_(list(agents))] if agents is not None else []),
        )
        .subquery()
    )
    same_person = or_(
        and_(inner.c.triggered_by.is_(None), inner.c.prev_by.is_(None)),
        inner.c.triggered_by == inner.c.prev_by,
    )
    return select(
        inner.c.run_id, inner.c.agent, inner.c.owner, inner.c.triggered_by, inner.c.cost_usd
    ).where(
        inner.c.started_at >= since,
        inner.c.status == "ok",
        inner.c.tokens > 0,
        inner.c.input_hash.is_not(None),
        inner.c.input_hash == inner.c.prev_hash,
        inner.c.prev_status == "ok",
        same_person,
    )


def sessions(
    connection: Connection, since: datetime, until: datetime, gap_seconds: float, least: int
) -> list[tuple[Any, ...]]:
    """Requests of `least` runs or more: runs of one agent by one person (not scheduled), each
    within `gap_seconds` of the one before: (agent, owner, triggered_by, runs, cost, first, last
    start)."""
    dialect = connection.dialect.name
    moment = seconds_of(entries.c.started_at, dialect)
    person = func.coalesce(entries.c.triggered_by, entries.c.owner, "")
    previous = func.lag(moment).over(
        partition_by=(entries.c.agent, person), order_by=(entries.c.started_at, entries.c.id)
    )
    starts = (
        select(
            entries.c.agent,
            entries.c.owner,
            person.label("person"),
            entries.c.cost_usd,
            entries.c.started_at,
            entries.c.id,
            case((and_(previous.is_not(None), moment - previous <= gap_seconds), 0), else_=1).label(
                "new"
            ),
        )
        .where(
            *_window(since, until),
            entries.c.trigger_kind != "schedule",
            entries.c.status != "running",
        )
        .subquery()
    )
    numbered = select(
        starts.c.agent,
        starts.c.owner,
        starts.c.person,
        starts.c.cost_usd,
        starts.c.started_at,
        func.sum(starts.c.new)
        .over(
            partition_by=(starts.c.agent, starts.c.person),
            order_by=(starts.c.started_at, starts.c.id),
        )
        .label("session"),
    ).subquery()
    query = (
        select(
            numbered.c.agent,
            func.max(numbered.c.owner),
            numbered.c.person,
            func.count(),
            func.sum(numbered.c.cost_usd),
            func.min(numbered.c.started_at),
            func.max(numbered.c.started_at),
        )
        .group_by(numbered.c.agent, numbered.c.person, numbered.c.session)
        .having(func.count() >= least)
    )
    return [tuple(row) for row in connection.execute(query)]


@dataclass(frozen=True)
class Vote:
    run_id: str
    agent: str
    owner: str
    triggered_by: str
    person: str
    vote: int
    cost: Decimal
    asker_only: bool  # the run answered its asker alone (ephemeral): their vote is theirs


def votes(
    connection: Connection,
    since: datetime,
    until: datetime,
    agents: Sequence[str] | None = None,
) -> list[Vote]:
    """Every vote on runs of the period (of every agent, or of `agents`), with the run's agent,
    owner and triggerer."""
    query = (
        select(
            entries.c.run_id,
            entries.c.agent,
            func.coalesce(entries.c.owner, ""),
            func.coalesce(entries.c.triggered_by, ""),
            feedback.c.person,
            feedback.c.vote,
            entries.c.cost_usd,
            select(outcomes.c.id)
            .where(outcomes.c.run_id == entries.c.run_id, outcomes.c.audience == "ephemeral")
            .exists(),
        )
        .join(feedback, feedback.c.run_id == entries.c.run_id)
        .where(*_window(since, until))
    )
    if agents is not None:
        query = query.where(entries.c.agent.in_(list(agents)))
    return [
        Vote(*row[:6], Decimal(row[6] or 0), bool(row[7]))  # type: ignore[arg-type]
        for row in connection.execute(query)
    ]


def engaged_agents(connection: Connection, since: datetime, until: datetime) -> set[str]:
    """Agents with an outcome accepted or rejected, of runs started in the window."""
    # From the few outcomes with such a verdict (the due index leads with the verdict) to their
    # entries, never from every entry of the window to its outcomes.
    engaged = select(outcomes.c.run_id).where(outcomes.c.verdict.in_(("accepted", "rejected")))
    query = (
        select(entries.c.agent)
        .where(entries.c.run_id.in_(engaged), *_window(since, until))
        .distinct()
    )
    return {row[0] for row in connection.execute(query)}


def unread_counts(
    connection: Connection, agents: Sequence[str], since: datetime, until: datetime
) -> dict[str, tuple[int, int, Decimal]]:
    """Per agent: delivered outputs already checked (no plans, quiet results or ephemeral
    answers) of runs nobody but the owner asked for, the distinct runs, and their cost."""
    result: dict[str, tuple[int, int, Decimal]] = {}
    if not agents:
        return result
    own = or_(entries.c.triggered_by.is_(None), entries.c.triggered_by == entries.c.owner)
    checked = and_(
        outcomes.c.kind.not_in((PLANNED, QUIET)),
        func.coalesce(outcomes.c.audience, "") != "ephemeral",
        outcomes.c.checked_at.is_not(None),
    )
    runs = (
        select(entries.c.agent, entries.c.run_id, entries.c.cost_usd, func.count().label("n"))
        .join(outcomes, outcomes.c.run_id == entries.c.run_id)
        .where(entries.c.agent.in_(list(agents)), *_window(since, until), own, checked)
        .group_by(entries.c.agent, entries.c.run_id, entries.c.cost_usd)
        .subquery()
    )
    query = select(
        runs.c.agent, func.sum(runs.c.n), func.count(), func.sum(runs.c.cost_usd)
    ).group_by(runs.c.agent)
    for agent, outputs, count, cost in connection.execute(query):
        result[agent] = (int(outputs), int(count), Decimal(cost or 0))
    return result


def runs_where(
    connection: Connection,
    agent: str,
    since: datetime,
    until: datetime,
    *,
    condition: Any = None,
    triggered_by: str | None = None,
    limit: int = 1000,
) -> list[tuple[str, str, str]]:
    """(run_id, owner, triggered_by) of an agent's runs in the window meeting `condition`."""
    query = select(
        entries.c.run_id,
        func.coalesce(entries.c.owner, ""),
        func.coalesce(entries.c.triggered_by, ""),
    ).where(entries.c.agent == agent, *_window(since, until), entries.c.status != "running")
    if condition is not None:
        query = query.where(condition)
    if triggered_by is not None:
        query = query.where(func.coalesce(entries.c.triggered_by, "") == triggered_by)
    query = query.order_by(entries.c.started_at, entries.c.id).limit(limit)
    return [tuple(row) for row in connection.execute(query)]  # type: ignore[misc]


def count_where(
    connection: Connection, agent: str, since: datetime, until: datetime, condition: Any
) -> int:
    """How many of the agent's runs in the window meet `condition` (one indexed count)."""
    query = select(func.count()).where(
        entries.c.agent == agent, *_window(since, until), entries.c.status != "running", condition
    )
    return int(connection.execute(query).scalar() or 0)


def run_condition(name: str) -> Any:
    """The SQL condition of a rule's runs, for `runs_where`."""
    tokens = spent_tokens(entries)
    delivered = select(outcomes.c.id).where(
        outcomes.c.run_id == entries.c.run_id, outcomes.c.kind.not_in((PLANNED, QUIET))
    )
    anything = select(outcomes.c.id).where(outcomes.c.run_id == entries.c.run_id)
    accepted = delivered.where(outcomes.c.verdict == "accepted")
    alone = delivered.where(outcomes.c.reaches_others == false())
    reach = delivered.where(
        or_(outcomes.c.reaches_others == true(), outcomes.c.audience == "ephemeral")
    )
    rejected = delivered.where(outcomes.c.verdict == "rejected")
    unread = delivered.where(
        outcomes.c.checked_at.is_not(None),
        func.coalesce(outcomes.c.audience, "") != "ephemeral",
        or_(entries.c.triggered_by.is_(None), entries.c.triggered_by == entries.c.owner),
    )
    conditions = {
        "no_outcome": and_(entries.c.status == "ok", tokens > 0, ~anything.exists()),
        "unread": unread.exists(),
        "failing": entries.c.status.in_(BAD_STATUSES),
        "alone": and_(alone.exists(), ~reach.exists()),
        "delivered": delivered.exists(),
        "not_accepted": ~accepted.exists(),
        "rejected": rejected.exists(),
        "slash": entries.c.trigger_kind == "slash",
        "schedule": entries.c.trigger_kind == "schedule",
        "spent": tokens > 0,
    }
    return conditions.get(name, literal(True))
