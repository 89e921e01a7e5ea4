"""Claims: exactly one replica runs each scheduled fire, and every fire is accounted for.

A fire (agent, scheduled time) is claimed by inserting a row with that primary key into
``ledger_claims``; in the same transaction the winner opens the run's entry, so a replica that
dies right after winning still leaves an entry behind. While it runs, the winner renews the
claim's lease; a claim whose lease ran out belongs to a replica that died, and any replica closes
its entry as interrupted. Nothing runs twice: a claimed fire is never claimed again.

A fire that will not run is closed as ``missed`` in the transaction that claims it, so no other
fire ever sees it as a run in progress: only a live claim whose entry is still open (a run that
has not closed its entry, or a fire waiting for the run before it) holds its agent. Fires skipped
together (a replica whose loop woke late) are claimed together and share one ``missed`` entry:
each claim row names that entry's run id.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, and_, select, text, update
from sqlalchemy.dialects import postgresql, sqlite

from meshagent.exceptions import LedgerError
from meshagent.ledger import lifecycle, rows
from meshagent.ledger.schema import claims, entries

if TYPE_CHECKING:
    from meshagent.ledger.store import Ledger

__all__ = [
    "Claim",
    "Fire",
    "Holder",
    "claim_all",
    "claim_missed",
    "close_missed",
    "expire",
    "finish",
    "fire_key",
    "holders",
    "renew",
]

#: The first key of the PostgreSQL advisory locks that order the claims of one agent.
_LOCK_CLASS = 0x4D41


def fire_key(agent: str, fire_time: datetime) -> str:
    """The idempotency key of a scheduled fire's entry."""
    return f"fire:{agent}@{fire_time.isoformat()}"


@dataclass(frozen=True)
class Holder:
    """Another fire of the same agent whose run is in progress: its claim is live (not done,
    lease not run out) and its entry is still open."""

    fire_time: datetime
    run_id: str
    replica: str

    def describe(self) -> str:
        return (
            f"run {self.run_id} of the fire at {self.fire_time.isoformat()}, "
            f"on replica {self.replica}"
        )


@dataclass(frozen=True)
class Claim:
    """What claiming a fire gave: whether this replica won it, and what the winner does next."""

    won: bool
    run_id: str | None = None
    missed: str | None = None
    """Why the fire will not run: its entry was closed as missed with this reason (and its
    claim marked done) in the claiming transaction."""
    waits_for: Holder | None = None
    """An earlier fire's run still in progress: the winner waits for it, or closes this fire
    as missed with ``close_missed``."""


@dataclass(frozen=True)
class Fire:
    """A fire to claim: its agent and scheduled time, and the entry its winner opens.

    ``hold()`` may give a reason not to run it, such as a backoff; it is asked only when no
    other fire of the agent is running."""

    agent: str
    fire_time: datetime
    entry: dict[str, Any]
    hold: Callable[[], str | None] | None = None


def claim_all(
    ledger: Ledger, fires: Sequence[Fire], *, replica: str, lease_seconds: float
) -> list[Claim]:
    """Claim fires in one transaction and open the entries of the ones won; their claims, in
    the order given.

    A later fire's run in progress makes a fire missed (its entry closed so, its claim done, in
    this transaction); an earlier fire's run in progress is returned as ``waits_for``. Fires are
    claimed in a stable order, so replicas claiming the same fires wait for each other and
    never deadlock.
    """
    now = rows.now()
    first: dict[tuple[str, datetime], int] = {}
    for index, fire in enumerate(fires):  # the same fire twice (two equal triggers): once
        first.setdefault((fire.agent, fire.fire_time), index)
    ordered = [fires[first[key]] for key in sorted(first)]

    def work(connection: Connection) -> list[Claim]:
        # A few statements for the whole burst, not a few per fire.
        _lock_agents(connection, sorted({fire.agent for fire in ordered}))
        won = _insert_claims(connection, ordered, replica, now, lease_seconds)
        opened = [fire for fire in ordered if (fire.agent, fire.fire_time) in won]
        for chunk in _chunks(opened):
            connection.execute(entries.insert(), [fire.entry for fire in chunk])
        running = _holders_of(connection, {fire.agent for fire in opened}, now, exclude=won)
        decided: dict[tuple[str, datetime], Claim] = {}
        for fire in opened:  # in order: an agent's earlier fire of the burst comes first
            decided[(fire.agent, fire.fire_time)] = _decide(fire, running, replica)
        # The missed ones are closed last, together: the chain head they lock is held from
        # here to the commit only, and always after the agents' locks (no deadlock).
        missed = [
            (fire, reason)
            for fire in opened
            if (reason := decided[(fire.agent, fire.fire_time)].missed) is not None
        ]
        _close_all(connection, [(fire.entry, reason) for fire, reason in missed], now)
        for fire, _ in missed:
            _mark_done(connection, fire.agent, [fire.fire_time])
        return [
            decided.get(key, _LOST) if first[key] == index else _LOST
            for index, key in enumerate((fire.agent, fire.fire_time) for fire in fires)
        ]

    return ledger.transact(work, what="claim scheduled fires")


