"""Connecting to the ledger database: URLs, SQLite pragmas, write locks, retries with backoff.

SQLite gets WAL, a busy timeout and `BEGIN IMMEDIATE` for writes (so two writer processes queue
instead of failing half-way); PostgreSQL goes through psycopg 3 with pre-ping, so a restarted
server costs a retry, not an error.

How a SQLite ledger's commits reach the disk is the URL's ``sync`` parameter:

- ``sync=normal`` (the default): no commit waits for the disk (``synchronous=NORMAL`` under WAL);
  a thread of this process writes the log to the disk at most ``WAL_SYNC_SECONDS`` after a
  commit. A killed or crashed process loses nothing (its commits are in the operating system's
  hands); a crash of the operating system or a power cut may lose the last half second of
  writes, never a part of one, and never an entry from the middle of the chain (the log is
  recovered as a prefix). SQLite's own advice for WAL, and Rails' default for it.
- ``sync=full``: what a run spends and its close wait for the disk, one fdatasync each
  (``synchronous=FULL``), and survive a power cut the moment they return; an entry's opening
  still does not wait (see ``write_transaction``). An fdatasync took about 1.7 ms on the bench
  VM when quiet and 4 ms when loaded: more than all the rest of a run's overhead.
"""

from __future__ import annotations

import contextlib
import logging
import operator
import os
import re
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, String, create_engine, event
from sqlalchemy.engine import URL, CursorResult, Dialect, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError
from sqlalchemy.sql.dml import Insert
from sqlalchemy.sql.expression import Executable
from sqlalchemy.types import TypeEngine

from meshagent.config import mask_url as mask
from meshagent.config.urls import WAL_SYNC_SECONDS, sync_problem
from meshagent.exceptions import LedgerError

__all__ = [
    "driver_statement",
    "execute",
    "executemany",
    "make_engine",
    "retrying",
    "unbounded",
    "write_connection",
    "write_transaction",
]

T = TypeVar("T")
log = logging.getLogger(__name__)
_TRANSIENT_SQLITE = ("database is locked", "database table is locked", "busy")
# Connection lost, server starting/shutting down, serialization failure, deadlock.
_TRANSIENT_SQLSTATE = ("08", "57P01", "57P02", "57P03", "40001", "40P01")


