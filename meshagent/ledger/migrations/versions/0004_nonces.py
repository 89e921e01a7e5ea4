"""Nonces: what already arrived (a Slack request's signature, an event id), shared by every
replica of the fleet, each kept until its own expiry.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from meshagent.ledger.types import UTCDateTime

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "ledger_nonces",
        sa.Column("key", sa.String(200), primary_key=True),
        sa.Column("expires_at", UTCDateTime(), nullable=False),
    )
    op.create_index("ix_ledger_nonces_expires_at", "ledger_nonces", ["expires_at"])


def downgrade() -> None:
    op.drop_table("ledger_nonces")
