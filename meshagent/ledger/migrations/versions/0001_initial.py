"""Initial ledger schema: entries, outcomes, feedback, chain head and daily rollups.

Revision ID: 0001
Revises:
Create Date: 2025-01-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from meshagent.ledger.types import ExactDecimal, UTCDateTime

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

_TOKENS = ("input_tokens", "cache_read_tokens", "cache_write_tokens", "output_tokens",
           "reasoning_tokens")  # fmt: skip
_Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _money() -> ExactDecimal:
    return ExactDecimal(10, precision=24)


def upgrade() -> None:
    op.create_table(
        "ledger_entries",
        sa.Column("id", _Id, primary_key=True, autoincrement=True),
        sa.Column("run_id", sa.String(36), nullable=False, unique=True),
        sa.Column("idempotency_key", sa.String(200), unique=True),
        sa.Column("process", sa.String(200)),
        sa.Column("agent", sa.String(200), nullable=False),
        sa.Column("agent_version", sa.String(64)),
        sa.Column("owner", sa.String(200)),
        sa.Column("team", sa.String(200)),
        sa.Column("trigger_kind", sa.String(16), nullable=False),
        sa.Column("triggered_by", sa.String(200)),
        sa.Column("scheduled_for", UTCDateTime()),
        sa.Column("started_at", UTCDateTime(), nullable=False),
        sa.Column("finished_at", UTCDateTime()),
        sa.Column("status", sa.String(24), nullable=False),
        sa.Column("provider", sa.String(64)),
        sa.Column("model_requested", sa.String(200)),
        sa.Column("model_answered", sa.String(200)),
        sa.Column("model_calls", sa.Integer, nullable=False),
        sa.Column("tool_calls", sa.Integer, nullable=False),
        *(sa.Column(kind, sa.BigInteger, nullable=False) for kind in _TOKENS),
        sa.Column("usage_estimated", sa.Boolean, nullable=False),
        sa.Column("cost_input_usd", _money()),
        sa.Column("cost_cache_usd", _money()),
        sa.Column("cost_output_usd", _money()),
        sa.Column("cost_usd", _money()),
        sa.Column("price_source", sa.String(64)),
        sa.Column("price_version", sa.String(64)),
        sa.Column("value_tag", sa.String(100)),
        sa.Column("minutes_saved", ExactDecimal(2, precision=12)),
        sa.Column("input_hash", sa.String(128)),
        sa.Column("error", sa.String(2000)),
        sa.Column("seq", sa.BigInteger, unique=True),
        sa.Column("prev_hash", sa.String(64)),
        sa.Column("entry_hash", sa.String(64)),
    )
    op.create_index("ix_ledger_entries_status", "ledger_entries", ["status"])
    op.create_index("ix_ledger_entries_started_at", "ledger_entries", ["started_at"])
    op.create_index("ix_ledger_entries_agent_started_at", "ledger_entries", ["agent", "started_at"])
    op.create_index("ix_ledger_entries_owner_started_at", "ledger_entries", ["owner", "started_at"])
    op.create_table(
        "ledger_outcomes",
        sa.Column("id", _Id, primary_key=True, autoincrement=True),
        sa.Column("run_id", sa.String(36), sa.ForeignKey("ledger_entries.run_id"), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("ref", sa.String(500), nullable=False),
        sa.Column("url", sa.String(1000)),
        sa.Column("created_at", UTCDateTime(), nullable=False),
    )
    op.create_index("ix_ledger_outcomes_run_id", "ledger_outcomes", ["run_id"])
    op.create_table(
        "ledger_feedback",
        sa.Column("id", _Id, primary_key=True, autoincrement=True),
        sa.Column("run_id", sa.String(36), sa.ForeignKey("ledger_entries.run_id"), nullable=False),
        sa.Column("person", sa.String(200), nullable=False),
        sa.Column("vote", sa.SmallInteger, nullable=False),
        sa.Column("comment", sa.String(2000)),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.UniqueConstraint("run_id", "person", name="uq_ledger_feedback_run_person"),
    )
    chain = op.create_table(
        "ledger_chain",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("seq", sa.BigInteger, nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
    )
    op.bulk_insert(chain, [{"id": 1, "seq": 0, "hash": "0" * 64}])
    op.create_table(
        "ledger_daily",
        sa.Column("day", sa.Date, primary_key=True),
        *(
            sa.Column(key, sa.String(200), primary_key=True)
            for key in ("agent", "owner", "team", "value_tag", "model", "person")
        ),
        sa.Column("runs", sa.BigInteger, nullable=False),
        sa.Column("runs_with_outcome", sa.BigInteger, nullable=False),
        *(sa.Column(kind, sa.BigInteger, nullable=False) for kind in _TOKENS),
        sa.Column("cost_usd", _money(), nullable=False),
        sa.Column("runs_cost_unknown", sa.BigInteger, nullable=False),
        sa.Column("minutes_saved", ExactDecimal(2, precision=16), nullable=False),
        sa.Column("feedback_pos", sa.BigInteger, nullable=False),
        sa.Column("feedback_neg", sa.BigInteger, nullable=False),
    )


def downgrade() -> None:
    for table in ("ledger_daily", "ledger_chain", "ledger_feedback", "ledger_outcomes"):
        op.drop_table(table)
    op.drop_table("ledger_entries")
