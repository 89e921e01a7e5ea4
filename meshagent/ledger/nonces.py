"""Nonces: what already arrived (a Slack request's signature, an event id), claimed once in the
ledger database by whichever replica sees it first, and kept until its own expiry.

A claim is one ``INSERT ... ON CONFLICT`` on the key, atomic on SQLite and PostgreSQL alike: the
row is inserted (claimed: the first arrival), or a live row is there (seen: a replay), or an
expired row is there (claimed again, the row renewed). `NonceClaims` gathers the claims of many
concurrent requests into one statement and one commit on a thread of its own, so a request
waits for one round trip, which it shares. `purge` deletes expired rows; run it now and then,
not per request.

`NonceClaims` commits without waiting for the disk (SQLite ``synchronous=NORMAL``, PostgreSQL
``synchronous_commit=off``, on connections of its own): a request's acknowledgement waits about
half a millisecond instead of an fsync (4 ms on SQLite here). A crash of the process or the
application loses nothing; a power cut or a crash of the database server may lose the claims
of its last moments (without corrupting anything), which would let a request that somebody
captured in those moments be replayed within the rest of its five minutes.

On a SQLite file, `NonceClaims.claim` first tries the claims gathered over ``CLAIM_WINDOW_SECONDS``
on the event loop itself, in one transaction that does not wait for the write lock (tens of
microseconds, on a sqlite3 connection of its own): handed to a thread, a claim waited for that
thread to get the interpreter back from a busy event loop, several times per transaction, and
behind the write lock the runs' group commits hold, 100-750 ms in a burst of 200 commands. When
another writer holds the lock, the claims go to the thread, which waits for it as before. Either
way a claim returns once committed, in the one table every process on the database shares.
On PostgreSQL the loop awaits the claim on an asyncio connection of its own, one statement per
window, and hands it to the thread only when that connection fails or is slow (half a second).

On a SQLite file, `NonceClaims` keeps its claims in a database of their own beside the ledger's
(`store_path`: ``ledger.db.nonces`` beside ``ledger.db``), which every process on that ledger
finds by the same rule: SQLite has one write lock per database, and in the ledger's a claim found
it held by the runs' commits (each 5-10 ms with its fsync) for most of a burst, and waited behind
them on the thread. In a file of its own it meets only other claims (tens of microseconds) and
the purge. The claims already in the ledger's table are copied into the new file when it is
made, so that an upgrade forgets no request accepted before it.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import sqlite3
import threading
import weakref
from collections.abc import Mapping
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Engine, bindparam, delete
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from meshagent.exceptions import LedgerError
from meshagent.ledger.engine import (
    driver_statement,
    retrying,
    write_connection,
)
from meshagent.ledger.noncestore import CHECKPOINT_EVERY, quick_engine, store_engine, store_path
from meshagent.ledger.schema import nonces

if TYPE_CHECKING:
    from meshagent.ledger.store import Ledger

log = logging.getLogger(__name__)

__all__ = ["NonceClaims", "claim", "claim_keys", "nonce_key", "purge", "store_path"]

#: How long a claim may wait for a database that is locked or restarting, by default: a request
#: that waits on it has to be answered within Slack's 3 seconds.
CLAIM_DEADLINE_SECONDS = 2.0

#: How long the first claim of a burst waits for others to share its transaction. A burst of
#: slash commands reaches the event loop in batches, or one connection per turn once the loop is
#: busy with the tail of the previous burst: claimed turn by turn, each in a transaction of its
#: own, 200 commands took 190 transactions and the loop twice the time per acknowledgement
#: (bench_slack: rounds of 100-140 ms against 50-60). Two milliseconds are nothing against
#: Slack's three seconds.
CLAIM_WINDOW_SECONDS = 0.002


def nonce_key(kind: str, value: str) -> str:
    """The key of ``value``: its kind, then the SHA-256 of the value (fixed length, and the
    value itself, a signature, never stored)."""
    return f"{kind}:{hashlib.sha256(value.encode('utf-8', 'surrogatepass')).hexdigest()}"


def claim_keys(connection: Connection, keys: Mapping[str, datetime], *, now: datetime) -> set[str]:
    """Claim ``keys`` (each with its expiry) in one statement; returns the keys claimed.

    A key not returned was claimed before and has not expired by ``now``. Keys go in sorted
    order, so that two transactions claiming overlapping keys never wait on each other in a
    circle.
    """
    if not keys:
        return set()
    dialect = postgresql if connection.dialect.name == "postgresql" else sqlite
    insert = dialect.insert(nonces).values(
        [{"key": key, "expires_at": keys[key]} for key in sorted(keys)]
    )
    statement = insert.on_conflict_do_update(
        index_elements=[nonces.c.key],
        set_={"expires_at": insert.excluded.expires_at},
        where=nonces.c.expires_at <= now,
    ).returning(nonces.c.key)
    return set(connection.execute(statement).scalars())


def claim(
    ledger: Ledger,
    keys: Mapping[str, datetime],
    *,
    now: datetime,
    deadline: float = CLAIM_DEADLINE_SECONDS,
) -> set[str]:
    """Claim ``keys`` in a transaction of their own; returns the keys claimed."""
    return _claim(ledger.engine, ledger.url, keys, now=now, deadline=deadline)


def _claim(
    engine: Engine, url: str, keys: Mapping[str, datetime], *, now: datetime, deadline: float
) -> set[str]:
    def attempt() -> set[str]:
        with write_connection(engine) as connection, connection.begin():
            return claim_keys(connection, keys, now=now)

    return retrying(attempt, deadline=deadline, what="claim nonces", url=url)


#: Keys per statement of a claim on the loop (two variables each: within SQLite's oldest limit
#: of 999 variables in a statement).
_ROWS_PER_STATEMENT = 400
_ONE = sqlite.insert(nonces).values(key=bindparam("key"), expires_at=bindparam("expires_at"))
_CLAIM_ONE = _ONE.on_conflict_do_update(
    index_elements=[nonces.c.key],
    set_={"expires_at": _ONE.excluded.expires_at},
    where=nonces.c.expires_at <= bindparam("now", type_=nonces.c.expires_at.type),
).returning(nonces.c.key)


class _OnTheLoop:
    """Claims on a SQLite file made at once, on a sqlite3 connection of its own, or not at all.

    ``try_claim`` never waits: it returns None when another writer holds the database (or the
    connection is in use by another thread), and the caller hands the claims to a thread that
    waits. Values are converted by the columns' own types, as SQLAlchemy stores them.

    The claims of a window take a handful of statements whatever their number, each run in one
    step (the sqlite3 module lets go of the interpreter around every step, and getting it back
    from a thread that holds it takes up to 5 ms): within the write lock, the keys still live
    are read in one row, then every key is inserted, or renewed where expired, in one
    statement; the others were claimed. `claim_keys`'s answer, without a row per key.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        _, self.convert = driver_statement(
            _CLAIM_ONE, sqlite.dialect(), ("key", "expires_at", "now")
        )
        self._connection: sqlite3.Connection | None = None
        self._lock = threading.Lock()

    def try_claim(self, keys: Mapping[str, datetime], *, now: datetime) -> set[str] | None:
        if not self._lock.acquire(blocking=False):
            return None
        try:
            connection = self._connect()
            try:
                connection.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as exc:
                if "locked" in str(exc) or "busy" in str(exc):
                    return None
                raise
            try:
                claimed = self._claim(connection, keys, now)
                connection.execute("COMMIT")
            except BaseException:
                with contextlib.suppress(sqlite3.Error):
                    connection.execute("ROLLBACK")
                raise
            return claimed
        finally:
            self._lock.release()

    def _claim(
        self, connection: sqlite3.Connection, keys: Mapping[str, datetime], now: datetime
    ) -> set[str]:
        ordered = sorted(keys)  # in order, as claim_keys
        # (key, expires_at, now) as the driver takes them, converted by the columns' types
        rows = [self.convert({"key": key, "expires_at": keys[key], "now": now}) for key in ordered]
        when = rows[0][2]
        taken: list[str] = []
        for start in range(0, len(rows), _ROWS_PER_STATEMENT):
            chunk = rows[start : start + _ROWS_PER_STATEMENT]
            marks = ", ".join("?" * len(chunk))
            (found,) = connection.execute(
                "SELECT json_group_array(key) FROM ledger_nonces "
                f"WHERE key IN ({marks}) AND expires_at > ?",
                [*(key for key, _, _ in chunk), when],
            ).fetchone()
            taken += json.loads(found)
            values = ", ".join("(?, ?)" for _ in chunk)
            connection.execute(
                f"INSERT INTO ledger_nonces (key, expires_at) VALUES {values} "
                "ON CONFLICT (key) DO UPDATE SET expires_at = excluded.expires_at "
                "WHERE ledger_nonces.expires_at <= ?",
                [*(value for key, expires, _ in chunk for value in (key, expires)), when],
            )
        return set(ordered).difference(taken)

    def _connect(self) -> sqlite3.Connection:
        if self._connection is None:
            connection = sqlite3.connect(
                self.path, timeout=0, isolation_level=None, check_same_thread=False
            )
            connection.execute("PRAGMA synchronous=NORMAL")  # as the thread's claims
            # A checkpoint copies the log into the database and waits for the disk: never on
            # the event loop (the writer thread checkpoints every CHECKPOINT_EVERY commits).
            connection.execute("PRAGMA wal_autocheckpoint=0")
            self._connection = connection
        return self._connection

    def close(self) -> None:
        with self._lock:
            if self._connection is not None:
                self._connection.close()
                self._connection = None


