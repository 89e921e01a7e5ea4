"""Bringing a ledger database to the newest schema with the Alembic migrations in the package.

Alembic is imported only to upgrade a database that is not at the newest revision: a run on a
current ledger reads the newest revision from the scripts' own ``revision = ...`` lines and the
database's from its version table, which spares each ``meshagent run`` Alembic's import.
"""

from __future__ import annotations

import ast
import contextlib
import functools
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import DBAPIError

from meshagent.ledger.engine import write_connection

if TYPE_CHECKING:
    from alembic.config import Config

__all__ = ["VERSION_TABLE", "current_revision", "head_revision", "migrate_engine"]

VERSION_TABLE = "ledger_alembic_version"
_SCRIPTS = Path(__file__).parent / "migrations"
#: Times this process took the migration lock to compare or upgrade a schema (one for each
#: database opened that was not at the newest revision); tests and benchmarks read it.
upgrades_checked = 0


def _config() -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(_SCRIPTS))
    return config


@functools.cache
def head_revision() -> str | None:
    """The newest schema revision shipped with this version of MeshAgent (read once per process:
    reading the scripts costs more than the rest of opening a ledger)."""
    found = _declared_revisions()
    if found is not None:
        down = {before for _, befores in found for before in befores}
        heads = {revision for revision, _ in found} - down
        if len(heads) == 1:
            return heads.pop()
    from alembic.script import ScriptDirectory  # branches, merges: Alembic's own reading

    return ScriptDirectory.from_config(_config()).get_current_head()


def _declared_revisions() -> list[tuple[str, set[str]]] | None:
    """Each script's ``revision`` and the revisions it follows (``down_revision``), read from
    its source; None when one does not declare them as plain constants."""
    found = []
    for script in sorted((_SCRIPTS / "versions").glob("*.py")):
        if script.name.startswith("_"):
            continue
        declared: dict[str, object] = {}
        for node in ast.parse(script.read_text(encoding="utf-8")).body:
            names = [t.id for t in getattr(node, "targets", ()) if isinstance(t, ast.Name)]
            for name in set(names) & {"revision", "down_revision"}:
                with contextlib.suppress(ValueError):  # not a constant: see below
                    declared[name] = ast.literal_eval(node.value)  # type: ignore[attr-defined]
        revision, down = declared.get("revision"), declared.get("down_revision", ())
        befores = {down} if isinstance(down, str) else set(down or ())
        if not isinstance(revision, str) or not all(isinstance(b, str) for b in befores):
            return None
        found.append((revision, befores))
    return found


def current_revision(connection: Connection) -> str | None:
    """The revision the database is at, None for an empty database."""
    from alembic.runtime.migration import MigrationContext

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
            from alembic import command

            config = _config()
            config.attributes["connection"] = connection
            command.upgrade(config, "head")
    return before, head