def claim_missed(
    ledger: Ledger,
    *,
    agent: str,
    fire_times: Sequence[datetime],
    replica: str,
    entry: Callable[[datetime], dict[str, Any]],
    reason: Callable[[list[datetime]], str],
) -> tuple[list[datetime], str | None]:
    """Claim fires that will not run and record the ones won in one ``missed`` entry, at the
    latest of them; returns (the fires won, the entry's run id or None).

    ``entry(fire_time)`` gives the entry's columns, ``reason(won)`` its reason. Every claim row
    won names the entry, so which fires it stands for is recorded, not only how many.
    """
    now = rows.now()
    run_id = str(uuid.uuid4())

    def work(connection: Connection) -> tuple[list[datetime], str | None]:
        _lock_agents(connection, [agent])
        won = [
            fire
            for fire in fire_times
            if _insert_ignoring_conflict(
                connection,
                {
                    "agent": agent,
                    "fire_time": fire,
                    "replica": replica,
                    "run_id": run_id,
                    "claimed_at": now,
                    "lease_until": now,
                    "done": True,
                },
            )
        ]
        if not won:
            return [], None
        values = {**entry(won[-1]), "run_id": run_id}
        connection.execute(entries.insert().values(values))
        _close_all(connection, [(values, reason(won))], now)
        return won, run_id

    return ledger.transact(work, what="claim skipped fires")


def holders(ledger: Ledger, agent: str, fire_time: datetime) -> list[Holder]:
    """The other fires of ``agent`` whose runs are in progress, oldest first."""
    now = rows.now()
    return ledger.read(
        lambda c: _holders(c, agent, fire_time, now), what="find the runs of an agent"
    )


def close_missed(
    ledger: Ledger, *, agent: str, fire_time: datetime, run_id: str, reason: str
) -> None:
    """Close a claimed fire's entry as missed and its claim as done, together.

    Raises LedgerError when the entry is closed already (another replica expired the claim).
    """

    def work(connection: Connection) -> None:
        values = {"status": "missed", "error": reason[:2000], "finished_at": rows.now()}
        close = lifecycle.close_step(run_id, values, opened=None, produced=[])
        lifecycle.run_steps(connection, [close])
        _mark_done(connection, agent, [fire_time])

    ledger.transact(work, what="close a missed fire")


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
            _mark_done(connection, agent, [fire_time])

    ledger.transact(work, what="finish claims")


def expire(ledger: Ledger) -> list[str]:
    """Close as interrupted the runs of claims whose lease ran out, dropping their budget
    reservations in the same write; returns their run ids."""
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
                    release_reservations=True,  # its calls in flight hold no budget any more
                )
                closed.append(run_id)
            except LedgerError:
                pass  # another replica closed it first
        finish(ledger, [(agent, fire_time)])
    return closed


# -- helpers ----------------------------------------------------------------------------------


def _insert_ignoring_conflict(connection: Connection, values: dict[str, Any]) -> bool:
    dialect = postgresql if connection.dialect.name == "postgresql" else sqlite
    statement = (
        dialect.insert(claims).values(values).on_conflict_do_nothing().returning(claims.c.agent)
    )
    return connection.execute(statement).first() is not None  # rowcount is unreliable here


_LOST = Claim(won=False)
_CHUNK = 100  # rows per statement: within SQLite's limit of bound parameters


def _chunks(items: Sequence[Any]) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), _CHUNK):
        yield items[start : start + _CHUNK]


def _insert_claims(
    connection: Connection,
    fires: Sequence[Fire],
    replica: str,
    now: datetime,
    lease_seconds: float,
) -> set[tuple[str, datetime]]:
    """Insert the claims that are free; returns the (agent, fire time) of the ones inserted."""
    dialect = postgresql if connection.dialect.name == "postgresql" else sqlite
    # One statement, compiled once and cached; SQLAlchemy sends the rows in batches.
    statement = (
        dialect.insert(claims)
        .on_conflict_do_nothing()
        .returning(claims.c.agent, claims.c.fire_time)
    )
    until = now + timedelta(seconds=lease_seconds)
    values = [
        {
            "agent": fire.agent,
            "fire_time": fire.fire_time,
            "replica": replica,
            "run_id": fire.entry["run_id"],
            "claimed_at": now,
            "lease_until": until,
            "done": False,
        }
        for fire in fires
    ]
    if not values:
        return set()
    return {(agent, fire_time) for agent, fire_time in connection.execute(statement, values)}