# `claim_keys` for PostgreSQL with the keys as one array: one text, whatever their number.
_PG_CLAIM = (
    "INSERT INTO ledger_nonces (key, expires_at) "
    "SELECT * FROM unnest(%(keys)s::varchar[], %(expires)s::timestamptz[]) "
    "ON CONFLICT (key) DO UPDATE SET expires_at = excluded.expires_at "
    "WHERE ledger_nonces.expires_at <= %(now)s RETURNING ledger_nonces.key"
)


class _OnTheLoopAsync:
    """Claims on PostgreSQL made by the event loop itself, on an asyncio psycopg connection of
    its own (autocommit, ``synchronous_commit`` off): a round trip the loop awaits, where the
    writer thread waited for the interpreter after each one while the loop was busy.

    ``try_claim`` gives up when connecting takes over ``patience`` seconds, when the server
    cancels a statement that ran longer (``statement_timeout``: nothing committed), or on any
    error of the connection (then dropped), and returns None: the caller hands the claims to
    the thread, which retries until its deadline. A claim whose answer a broken connection
    lost and that is retried finds its keys taken (by itself): the request is refused, never
    let through twice.
    """

    def __init__(self, conninfo: str, patience: float) -> None:
        self.conninfo = conninfo
        self.patience = patience
        self._connection: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._turns = asyncio.Lock()

    async def try_claim(self, keys: Mapping[str, datetime], *, now: datetime) -> set[str] | None:
        import psycopg

        ordered = sorted(keys)  # in order, as claim_keys: no waiting in a circle
        params = {"keys": ordered, "expires": [keys[key] for key in ordered], "now": now}
        loop = asyncio.get_running_loop()
        if self._loop is not loop:  # another loop's connection (an app started again)
            self.close()
            self._loop, self._turns = loop, asyncio.Lock()
        try:
            async with self._turns:  # one statement at a time on the connection
                async with asyncio.timeout(self.patience):
                    connection = await self._connect()
                # Not timed here: a busy loop may read the answer late, and a claim it gave up
                # on could have committed, refusing its own request when retried. The server
                # gives up on a slow statement instead (statement_timeout): nothing committed.
                cursor = await connection.execute(_PG_CLAIM, params, prepare=True)
                return {row[0] for row in await cursor.fetchall()}
        except (psycopg.Error, OSError, TimeoutError):
            self.close()  # in an unknown state: the next claim connects again
            return None

    async def _connect(self) -> Any:
        import psycopg

        if self._connection is not None and self._connection.closed:
            self.close()
        if self._connection is None:
            connection = await psycopg.AsyncConnection.connect(
                self.conninfo, autocommit=True, connect_timeout=5
            )
            await connection.execute("SET synchronous_commit TO off")
            await connection.execute(f"SET statement_timeout TO {int(self.patience * 1000)}")
            self._connection = connection
        return self._connection

    def close(self) -> None:
        """Close the connection, from any thread (libpq's own close: no loop needed)."""
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.pgconn.finish()


