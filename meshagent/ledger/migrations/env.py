"""Alembic environment: runs the ledger migrations on the connection `migrate()` hands in."""

from __future__ import annotations

from alembic import context

from meshagent.ledger.schema import metadata

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=metadata,
    version_table="ledger_alembic_version",
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
