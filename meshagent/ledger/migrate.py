"""Bringing a ledger database to the newest schema with the Alembic migrations in the package."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, text

from meshagent.ledger.engine import write_connection

__all__ = ["VERSION_TABLE", "current_revision", "head_revision", "migrate_engine"]

VERSION_TABLE = "ledger_alembic_version"
_SCRIPTS = Path(__file__).parent / "migrations"


def _config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(_SCRIPTS))
    return config


def head_revision() -> str | None:
    """The newest schema revision shipped with this version of MeshAgent."""
    return ScriptDirectory.from_config(_config()).get_current_head()


def current_revision(connection: Connection) -> str | None:
    """The revision the database is at, None for an empty database."""
    context = MigrationContext.configure(connection, opts={"version_table": VERSION_TABLE})
    return context.get_current_revision()


def migrate_engine(engine: Engine) -> tuple[str | None, str | None]:
    """Upgrade the database to the newest revision; returns (revision before, revision after).

    Runs in one write transaction holding the database's write lock (SQLite) or an advisory lock
    (PostgreSQL), so processes opening the same new ledger at once migrate it exactly once.
    """
    head = head_revision()
    with engine.connect() as probe:
        before = current_revision(probe)
        probe.rollback()
    if before == head:
        return before, head
    with write_connection(engine) as connection, connection.begin():
        if connection.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(hashtext(current_schema()))"))
        before = current_revision(connection)
        if before != head:
            config = _config()
            config.attributes["connection"] = connection
            command.upgrade(config, "head")
    return before, head