def _decide(fire: Fire, running: dict[str, list[Holder]], replica: str) -> Claim:
    """Run, wait or miss: what the other fires of the agent in progress leave to a fire won."""
    holders = running.get(fire.agent, [])
    later = [h for h in holders if h.fire_time > fire.fire_time]
    earlier = next((h for h in holders if h.fire_time < fire.fire_time), None)
    run_id = fire.entry["run_id"]
    if later:
        # Claimed before this one (this replica came late to it): running, or waiting its turn.
        reason = f"a later fire of this agent had been claimed first: {later[0].describe()}"
        return Claim(won=True, run_id=run_id, missed=reason)
    reason = fire.hold() if earlier is None and fire.hold is not None else None
    if reason is not None:
        return Claim(won=True, run_id=run_id, missed=reason)
    # A later fire of the same agent in this burst waits for this one.
    running.setdefault(fire.agent, []).append(Holder(fire.fire_time, run_id, replica))
    return Claim(won=True, run_id=run_id, waits_for=earlier)


def _lock_agents(connection: Connection, agents: Sequence[str]) -> None:
    """Order the claims of each agent (PostgreSQL; SQLite has one writer at a time): two fires
    of one agent claimed at the same moment on two replicas would not see each other's
    uncommitted rows, and could both run. Locked in one sorted order, so never a deadlock."""
    if connection.dialect.name != "postgresql" or not agents:
        return
    connection.execute(
        text(
            "SELECT pg_advisory_xact_lock(:class, hashtext(agent)) "
            "FROM unnest(CAST(:agents AS text[])) AS locked(agent) ORDER BY agent"
        ),
        {"class": _LOCK_CLASS, "agents": list(agents)},
    )


def _holders_of(
    connection: Connection,
    agents: set[str],
    now: datetime,
    exclude: set[tuple[str, datetime]],
) -> dict[str, list[Holder]]:
    """The runs in progress of ``agents`` by agent, oldest first, but the fires ``exclude``.

    Two plain lookups (live claims by agent, then which of their entries are open) rather than
    a join: on tables without statistics yet, PostgreSQL planned the join as a nested loop
    over every running entry."""
    live: list[tuple[str, datetime, str, str]] = []
    for chunk in _chunks(sorted(agents)):
        query = select(claims.c.agent, claims.c.fire_time, claims.c.run_id, claims.c.replica).where(
            claims.c.agent.in_(chunk), claims.c.done.is_(False), claims.c.lease_until > now
        )
        live += [tuple(row) for row in connection.execute(query) if (row[0], row[1]) not in exclude]
    open_runs: set[str] = set()
    for chunk in _chunks([run_id for _, _, run_id, _ in live]):
        query = select(entries.c.run_id).where(
            entries.c.run_id.in_(chunk), entries.c.status == "running"
        )
        open_runs.update(connection.execute(query).scalars())
    found: dict[str, list[Holder]] = {}
    for agent, fire_time, run_id, replica in sorted(live, key=lambda row: (row[0], row[1])):
        if run_id in open_runs:
            found.setdefault(agent, []).append(Holder(fire_time, run_id, replica))
    return found


def _holders(
    connection: Connection, agent: str, fire_time: datetime, now: datetime
) -> list[Holder]:
    found = _holders_of(connection, {agent}, now, exclude={(agent, fire_time)})
    return found.get(agent, [])


def _close_all(
    connection: Connection, closing: Sequence[tuple[dict[str, Any], str]], now: datetime
) -> None:
    """Close entries this transaction opened as missed (chained like any other close)."""
    steps = [
        lifecycle.close_step(
            entry["run_id"],
            {"status": "missed", "error": reason[:2000], "finished_at": now},
            opened=entry,
            produced=[],
        )
        for entry, reason in closing
    ]
    if steps:
        lifecycle.run_steps(connection, steps)


def _mark_done(connection: Connection, agent: str, fire_times: Sequence[datetime]) -> None:
    for fire_time in fire_times:
        connection.execute(
            update(claims)
            .where(claims.c.agent == agent, claims.c.fire_time == fire_time)
            .values(done=True)
        )
