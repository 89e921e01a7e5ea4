"""Reservations: what a model call in flight may cost, held against its agent's daily budget
until the call's real cost is recorded, so every replica of the fleet sees it.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from meshagent.ledger.types import ExactDecimal, UTCDateTime

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "ledger_reservations",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("agent", sa.String(200), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("run_id", sa.String(36), nullable=False),
        sa.Column("amount_usd", ExactDecimal(10, precision=24), nullable=False),
        sa.Column("reserved_at", UTCDateTime(), nullable=False),
        sa.Column("expires_at", UTCDateTime(), nullable=False),
    )
    op.create_index("ix_ledger_reservations_agent_day", "ledger_reservations", ["agent", "day"])
    op.create_index("ix_ledger_reservations_run_id", "ledger_reservations", ["run_id"])


def downgrade() -> None:
    op.drop_table("ledger_reservations")
