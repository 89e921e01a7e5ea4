"""Daily budgets across runs and replicas: a model call reserves what it may cost before it is
made, and the reservation is replaced by the call's real cost when that is written.

A call is admitted while the day's spend (the known costs of the agent's entries that started
that UTC day) plus the reservations of the calls in flight is below the agent's
``max_usd_per_day``; its reservation then counts for every later call on every replica. So the
day ends at most one call's reservation over the budget, the reservation of the last call
admitted. Reservation is one transaction that holds a lock per agent and day: PostgreSQL's
``pg_advisory_xact_lock`` (the reads after it see every commit made before it was granted),
SQLite's ``BEGIN IMMEDIATE``. A reservation is dropped in the same transaction as the write of
the call's usage (``releasing``), so its amount never counts twice nor drops out before the cost
is in: the release costs no round trip of its own. A reservation whose process died before
releasing it is dropped when recovery closes its run, and counts no more once it expires.
Spending of unknown cost cannot be held to a dollar limit: a day with any run whose tokens have
no price refuses further calls of that agent.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, and_, bindparam, case, delete, func, insert, select, text

from meshagent.ledger.engine import retrying, write_transaction
from meshagent.ledger.lifecycle import Batch, Grouped, Step
from meshagent.ledger.schema import entries, reservations
from meshagent.ledger.types import utc

if TYPE_CHECKING:
    from meshagent.ledger.access import LedgerAccess

__all__ = ["Standing", "day_of", "release_run", "releasing", "reserve", "standing"]

# The first key of PostgreSQL's two-key advisory locks taken here ("MBUD"), so they never meet
# the one-key lock the migrations take.
_LOCK_SPACE = 0x4D425544
# The lock, and this transaction's commit not waiting for the disk (see `reserve`).
_LOCK = text(
    "SELECT set_config('synchronous_commit', 'off', true), "
    "pg_advisory_xact_lock(:space, hashtext(current_schema() || :key))"
)

_tokens = entries.c.input_tokens + entries.c.output_tokens
_RESERVED = (
    select(func.coalesce(func.sum(reservations.c.amount_usd), 0))
    .where(
        reservations.c.agent == bindparam("agent"),
        reservations.c.day == bindparam("day"),
        reservations.c.expires_at > bindparam("now"),
    )
    .scalar_subquery()
)
# Spent, runs of unknown cost and reserved, in one statement: one snapshot, one round trip.
_STANDING = select(
    func.coalesce(func.sum(entries.c.cost_usd), 0),
    func.coalesce(func.sum(case((and_(entries.c.cost_usd.is_(None), _tokens > 0), 1), else_=0)), 0),
    _RESERVED,
).where(
    entries.c.agent == bindparam("agent"),
    entries.c.started_at >= bindparam("since"),
    entries.c.started_at < bindparam("until"),
)
_RELEASE = delete(reservations).where(reservations.c.run_id == bindparam("release_run_id"))
# The reservation, inserted only when the day has room: decided and written in one statement
# (RETURNING says whether it was: the rowcount of an INSERT ... SELECT is not reliable everywhere).
_spent, _unknown, _reserved = _STANDING.subquery().c
_TAKE = (
    insert(reservations)
    .from_select(
        ["id", "agent", "day", "run_id", "amount_usd", "reserved_at", "expires_at"],
        select(
            *(bindparam(f"row_{column.name}", type_=column.type) for column in reservations.c)
        ).where(
            _unknown == 0,
            _spent + _reserved < bindparam("limit", type_=reservations.c.amount_usd.type),
        ),
    )
    .returning(reservations.c.id)
)


@dataclass(frozen=True)
class Standing:
    """An agent's day: what its runs spent, how many of them at an unknown cost, and what the
    calls in flight have reserved."""

    spent: Decimal
    unknown_runs: int
    reserved: Decimal

    @property
    def committed(self) -> Decimal:
        return self.spent + self.reserved

    def refusal(self, limit: Decimal) -> str | None:
        """Why no further call fits in ``limit`` today, or None."""
        if self.unknown_runs:
            runs = "a run" if self.unknown_runs == 1 else f"{self.unknown_runs} runs"
            return (
                f"max_usd_per_day of ${limit} cannot be kept today: {runs} of today spent tokens "
                "at an unknown price (a price override in meshagent.toml prices later runs)"
            )
        if self.committed >= limit:
            held = f", ${self.reserved:.4f} held by calls in flight" if self.reserved else ""
            return f"max_usd_per_day of ${limit} reached (${self.spent:.4f} spent today{held})"
        return None


def day_of(moment: datetime) -> date:
    """The UTC day whose budget a run that started at ``moment`` spends."""
    return utc(moment).date()


def _params(agent: str, day: date, now: datetime) -> dict[str, Any]:
    since = datetime.combine(day, time(0), tzinfo=UTC)
    return {"agent": agent, "day": day, "now": now, "since": since,
            "until": since + timedelta(days=1)}  # fmt: skip


def _standing(connection: Connection, params: dict[str, Any]) -> Standing:
    spent, unknown, reserved = connection.execute(_STANDING, params).one()
    return Standing(Decimal(spent or 0), int(unknown or 0), Decimal(reserved or 0))


def standing(ledger: LedgerAccess, agent: str, day: date, now: datetime) -> Standing:
    """``agent``'s day as it stands (no lock: for a check before a run's first call)."""
    params = _params(agent, day, now)
    return ledger.read(lambda c: _standing(c, params), what="read the daily budget")


def reserve(
    ledger: LedgerAccess,
    *,
    agent: str,
    day: date,
    run_id: str,
    amount: Decimal,
    limit: Decimal,
    now: datetime,
    expires_at: datetime,
) -> tuple[str | None, Standing | None]:
    """Reserve ``amount`` of ``agent``'s budget for ``day`` for one call of ``run_id``.

    Returns the reservation's id, or None with the standing that has no room for it.

    Its commit does not wait for the disk (PostgreSQL's synchronous_commit off, SQLite's
    synchronous NORMAL), which is most of what a reservation would cost: it guards live runs
    from each other, and every other session sees it once committed. Only a crash of the
    database server can lose one, in the moment before its log reaches the disk (under a
    second); on SQLite that is a crash of the machine the runs are on.
    """
    params = _params(agent, day, now)
    row = {"id": str(uuid.uuid4()), "agent": agent, "day": day, "run_id": run_id,
           "amount_usd": amount, "reserved_at": now, "expires_at": expires_at}  # fmt: skip
    values = {**params, "limit": limit, **{f"row_{name}": value for name, value in row.items()}}

    def work(connection: Connection) -> tuple[str | None, Standing | None]:
        if connection.dialect.name == "postgresql":
            connection.execute(_LOCK, {"space": _LOCK_SPACE, "key": f":{agent}@{day}"})
        if connection.execute(_TAKE, values).first() is not None:
            return row["id"], None
        return None, _standing(connection, params)  # why not, under the same lock

    def attempt() -> tuple[str | None, Standing | None]:
        # On PostgreSQL, _LOCK sets synchronous_commit: no round trip of its own.
        with write_transaction(ledger.engine, durable=False, relax_postgres=False) as connection:
            return work(connection)

    return retrying(attempt, deadline=ledger.retry_for, what="reserve from the daily budget",
                    url=ledger.url)  # fmt: skip


def releasing(step: Step[Any], run_id: str) -> Step[Any]:
    """``step`` (a write of ``run_id``'s entry), then the release of the run's reservations, in
    the same transaction: the calls' costs replace what they reserved, all at once."""
    return _Releasing(step, run_id)


class _Releasing(Grouped):
    """A write and the release that follows it; with others of its kind, all writes together,
    then all releases in one statement."""

    def __init__(self, step: Step[Any], run_id: str) -> None:
        self.step, self.run_id = step, run_id
        inner = getattr(step, "group", None)
        self.group = None if inner is None else ("releasing", inner)

    def __call__(self, connection: Connection, batch: Batch) -> Any:
        result = self.step(connection, batch)
        release_run(connection, self.run_id)
        return result

    def together(
        self, connection: Connection, batch: Batch, steps: Sequence[_Releasing]
    ) -> list[Any]:
        assert isinstance(self.step, Grouped)
        results = self.step.together(connection, batch, [each.step for each in steps])
        ids = [each.run_id for each in steps]
        connection.execute(delete(reservations).where(reservations.c.run_id.in_(ids)))
        return results


def release_run(connection: Connection, run_id: str) -> None:
    """Drop every reservation of ``run_id`` (its calls ended, or its process did)."""
    connection.execute(_RELEASE, {"release_run_id": run_id})
