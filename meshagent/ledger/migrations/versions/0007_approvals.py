"""Approvals: writes staged for a person's decision, with their exact payload and its hash,
who may decide, where they were asked, and what became of them (executed once, rejected with a
reason, or expired).

Nothing in the chained entry columns changes, so `ledger verify` passes as before.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from meshagent.ledger.types import UTCDateTime

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "ledger_approvals",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("run_id", sa.String(36), sa.ForeignKey("ledger_entries.run_id"), nullable=False),
        sa.Column("agent", sa.String(200), nullable=False),
        sa.Column("action", sa.String(200), nullable=False),
        sa.Column("source", sa.String(8), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("payload_hash", sa.String(64), nullable=False),
        sa.Column("approvers", sa.Text(), nullable=False),
        sa.Column("asked", sa.Text()),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("expires_at", UTCDateTime(), nullable=False),
        sa.Column("decided_by", sa.String(200)),
        sa.Column("decided_at", UTCDateTime()),
        sa.Column("reason", sa.String(2000)),
        sa.Column("executed_at", UTCDateTime()),
        sa.Column("result", sa.Text()),
    )
    op.create_index(
        "ix_ledger_approvals_status_expires_at", "ledger_approvals", ["status", "expires_at"]
    )
    op.create_index("ix_ledger_approvals_run_id", "ledger_approvals", ["run_id"])


def downgrade() -> None:
    op.drop_table("ledger_approvals")