def make_engine(url: str, *, busy_timeout: float = 5.0) -> Engine:
    """An engine for `url`, set up for the ledger; raises LedgerError for a URL it cannot use."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise LedgerError(
            f"ledger URL {mask(str(url))!r} is not a database URL: use sqlite:///path/to/ledger.db "
            "or postgresql+psycopg://user:password@host:5432/dbname"
        ) from None
    if parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    sync = parsed.query.get("sync")
    if sync is not None:
        problem = sync_problem(parsed.get_backend_name(), sync)
        if problem:
            raise LedgerError(f"ledger URL {mask(str(url))!r}: {problem}")
        parsed = parsed.difference_update_query(["sync"])
    try:
        if parsed.get_backend_name() == "sqlite":
            return _sqlite_engine(parsed, busy_timeout, str(sync or "normal"))
        connect_args = {"connect_timeout": 5} if parsed.get_backend_name() == "postgresql" else {}
        return create_engine(parsed, pool_pre_ping=True, connect_args=connect_args)
    except (NoSuchModuleError, ImportError) as exc:
        raise LedgerError(
            f"ledger URL {mask(url)} needs a database driver that is not installed ({exc}): "
            "for PostgreSQL install meshagent[postgres]"
        ) from None


def _sqlite_engine(url: URL, busy_timeout: float, sync: str) -> Engine:
    path = None
    if url.database and url.database != ":memory:" and not url.database.startswith("file:"):
        path = Path(url.database).expanduser()
        path.parent.mkdir(parents=True, exist_ok=True)
    elif (url.database or "").startswith("file:") and url.query.get("mode") != "memory":
        path = Path(url.database[len("file:") :]) if url.database[len("file:") :] else None
    engine = create_engine(url, connect_args={"timeout": busy_timeout})
    if sync == "normal":  # the write-ahead log of its file, synced by a thread after commits
        _wal_logs[engine] = _WalLog(Path(f"{path.absolute()}-wal")) if path else None
    synchronous = "FULL" if sync == "full" else "NORMAL"

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Take over BEGIN from the sqlite3 module, so writes can ask for BEGIN IMMEDIATE.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA synchronous={synchronous}")  # see the module's note
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        write = conn.get_execution_options().get("ledger_write", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

    return engine


def write_connection(engine: Engine) -> Connection:
    """A connection whose transactions take the write lock at BEGIN on SQLite."""
    return engine.connect().execution_options(ledger_write=True)


@contextlib.contextmanager
def write_transaction(
    engine: Engine, *, durable: bool = True, relax_postgres: bool = True
) -> Iterator[Connection]:
    """A write transaction, committed on leaving; rolled back on an exception.

    ``durable=False``: its commit does not wait for the disk (SQLite ``synchronous=NORMAL`` for
    this transaction, PostgreSQL ``synchronous_commit`` off; with ``relax_postgres=False`` the
    caller sets it in its own first statement). Both databases log commits in order and recover
    a prefix of that log, so such a commit is lost only with the commits after it that did not
    wait either: the next commit that waits for the disk, on any connection, makes it durable.
    A crash of this process loses none of them; a power cut or a crash of the operating system
    (SQLite) or of the database server (PostgreSQL, up to three times ``wal_writer_delay``,
    0.6 s by default) may. On a SQLite ledger with ``sync=normal`` (the default) no commit
    waits for the disk, whatever ``durable`` says; the log reaches it within
    ``WAL_SYNC_SECONDS`` (the module's note).
    """
    with write_connection(engine) as connection:
        name = connection.dialect.name
        log = _wal_logs.get(engine, False)
        if log is not False:  # sync=normal (SQLite): no commit waits, a thread syncs the log
            with connection.begin():
                yield connection
            if log is not None:
                log.written()
            return
        if durable or name not in ("sqlite", "postgresql"):
            with connection.begin():
                yield connection
            return
        if name == "postgresql":
            with connection.begin():
                if relax_postgres:
                    connection.exec_driver_sql("SET LOCAL synchronous_commit TO off")
                yield connection
            return
        raw = connection.connection.driver_connection
        raw.execute("PRAGMA synchronous=NORMAL")  # not inside a transaction: SQLite refuses
        try:
            with connection.begin():
                yield connection
        finally:
            try:
                raw.execute("PRAGMA synchronous=FULL")  # the ledger's other writes
            except Exception:
                connection.invalidate()  # never back in the pool less durable
                raise


class _WalLog:
    """The write-ahead log of a SQLite file with ``sync=normal``, written to the disk by one
    thread of the process at most ``WAL_SYNC_SECONDS`` after a commit (as PostgreSQL's WAL
    writer does for commits that do not wait): committing costs no fdatasync, and what was
    committed is on the disk half a second later."""

    _pending: set[Path] = set()
    _cond = threading.Condition()
    _thread: threading.Thread | None = None
    synced = 0  # fdatasyncs done (tests read it)

    def __init__(self, path: Path) -> None:
        self.path = path

    def written(self) -> None:
        """A transaction committed: sync the log soon."""
        cls = type(self)
        with cls._cond:
            if self.path in cls._pending:
                return
            cls._pending.add(self.path)
            if cls._thread is None:
                cls._thread = threading.Thread(target=cls._run, name="ledger-wal-sync", daemon=True)
                cls._thread.start()
            cls._cond.notify()

    @classmethod
    def _run(cls) -> None:
        while True:
            with cls._cond:
                while not cls._pending:
                    cls._cond.wait()
            time.sleep(WAL_SYNC_SECONDS)  # the commits of the next half second go with these
            with cls._cond:
                paths, cls._pending = cls._pending, set()
            for path in paths:
                cls.sync(path)

    @classmethod
    def sync(cls, path: Path) -> None:
        """Write what the log at ``path`` holds to the disk (a missing log: nothing to do, a
        checkpoint put it in the database file and synced that)."""
        try:
            descriptor = os.open(path, os.O_RDWR)
        except FileNotFoundError:
            return
        except OSError as exc:
            log.warning("cannot open the ledger's log %s to sync it: %s", path, exc)
            return
        try:
            getattr(os, "fdatasync", os.fsync)(descriptor)
            cls.synced += 1
        except OSError as exc:
            log.warning("cannot sync the ledger's log %s: %s", path, exc)
        finally:
            os.close(descriptor)


#: The SQLite engines with sync=normal, each with its log to sync (None: a database in memory).
_wal_logs: weakref.WeakKeyDictionary[Engine, _WalLog | None] = weakref.WeakKeyDictionary()


class _Compiled:
    """A statement compiled for one dialect and one set of keys, with their bind processors."""

    def __init__(self, statement: Executable, dialect: Dialect, keys: tuple[str, ...]) -> None:
        compiled = statement.compile(dialect=dialect, column_keys=list(keys))
        names = list(compiled.positiontup or ()) if compiled.positional else list(compiled.binds)
        self.sql = compiled.string
        self.positional = compiled.positional
        self.names = tuple(names)
        # A bind the statement gives its own value (a literal such as coalesce(..., 0)) is
        # sent with that value; Python-side column defaults, and binds that are neither given
        # nor fixed, need Core's own handling.
        binds = compiled.binds
        self.fixed = {
            name: binds[name].effective_value
            for name in names
            if name not in keys and not binds[name].required and binds[name].callable is None
        }
        given = set(keys) | set(self.fixed)
        self.plain = bool(names) and not compiled.insert_prefetch and set(names) <= given
        processors = [
            compiled.binds[name].type.dialect_impl(dialect).bind_processor(dialect)
            for name in names
        ]
        self.processors = [(at, process) for at, process in enumerate(processors) if process]
        self.unnest = None  # SQLite's executemany is a loop in C already
        if self.plain and dialect.name == "postgresql" and isinstance(statement, Insert):
            types = {
                name: dialect.type_compiler_instance.process(
                    unbounded(compiled.binds[name].type.dialect_impl(dialect))
                )
                for name in names
            }
            self.unnest = _Unnest.of(self.sql, types)

    def values(self, rows: Sequence[Mapping[str, Any]], *, positional: bool = False) -> list[Any]:
        """Each row's values in bind order, converted; tuples or dicts as the driver takes."""
        names, processors, converted = self.names, self.processors, []
        positional = positional or self.positional
        get, fixed = operator.itemgetter(*names), self.fixed
        for row in rows:
            found = get({**row, **fixed} if fixed else row)
            out = list(found) if len(names) > 1 else [found]
            for at, process in processors:
                out[at] = process(out[at])
            converted.append(tuple(out) if positional else dict(zip(names, out, strict=True)))
        return converted


def unbounded(type_: TypeEngine[Any]) -> TypeEngine[Any]:
    """`type_` for the elements of an array parameter: a string's length left out.

    PostgreSQL cuts text silently when it is cast to VARCHAR(n) (``'abc'::varchar(2)`` is
    ``'ab'``), where storing it in a VARCHAR(n) column refuses it: an array cast to the column's
    own type would store a value other than the one given (and hashed, for an entry).
    """
    if isinstance(type_, String) and type_.length is not None:
        return String()
    return type_


class _Unnest:
    """A PostgreSQL INSERT rewritten to take all its rows at once, one array per column.

    executemany sends one INSERT per row; ``INSERT ... SELECT * FROM unnest(%(a)s::T[], ...)``
    is parsed, planned and answered once for the whole batch, and its text does not depend on
    the number of rows (so the driver's statement caches keep it). An upsert's ON CONFLICT
    clause follows as it was.
    """

    def __init__(self, sql: str, names: tuple[str, ...]) -> None:
        self.sql, self.names = sql, names

    @classmethod
    def of(cls, sql: str, types: Mapping[str, str]) -> _Unnest | None:
        """From the INSERT's text and its parameters' SQL types; None when it is not simple."""
        start = sql.find(" VALUES (")
        depth, end = 0, -1
        for at in range(start + len(" VALUES "), len(sql) if start >= 0 else 0):
            depth += {"(": 1, ")": -1}.get(sql[at], 0)
            if depth == 0:
                end = at + 1
                break
        found = _NAMED.findall(sql[start:end]) if end > 0 else []
        if not found or sorted(found) != sorted(types) or len(set(found)) != len(found):
            return None
        # %(name)b: each array goes in PostgreSQL's binary format, with no text quoting of
        # every element.
        arrays = ", ".join(f"%({name})b::{types[name]}[]" for name in found)
        rest = sql[end:].split(" RETURNING ")[0]  # the ids Core asks back are not needed
        return cls(f"{sql[:start]} SELECT * FROM unnest({arrays}){rest}", tuple(found))


_NAMED = re.compile(r"%\((\w+)\)s")

_compiled: dict[tuple[int, str, tuple[str, ...]], tuple[Executable, _Compiled]] = {}
_compiled_lock = threading.Lock()


def _compiled_for(statement: Executable, dialect: Dialect, keys: tuple[str, ...]) -> _Compiled:
    cache_key = (id(statement), dialect.name, keys)
    with _compiled_lock:
        cached = _compiled.get(cache_key)
        if cached is None or cached[0] is not statement:  # the statement is kept alive here
            cached = _compiled[cache_key] = (statement, _Compiled(statement, dialect, keys))
    return cached[1]


def driver_statement(
    statement: Executable, dialect: Dialect, keys: tuple[str, ...]
) -> tuple[str, Callable[[Mapping[str, Any]], Any]]:
    """`statement`'s SQL for `dialect`'s driver, and what turns a mapping of `keys` into the
    driver's parameters (each value converted by its column's type, as Core would)."""
    compiled = _compiled_for(statement, dialect, keys)
    return compiled.sql, lambda params: compiled.values([params])[0]


def executemany(
    connection: Connection, statement: Executable, rows: Sequence[Mapping[str, Any]]
) -> None:
    """Run `statement` for every row in one driver executemany, values converted as Core does.

    Core builds and processes the parameters of every row on each call, which for a batch of a
    thousand rows costs as much as the insert itself. Here the statement is compiled once per
    dialect and set of keys, and each row goes to the driver as plain values, every value passed
    through its column type's bind processor for the dialect: the conversion Core applies.
    Every row must have the keys of the first.
    """
    if not rows:
        return
    compiled = _compiled_for(statement, connection.dialect, tuple(rows[0]))
    unnest = compiled.unnest
    if unnest is not None and len(rows) > 1:
        values = compiled.values(rows, positional=True)
        columns = dict(zip(compiled.names, zip(*values, strict=True), strict=True))
        arrays = {name: list(columns[name]) for name in unnest.names}
        connection.exec_driver_sql(unnest.sql, arrays)
    elif compiled.plain:
        connection.exec_driver_sql(compiled.sql, compiled.values(rows))
    else:
        connection.execute(statement, list(rows))


def execute(
    connection: Connection, statement: Executable, params: Mapping[str, Any]
) -> CursorResult[Any]:
    """Run `statement` once with `params`, compiled once per dialect and set of keys.

    For the ledger's hot single-row statements (open, usage, close of an entry): Core would
    build a cache key and process parameters on every call. Every bind of `statement` must be
    named by a key of `params`; result values come back as the driver gives them.
    """
    compiled = _compiled_for(statement, connection.dialect, tuple(params))
    if not compiled.plain:
        return connection.execute(statement, dict(params))
    [values] = compiled.values([params])
    return connection.exec_driver_sql(compiled.sql, values)


def is_transient(exc: BaseException) -> bool:
    """Whether `exc` is a locked, restarting or unreachable database worth trying again."""
    if not isinstance(exc, DBAPIError):
        return False
    if exc.connection_invalidated:
        return True
    message = str(exc.orig).lower()
    if any(text in message for text in _TRANSIENT_SQLITE):
        return True
    sqlstate = getattr(exc.orig, "sqlstate", None) or ""
    if sqlstate.startswith(_TRANSIENT_SQLSTATE):
        return True
    return type(exc.orig).__name__ in {"OperationalError", "InterfaceError"} and (
        "sqlite" not in type(exc.orig).__module__
    )


def retrying(action: Callable[[], T], *, deadline: float, what: str, url: str) -> T:
    """Run `action`, retrying transient failures with exponential backoff for `deadline` s."""
    give_up = time.monotonic() + deadline
    pause = 0.02
    while True:
        try:
            return action()
        except DBAPIError as exc:
            if not is_transient(exc) or time.monotonic() + pause > give_up:
                raise LedgerError(
                    f"could not {what} in ledger {mask(str(url))}: {first_line(exc)}"
                ) from exc
            time.sleep(pause)
            pause = min(pause * 2, 1.0)


def first_line(exc: DBAPIError) -> str:
    text = str(exc.orig).strip() or type(exc.orig).__name__
    return text.splitlines()[0]
