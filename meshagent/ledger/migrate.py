"""Bringing a ledger database to the newest schema with the Alembic migrations in the package."""

from __future__ import annotations

import functools
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import DBAPIError

from meshagent.ledger.engine import write_connection

__all__ = ["VERSION_TABLE", "current_revision", "head_revision", "migrate_engine"]

VERSION_TABLE = "ledger_alembic_version"
_SCRIPTS = Path(__file__).parent / "migrations"
#: Times this process took the migration lock to compare or upgrade a schema (one for each
#: database opened that was not at the newest revision); tests and benchmarks read it.
upgrades_checked = 0


def _config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(_SCRIPTS))
    return config


@functools.cache
def head_revision() -> str | None:
    """The newest schema revision shipped with this version of MeshAgent (read once per process:
    reading the scripts costs more than the rest of opening a ledger)."""
    return ScriptDirectory.from_config(_config()).get_current_head()


def current_revision(connection: Connection) -> str | None:
    """The revision the database is at, None for an empty database."""
    context = MigrationContext.configure(connection, opts={"version_table": VERSION_TABLE})
    return context.get_current_revision()


def _revisions(connection: Connection) -> list[str] | None:
    """The revisions the version table holds, or None when it cannot be read (a new database)."""
    try:
        rows = connection.execute(text(f"SELECT version_num FROM {VERSION_TABLE}"))
        return list(rows.scalars())
    except DBAPIError:
        connection.rollback()
        return None


def migrate_engine(engine: Engine) -> tuple[str | None, str | None]:
    """Upgrade the database to the newest revision; returns (revision before, revision after).

    Runs in one write transaction holding the database's write lock (SQLite) or an advisory lock
    (PostgreSQL), so processes opening the same new ledger at once migrate it exactly once.
    """
    head = head_revision()
    with engine.connect() as probe:
        found = _revisions(probe)
        probe.rollback()
    if found == [head]:  # the usual case: one plain query, no Alembic
        return head, head
    global upgrades_checked
    upgrades_checked += 1
    with write_connection(engine) as connection, connection.begin():
        if connection.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(hashtext(current_schema()))"))
        before = current_revision(connection)
        if before != head:
            config = _config()
            config.attributes["connection"] = connection
            command.upgrade(config, "head")
    return before, head
