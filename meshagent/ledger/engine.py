"""Connecting to the ledger database: URLs, SQLite pragmas, write locks, retries with backoff.

SQLite gets WAL, a busy timeout and `BEGIN IMMEDIATE` for writes (so two writer processes queue
instead of failing half-way); PostgreSQL goes through psycopg 3 with pre-ping, so a restarted
server costs a retry, not an error.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError

from meshagent.config import mask_url as mask
from meshagent.exceptions import LedgerError

__all__ = ["make_engine", "retrying", "write_connection"]

T = TypeVar("T")
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
    try:
        if parsed.get_backend_name() == "sqlite":
            return _sqlite_engine(parsed, busy_timeout)
        connect_args = {"connect_timeout": 5} if parsed.get_backend_name() == "postgresql" else {}
        return create_engine(parsed, pool_pre_ping=True, connect_args=connect_args)
    except (NoSuchModuleError, ImportError) as exc:
        raise LedgerError(
            f"ledger URL {mask(url)} needs a database driver that is not installed ({exc}): "
            "for PostgreSQL install meshagent[postgres]"
        ) from None


def _sqlite_engine(url: URL, busy_timeout: float) -> Engine:
    if url.database and url.database != ":memory:" and not url.database.startswith("file:"):
        Path(url.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, connect_args={"timeout": busy_timeout})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Take over BEGIN from the sqlite3 module, so writes can ask for BEGIN IMMEDIATE.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=FULL")  # a commit that returned survives power loss
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
                    f"could not {what} in ledger {mask(str(url))}: {_first_line(exc)}"
                ) from exc
            time.sleep(pause)
            pause = min(pause * 2, 1.0)


def _first_line(exc: DBAPIError) -> str:
    text = str(exc.orig).strip() or type(exc.orig).__name__
    return text.splitlines()[0]
