"""Where a ledger's nonces are kept (see `meshagent.ledger.nonces`): beside a SQLite ledger, a
file of their own (`store_path`), made with the claims already in the ledger copied in; in any
other ledger, its own database, on an engine whose commits do not wait for the disk.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Engine, create_engine, event, inspect, select
from sqlalchemy.dialects import sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from meshagent.exceptions import LedgerError
from meshagent.ledger.engine import first_line, make_engine, write_connection
from meshagent.ledger.schema import nonces

if TYPE_CHECKING:
    from meshagent.ledger.store import Ledger

__all__ = ["CHECKPOINT_EVERY", "STORE_SUFFIX", "quick_engine", "store_engine", "store_path"]

#: What a ledger file's name gets for the file of its claims, beside it.
STORE_SUFFIX = ".nonces"
#: On-loop commits between two checkpoints of a claims file (its log is copied back by the
#: thread: the loop's own connection never waits for the disk).
CHECKPOINT_EVERY = 1000


def store_path(ledger_url: str) -> Path | None:
    """Where the claims of a ledger in a SQLite file are kept: ``ledger.db.nonces`` beside its
    ``ledger.db`` (the same for every process on that ledger); None for other ledgers (a
    database in memory, PostgreSQL), which keep them in their own database."""
    url = make_url(ledger_url)
    path = url.database
    if url.get_backend_name() != "sqlite" or url.query or not path:
        return None
    if path == ":memory:" or path.startswith("file:"):
        return None
    return Path(path).with_name(Path(path).name + STORE_SUFFIX)  # where SQLite opens it from


def quick_engine(ledger: Ledger) -> Engine:
    """An engine on the ledger's database whose commits do not wait for the disk (the ledger's
    own for a database in memory, which another engine would not see)."""
    url = make_url(ledger.url)
    if url.get_backend_name() == "sqlite" and (
        url.database in (None, "", ":memory:") or "mode=memory" in ledger.url
    ):
        return ledger.engine
    engine = make_engine(ledger.url)
    if engine.dialect.name == "postgresql":
        # Each claim a statement that is its own transaction: one round trip, with no BEGIN,
        # COMMIT or pre-ping (a connection found broken fails the attempt, retried on another).
        engine = create_engine(
            engine.url, connect_args={"connect_timeout": 5}, isolation_level="AUTOCOMMIT"
        )
    return _relaxed(engine)


def _relaxed(engine: Engine) -> Engine:
    @event.listens_for(engine, "connect")
    def _relax(dbapi_connection: Any, _record: Any) -> None:  # after the ledger's own settings
        if engine.dialect.name == "sqlite":
            dbapi_connection.execute("PRAGMA synchronous=NORMAL")
        elif engine.dialect.name == "postgresql":
            with dbapi_connection.cursor() as cursor:
                cursor.execute("SET synchronous_commit TO off")
            if not dbapi_connection.autocommit:
                dbapi_connection.commit()

    return engine


def store_engine(path: Path, ledger: Ledger, deadline: float) -> Engine:
    """An engine on the claims file ``path`` (commits that do not wait for the disk), made with
    its table when missing, and the claims in the ledger's own table copied in: those of the
    requests accepted before the ledger's claims moved here, still refused after."""
    # A short wait for the lock per attempt: `retrying` tries again until the claim's deadline.
    engine = _relaxed(make_engine(f"sqlite:///{path}", busy_timeout=min(deadline, 0.5)))
    try:
        with write_connection(engine) as connection, connection.begin():
            if not inspect(connection).has_table(nonces.name):
                nonces.create(connection)
                rows = ledger.read(_claims_in, what="read the nonces")
                if rows:
                    insert = sqlite.insert(nonces).prefix_with("OR IGNORE")
                    connection.execute(insert, rows)
    except (SQLAlchemyError, OSError) as exc:
        engine.dispose()
        reason = first_line(exc) if isinstance(exc, DBAPIError) else str(exc)
        raise LedgerError(f"cannot open {path}, the ledger's file of nonces: {reason}") from None
    return engine


def _claims_in(connection: Connection) -> list[dict[str, Any]]:
    """Every claim in ``connection``'s database (none when it has no table of them)."""
    if not inspect(connection).has_table(nonces.name):
        return []
    return [dict(row._mapping) for row in connection.execute(select(nonces))]