def _on_the_loop(
    ledger: Ledger, store: Path | None, patience: float
) -> _OnTheLoop | _OnTheLoopAsync | None:
    """Claims made on the event loop: in a ledger's claims file, or on PostgreSQL; None for
    other ledgers (a SQLite database in memory)."""
    if store is not None:
        return _OnTheLoop(str(store))
    url = make_url(ledger.url)
    if url.get_backend_name() == "postgresql":
        conninfo = url.set(drivername="postgresql").render_as_string(hide_password=False)
        return _OnTheLoopAsync(conninfo, min(patience, _LOOP_PATIENCE_SECONDS))
    return None


#: How long a claim on the event loop waits for PostgreSQL before the thread takes it over.
_LOOP_PATIENCE_SECONDS = 0.5


def purge(ledger: Ledger, *, now: datetime) -> int:
    """Delete the nonces expired by ``now``; returns how many."""
    statement = delete(nonces).where(nonces.c.expires_at <= now)
    return ledger.transact(lambda c: c.execute(statement).rowcount, what="purge nonces")


@dataclass
class _Pending:
    keys: dict[str, datetime]
    now: datetime
    future: Future[set[str]] = field(default_factory=Future)


class NonceClaims:
    """One writer thread that claims the keys of many callers in shared statements.

    The writer takes every claim waiting (up to ``max_keys`` keys), claims their keys in one
    statement and one transaction, and then resolves each caller's future with its own keys
    that were claimed. A key asked for twice in one batch is claimed by the first caller
    only. A batch that cannot be written within ``deadline`` seconds fails every caller in it.
    On a SQLite file, ``claim`` tries the event loop first (see the module's note).
    """

    def __init__(
        self,
        ledger: Ledger,
        *,
        max_keys: int = 1000,
        deadline: float = CLAIM_DEADLINE_SECONDS,
    ) -> None:
        self.ledger = ledger
        self.max_keys = max_keys
        self.deadline = deadline
        self.batches = 0  # transactions committed (for tests and benchmarks)
        #: The file of the claims, beside a ledger in a SQLite file; None: the ledger's database.
        self.store = store_path(ledger.url)
        self.url = ledger.url if self.store is None else f"sqlite:///{self.store}"
        self._engine = (
            quick_engine(ledger)
            if self.store is None
            else store_engine(self.store, ledger, deadline)
        )
        if self._engine is not ledger.engine:
            # An app dropped without close() (a test's, a failed start's) must not leave its
            # pooled connections to the garbage collector, which closes none of them.
            weakref.finalize(self, self._engine.dispose)
        self._pending: list[_Pending] = []
        self._cond = threading.Condition()
        self._checkpoint_due = False  # the claims file's log to be copied back (by the thread)
        self._loop_commits = 0  # on-loop commits since the last checkpoint
        self._loop_claims = _on_the_loop(ledger, self.store, deadline)
        if self._loop_claims is not None:
            weakref.finalize(self, self._loop_claims.close)
        self._tasks: set[asyncio.Task[Any]] = set()  # claims in flight on the loop (PostgreSQL)
        self._this_window: list[_Pending] = []  # claims asked for in this window
        self._closed = False
        self._thread: threading.Thread | None = None

    def submit(self, keys: Mapping[str, datetime], *, now: datetime) -> Future[set[str]]:
        """Queue a claim of ``keys``; its future gives the keys claimed, once committed."""
        pending = _Pending(dict(keys), now)
        self._queue([pending])
        return pending.future

    def purge(self, *, now: datetime) -> int:
        """Delete the claims expired by ``now``; returns how many. Blocking: call it from a
        thread now and then, never per request."""
        statement = delete(nonces).where(nonces.c.expires_at <= now)

        def attempt() -> int:
            with write_connection(self._engine) as connection, connection.begin():
                return connection.execute(statement).rowcount

        return retrying(attempt, deadline=self.deadline, what="purge nonces", url=self.url)

    def _queue(self, batch: list[_Pending], *, checkpoint: bool = False) -> None:
        with self._cond:
            if self._closed:
                raise LedgerError("the nonce writer is closing")
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="ledger-nonce-claims", daemon=True
                )
                self._thread.start()
            self._pending.extend(batch)
            self._checkpoint_due |= checkpoint
            self._cond.notify()

    async def claim(self, keys: Mapping[str, datetime], *, now: datetime) -> set[str]:
        """Claim ``keys`` with the other claims made on the event loop in the next
        ``CLAIM_WINDOW_SECONDS``; returns the keys claimed, once committed."""
        if self._loop_claims is None:
            return await asyncio.wrap_future(self.submit(keys, now=now))
        pending = _Pending(dict(keys), now)
        self._this_window.append(pending)
        if len(self._this_window) == 1:  # the first of a window: claim them all at its end
            asyncio.get_running_loop().call_later(CLAIM_WINDOW_SECONDS, self._claim_window)
        return await asyncio.wrap_future(pending.future)

    def _claim_window(self) -> None:
        batch, self._this_window = self._this_window, []
        batch = [p for p in batch if p.future.set_running_or_notify_cancel()]
        if not batch:
            return
        keys, now = _merged(batch)
        loop_claims = self._loop_claims
        if isinstance(loop_claims, _OnTheLoop):
            try:
                claimed = loop_claims.try_claim(keys, now=now)
            except BaseException as exc:  # noqa: BLE001 - handed to every caller in the batch
                for pending in batch:
                    pending.future.set_exception(exc)
                return
            self._settle(batch, claimed)
            if claimed is not None:
                self._loop_commits += 1
                if self._loop_commits >= CHECKPOINT_EVERY:
                    self._loop_commits = 0
                    with contextlib.suppress(LedgerError):  # closing: the next one will
                        self._queue([], checkpoint=True)
        elif isinstance(loop_claims, _OnTheLoopAsync):
            task = asyncio.get_running_loop().create_task(loop_claims.try_claim(keys, now=now))
            self._tasks.add(task)
            task.add_done_callback(lambda done: self._settled_async(batch, done))

    def _settled_async(self, batch: list[_Pending], task: asyncio.Task[set[str] | None]) -> None:
        self._tasks.discard(task)
        error = None if task.cancelled() else task.exception()
        if error is not None:
            for pending in batch:
                pending.future.set_exception(error)
            return
        self._settle(batch, None if task.cancelled() else task.result())

    def _settle(self, batch: list[_Pending], claimed: set[str] | None) -> None:
        """Resolve a batch claimed on the loop; None: hand it to the thread, which waits."""
        if claimed is None:
            try:
                self._queue(batch)
            except LedgerError as exc:
                for pending in batch:
                    pending.future.set_exception(exc)
            return
        self._resolve(batch, claimed)

    def close(self) -> None:
        """Write the claims queued, then stop the writer thread (a later claim starts another)."""
        with self._cond:
            self._closed = True
            self._cond.notify()
            thread = self._thread
        if thread is not None:
            thread.join()
        if self._engine is not self.ledger.engine:
            self._engine.dispose()
        if self._loop_claims is not None:
            self._loop_claims.close()
        with self._cond:
            self._closed, self._thread = False, None

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._pending and not self._closed and not self._checkpoint_due:
                    self._cond.wait()
                checkpoint, self._checkpoint_due = self._checkpoint_due, False
                if not self._pending and not checkpoint:
                    return
                taken, count = 0, 0
                while taken < len(self._pending) and (count < self.max_keys or not taken):
                    count += len(self._pending[taken].keys)
                    taken += 1
                batch = self._pending[:taken]
                del self._pending[:taken]
            # A caller that gave up (a cancelled request) before its turn is left out; one
            # handed over from the event loop is running already.
            self._write(
                [p for p in batch if p.future.running() or p.future.set_running_or_notify_cancel()]
            )
            if checkpoint:
                self._checkpoint()

    def _checkpoint(self) -> None:
        """Copy the claims file's log back into it and start the log again, so that it does
        not grow without end. RESTART: claims made meanwhile wait for it (a few milliseconds,
        on this thread); a passive one would never catch up with claims made every moment."""
        try:
            raw = self._engine.raw_connection()
            try:
                raw.driver_connection.execute("PRAGMA wal_checkpoint(RESTART)")
            finally:
                raw.close()
        except (SQLAlchemyError, sqlite3.Error) as exc:
            log.info("could not checkpoint %s: %s", self.store, exc)

    def _write(self, batch: list[_Pending]) -> None:
        if not batch:
            return
        keys, now = _merged(batch)
        try:
            claimed = _claim(self._engine, self.url, keys, now=now, deadline=self.deadline)
        except BaseException as exc:  # noqa: BLE001 - handed to every caller in the batch
            for pending in batch:
                pending.future.set_exception(exc)
            return
        self._resolve(batch, claimed)

    def _resolve(self, batch: list[_Pending], claimed: set[str]) -> None:
        """Each caller's own keys that were claimed, in the order they asked."""
        self.batches += 1
        for pending in batch:
            mine = claimed & pending.keys.keys()
            claimed -= mine  # a later caller with the same key finds it taken
            pending.future.set_result(mine)


def _merged(batch: list[_Pending]) -> tuple[dict[str, datetime], datetime]:
    """The keys of a batch, each with its latest expiry, and the batch's latest now."""
    keys: dict[str, datetime] = {}
    for pending in batch:
        for key, expires in pending.keys.items():
            keys[key] = max(expires, keys.get(key, expires))
    return keys, max(p.now for p in batch)
