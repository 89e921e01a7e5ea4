"""Claims: exactly one replica runs each scheduled fire.

A fire (agent, scheduled time) is claimed by inserting a row with that primary key into
``ledger_claims``; in the same transaction the winner opens the run's entry, so a replica that
dies right after winning still leaves an entry behind. While it runs, the winner renews the
claim's lease; a claim whose lease ran out belongs to a replica that died, and any replica closes
its entry as interrupted. Nothing runs twice: a claimed fire is never claimed again.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, and_, select, update
from sqlalchemy.dialects import postgresql, sqlite

from meshagent.exceptions import LedgerError
from meshagent.ledger import rows
from meshagent.ledger.schema import claims, entries

if TYPE_CHECKING:
    from meshagent.ledger.store import Ledger

__all__ = ["claim", "expire", "finish", "fire_key", "renew"]


def fire_key(agent: str, fire_time: datetime) -> str:
    """The idempotency key of a scheduled fire's entry."""
    return f"fire:{agent}@{fire_time.isoformat()}"


def _insert_ignoring_conflict(connection: Connection, values: dict[str, Any]) -> bool:
    dialect = postgresql if connection.dialect.name == "postgresql" else sqlite
    statement = (
        dialect.insert(claims).values(values).on_conflict_do_nothing().returning(claims.c.agent)
    )
    return connection.execute(statement).first() is not None  # rowcount is unreliable here


def claim(
    ledger: Ledger,
    *,
    agent: str,
    fire_time: datetime,
    replica: str,
    lease_seconds: float,
    entry: dict[str, Any],
) -> tuple[bool, bool]:
    """Claim a fire and open its entry; returns ``(won, busy)``.

    ``busy`` is True when another fire of the same agent is still held by a live claim (the
    winner must not run this one at the same time).
    """
    now = rows.now()
    values = {
        "agent": agent,
        "fire_time": fire_time,
        "replica": replica,
        "run_id": entry["run_id"],
        "claimed_at": now,
        "lease_until": now + timedelta(seconds=lease_seconds),
        "done": False,
    }

    def work(connection: Connection) -> tuple[bool, bool]:
        if not _insert_ignoring_conflict(connection, values):
            return False, False
        connection.execute(entries.insert().values(entry))
        other = connection.execute(
            select(claims.c.run_id).where(
                claims.c.agent == agent,
                claims.c.fire_time != fire_time,
                claims.c.done.is_(False),
                claims.c.lease_until > now,
            )
        ).first()
        return True, other is not None

    return ledger.transact(work, what="claim a scheduled fire")


def renew(ledger: Ledger, replica: str, lease_seconds: float) -> int:
    """Extend the leases of this replica's unfinished claims; returns how many."""
    until = rows.now() + timedelta(seconds=lease_seconds)
    statement = (
        update(claims)
        .where(claims.c.replica == replica, claims.c.done.is_(False))
        .values(lease_until=until)
    )
    return ledger.transact(lambda c: c.execute(statement).rowcount, what="renew claims")


def finish(ledger: Ledger, keys: Iterable[tuple[str, datetime]]) -> None:
    """Mark claims done: their runs are closed."""
    pairs = list(keys)
    if not pairs:
        return

    def work(connection: Connection) -> None:
        for agent, fire_time in pairs:
            connection.execute(
                update(claims)
                .where(claims.c.agent == agent, claims.c.fire_time == fire_time)
                .values(done=True)
            )

    ledger.transact(work, what="finish claims")


def expire(ledger: Ledger) -> list[str]:
    """Close as interrupted the runs of claims whose lease ran out; returns their run ids."""
    now = rows.now()
    query = select(claims.c.agent, claims.c.fire_time, claims.c.run_id, claims.c.replica).where(
        and_(claims.c.done.is_(False), claims.c.lease_until < now)
    )
    found = ledger.read(lambda c: c.execute(query).all(), what="find expired claims")
    closed = []
    for agent, fire_time, run_id, replica in found:
        entry = ledger.entry(run_id)
        if entry is not None and entry["status"] == "running":
            try:
                ledger.close_run(
                    run_id,
                    "interrupted",
                    error=f"replica {replica} stopped renewing its claim before the run finished",
                )
                closed.append(run_id)
            except LedgerError:
                pass  # another replica closed it first
        finish(ledger, [(agent, fire_time)])
    return closed
