"""Observed value: people joined across their identities, and each outcome's reach and
verdict (accepted, rejected, ignored, pending) with its evidence.

Outcomes recorded before this revision get the verdict `pending` and an unknown reach. None of
this is in the chained entry columns, so `ledger verify` passes as before.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from meshagent.ledger.types import UTCDateTime

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

_Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "ledger_people",
        sa.Column("id", _Id, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
    )
    op.create_table(
        "ledger_identities",
        sa.Column("identity", sa.String(200), primary_key=True),
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("person_id", _Id, sa.ForeignKey("ledger_people.id"), nullable=False),
        sa.Column("source", sa.String(32), nullable=False),
        sa.Column("linked_at", UTCDateTime(), nullable=False),
    )
    op.create_index("ix_ledger_identities_person_id", "ledger_identities", ["person_id"])
    op.add_column("ledger_outcomes", sa.Column("audience", sa.String(16)))
    op.add_column("ledger_outcomes", sa.Column("audience_size", sa.Integer()))
    op.add_column("ledger_outcomes", sa.Column("reaches_others", sa.Boolean()))
    op.add_column("ledger_outcomes", sa.Column("reach_detail", sa.Text()))
    op.add_column(
        "ledger_outcomes",
        sa.Column("verdict", sa.String(16), nullable=False, server_default="pending"),
    )
    op.add_column("ledger_outcomes", sa.Column("evidence", sa.Text()))
    op.add_column("ledger_outcomes", sa.Column("checked_at", UTCDateTime()))
    op.add_column("ledger_outcomes", sa.Column("next_check_at", UTCDateTime()))
    op.create_index("ix_ledger_outcomes_due", "ledger_outcomes", ["verdict", "next_check_at"])


def downgrade() -> None:
    op.drop_index("ix_ledger_outcomes_due", "ledger_outcomes")
    for name in (
        "next_check_at",
        "checked_at",
        "evidence",
        "verdict",
        "reach_detail",
        "reaches_others",
        "audience_size",
        "audience",
    ):
        op.drop_column("ledger_outcomes", name)
    op.drop_table("ledger_identities")
    op.drop_table("ledger_people")
