"""The ledger's tables: entries (one per task), outcomes, feedback, the chain head, daily rollups.

This is the live model the code reads and writes; the migrations in `migrations/versions` are
what creates it in a database, and a test keeps the two the same.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Date,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    SmallInteger,
    String,
    Table,
    Text,
    UniqueConstraint,
)

from meshagent.ledger.types import ExactDecimal, UTCDateTime

__all__ = [
    "CHAIN_FIELDS",
    "DAILY_KEYS",
    "DAILY_SUMS",
    "MONEY_SCALE",
    "STATUSES",
    "TOKEN_KINDS",
    "TRIGGER_KINDS",
    "approvals",
    "chain",
    "daily",
    "entries",
    "feedback",
    "identities",
    "metadata",
    "nonces",
    "outcomes",
    "people",
    "reservations",
    "spent_tokens",
]

MONEY_SCALE = 10
STATUSES = (
    "running",
    "ok",
    "failed",
    "skipped_unchanged",
    "over_budget",
    "denied",
    "interrupted",
    "missed",
)
TRIGGER_KINDS = ("schedule", "slash", "cli", "api")
TOKEN_KINDS = (
    "input_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "output_tokens",
    "reasoning_tokens",
)

metadata = MetaData()
_Id = BigInteger().with_variant(Integer(), "sqlite")


def spent_tokens(table: Table) -> Any:
    """The tokens a run spent, as a column expression over `entries` or `daily`.

    Input tokens include the cached ones and output tokens include reasoning (LangChain's
    convention, which the ledger keeps): adding cache or reasoning columns would count twice.
    """
    return table.c.input_tokens + table.c.output_tokens


def _money() -> ExactDecimal:
    return ExactDecimal(MONEY_SCALE, precision=24)


entries = Table(
    "ledger_entries",
    metadata,
    Column("id", _Id, primary_key=True, autoincrement=True),
    Column("run_id", String(36), nullable=False, unique=True),
    Column("idempotency_key", String(200), unique=True),
    Column("process", String(200)),
    Column("agent", String(200), nullable=False),
    Column("agent_version", String(64)),
    Column("owner", String(200)),
    Column("team", String(200)),
    Column("trigger_kind", String(16), nullable=False),
    Column("triggered_by", String(200)),
    Column("scheduled_for", UTCDateTime()),
    Column("started_at", UTCDateTime(), nullable=False),
    Column("finished_at", UTCDateTime()),
    Column("status", String(24), nullable=False),
    Column("provider", String(64)),
    Column("model_requested", String(200)),
    Column("model_answered", String(200)),
    Column("model_calls", Integer, nullable=False, default=0),
    Column("tool_calls", Integer, nullable=False, default=0),
    *(Column(kind, BigInteger, nullable=False, default=0) for kind in TOKEN_KINDS),
    Column("usage_estimated", Boolean, nullable=False, default=False),
    Column("cost_input_usd", _money()),
    Column("cost_cache_usd", _money()),
    Column("cost_output_usd", _money()),
    Column("cost_usd", _money()),
    Column("price_source", String(64)),
    Column("price_version", String(64)),
    Column("value_tag", String(100)),
    Column("minutes_saved", ExactDecimal(2, precision=12)),
    Column("input_hash", String(128)),
    Column("error", String(2000)),
    Column("seq", BigInteger, unique=True),
    Column("prev_hash", String(64)),
    Column("entry_hash", String(64)),
    Index("ix_ledger_entries_status", "status"),
    Index("ix_ledger_entries_started_at", "started_at"),
    Index("ix_ledger_entries_agent_started_at", "agent", "started_at"),
    Index("ix_ledger_entries_owner_started_at", "owner", "started_at"),
)

# What the hash of an entry covers: every recorded fact, in this order, never the row id.
CHAIN_FIELDS = tuple(
    column.name
    for column in entries.columns
    if column.name not in {"id", "process", "seq", "prev_hash", "entry_hash"}
)

outcomes = Table(
    "ledger_outcomes",
    metadata,
    Column("id", _Id, primary_key=True, autoincrement=True),
    Column("run_id", String(36), ForeignKey("ledger_entries.run_id"), nullable=False),
    Column("kind", String(32), nullable=False),
    Column("ref", String(500), nullable=False),
    Column("url", String(1000)),
    Column("created_at", UTCDateTime(), nullable=False),
    # Its reach, as the connector saw it at delivery (`meshagent.ledger.verdicts`): who could
    # see it. None where unknown (outcomes recorded before 0006, connectors that do not say).
    Column("audience", String(16)),  # public, private, dm, ephemeral, thread, jira, ...
    Column("audience_size", Integer),
    Column("reaches_others", Boolean),  # anyone but the owner and the triggerer can see it
    Column("reach_detail", Text),  # JSON: Jira project, reporter, assignee, watchers, ...
    # Read back after the fact by the follow-up pass: not part of the chained entry.
    Column("verdict", String(16), nullable=False, server_default="pending"),
    Column("evidence", Text),  # JSON list of {who, what, when, counted, why}
    Column("checked_at", UTCDateTime()),
    Column("next_check_at", UTCDateTime()),
    Index("ix_ledger_outcomes_run_id", "run_id"),
    Index("ix_ledger_outcomes_due", "verdict", "next_check_at"),
)

# A person is one row however many names they have; each name (a Slack user id, an email, a
# login) is one identity row pointing at it (`meshagent.ledger.people`).
people = Table(
    "ledger_people",
    metadata,
    Column("id", _Id, primary_key=True, autoincrement=True),
    Column("name", String(200), nullable=False),  # how reports name them: an email if known
    Column("created_at", UTCDateTime(), nullable=False),
)

identities = Table(
    "ledger_identities",
    metadata,
    Column("identity", String(200), primary_key=True),  # normalised: see people.normalise
    Column("kind", String(8), nullable=False),  # slack, email, login
    Column("person_id", _Id, ForeignKey("ledger_people.id"), nullable=False),
    Column("source", String(32), nullable=False),  # alias, slack, manual, ...
    Column("linked_at", UTCDateTime(), nullable=False),
    Index("ix_ledger_identities_person_id", "person_id"),
)

feedback = Table(
    "ledger_feedback",
    metadata,
    Column("id", _Id, primary_key=True, autoincrement=True),
    Column("run_id", String(36), ForeignKey("ledger_entries.run_id"), nullable=False),
    Column("person", String(200), nullable=False),
    Column("vote", SmallInteger, nullable=False),
    Column("comment", String(2000)),
    Column("created_at", UTCDateTime(), nullable=False),
    UniqueConstraint("run_id", "person", name="uq_ledger_feedback_run_person"),
)

events = Table(
    "ledger_events",
    metadata,
    Column("id", _Id, primary_key=True, autoincrement=True),
    Column("run_id", String(36), ForeignKey("ledger_entries.run_id"), nullable=False),
    Column("at", UTCDateTime(), nullable=False),
    Column("kind", String(32), nullable=False),
    Column("name", String(200), nullable=False),
    Column("detail", String(2000)),
    Index("ix_ledger_events_run_id", "run_id"),
)

claims = Table(
    "ledger_claims",
    metadata,
    Column("agent", String(200), primary_key=True),
    Column("fire_time", UTCDateTime(), primary_key=True),
    Column("replica", String(200), nullable=False),
    Column("run_id", String(36), nullable=False),
    Column("claimed_at", UTCDateTime(), nullable=False),
    Column("lease_until", UTCDateTime(), nullable=False),
    Column("done", Boolean, nullable=False),
    Index("ix_ledger_claims_open", "done", "lease_until"),
)

# Keys already seen (a Slack request's signature, an event id), each until its own expiry: one
# row per key, so a replay that reaches another replica of the fleet is refused there too.
nonces = Table(
    "ledger_nonces",
    metadata,
    Column("key", String(200), primary_key=True),
    Column("expires_at", UTCDateTime(), nullable=False),
    Index("ix_ledger_nonces_expires_at", "expires_at"),
)

# What each model call in flight may cost, held against its agent's max_usd_per_day until the
# call's real cost is in its entry (`meshagent.ledger.budget`); never counted as spend by reports.
reservations = Table(
    "ledger_reservations",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("agent", String(200), nullable=False),
    Column("day", Date, nullable=False),  # the UTC day its run started, whose budget it uses
    Column("run_id", String(36), nullable=False),
    Column("amount_usd", _money(), nullable=False),
    Column("reserved_at", UTCDateTime(), nullable=False),
    Column("expires_at", UTCDateTime(), nullable=False),
    Index("ix_ledger_reservations_agent_day", "agent", "day"),
    Index("ix_ledger_reservations_run_id", "run_id"),
)

# Writes staged for a person's approval (`meshagent.ledger.approvals`): the exact payload and its
# hash, who may decide, where they were asked, and what became of it. Not part of the chain: a
# decision comes after the entry is closed.
approvals = Table(
    "ledger_approvals",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("run_id", String(36), ForeignKey("ledger_entries.run_id"), nullable=False),
    Column("agent", String(200), nullable=False),
    Column("action", String(200), nullable=False),
    Column("source", String(8), nullable=False),  # deliver, tool
    Column("payload", Text, nullable=False),  # canonical JSON of the action's arguments
    Column("payload_hash", String(64), nullable=False),
    Column("approvers", Text, nullable=False),  # JSON list, as the agent file names them
    Column("asked", Text),  # JSON list of {channel, ts}: the Slack messages that ask
    Column(
        "status", String(16), nullable=False
    ),  # pending approved rejected expired executed failed
    Column("created_at", UTCDateTime(), nullable=False),
    Column("expires_at", UTCDateTime(), nullable=False),
    Column("decided_by", String(200)),
    Column("decided_at", UTCDateTime()),
    Column("reason", String(2000)),
    Column("executed_at", UTCDateTime()),
    Column("result", Text),  # JSON: the outcomes made, or the error
    Index("ix_ledger_approvals_status_expires_at", "status", "expires_at"),
    Index("ix_ledger_approvals_run_id", "run_id"),
)

chain = Table(
    "ledger_chain",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("seq", BigInteger, nullable=False),
    Column("hash", String(64), nullable=False),
)

# One row per (day, agent, owner, team, tag, model, person) of closed entries, kept in the same
# transaction as the entries, so a report reads a few thousand rows instead of every entry.
DAILY_KEYS = ("day", "agent", "owner", "team", "value_tag", "model", "person")
DAILY_SUMS = (
    "runs",
    "runs_with_outcome",
    *TOKEN_KINDS,
    "cost_usd",
    "runs_cost_unknown",
    "minutes_saved",
    "feedback_pos",
    "feedback_neg",
)
daily = Table(
    "ledger_daily",
    metadata,
    Column("day", Date, primary_key=True),
    *(Column(key, String(200), primary_key=True) for key in DAILY_KEYS[1:]),
    Column("runs", BigInteger, nullable=False, default=0),
    Column("runs_with_outcome", BigInteger, nullable=False, default=0),
    *(Column(kind, BigInteger, nullable=False, default=0) for kind in TOKEN_KINDS),
    Column("cost_usd", _money(), nullable=False, default=0),
    Column("runs_cost_unknown", BigInteger, nullable=False, default=0),
    Column("minutes_saved", ExactDecimal(2, precision=16), nullable=False, default=0),
    Column("feedback_pos", BigInteger, nullable=False, default=0),
    Column("feedback_neg", BigInteger, nullable=False, default=0),
)
