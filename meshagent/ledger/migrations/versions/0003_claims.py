"""Claims: which replica runs each scheduled fire (agent, fire time), with a renewable lease.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from meshagent.ledger.types import UTCDateTime

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "ledger_claims",
        sa.Column("agent", sa.String(200), primary_key=True),
        sa.Column("fire_time", UTCDateTime(), primary_key=True),
        sa.Column("replica", sa.String(200), nullable=False),
        sa.Column("run_id", sa.String(36), nullable=False),
        sa.Column("claimed_at", UTCDateTime(), nullable=False),
        sa.Column("lease_until", UTCDateTime(), nullable=False),
        sa.Column("done", sa.Boolean, nullable=False),
    )
    op.create_index("ix_ledger_claims_open", "ledger_claims", ["done", "lease_until"])


def downgrade() -> None:
    op.drop_table("ledger_claims")
