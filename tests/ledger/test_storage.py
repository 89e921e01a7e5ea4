"""Storage: migrations on open, the schema they build, exact money, feedback per person."""

from __future__ import annotations

from decimal import Decimal

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import func, inspect, select, text

from meshagent.ledger import Ledger, Usage
from meshagent.ledger.migrate import VERSION_TABLE, head_revision
from meshagent.ledger.schema import daily, entries, feedback, metadata

from .helpers import T0, cost, record, run_via_api


def test_open_applies_migrations_and_migrate_is_idempotent(ledger_url):
    with Ledger.open(ledger_url) as ledger:
        names = set(inspect(ledger.engine).get_table_names())
        assert {"ledger_entries", "ledger_outcomes", "ledger_feedback", "ledger_daily"} <= names
        assert ledger.migrate() == (head_revision(), head_revision())
    with Ledger.open(ledger_url, migrate=False) as again:
        assert again.count() == 0


def test_migrations_build_exactly_the_live_schema(ledger):
    with ledger.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"version_table": VERSION_TABLE})
        assert compare_metadata(context, metadata) == []


def test_report_indexes_exist(ledger):
    names = {ix["name"] for ix in inspect(ledger.engine).get_indexes("ledger_entries")}
    assert {"ix_ledger_entries_started_at", "ix_ledger_entries_agent_started_at"} <= names


def test_sqlite_uses_wal_and_a_busy_timeout(sqlite_url):
    with Ledger.open(sqlite_url) as ledger, ledger.engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert connection.exec_driver_sql("PRAGMA busy_timeout").scalar() == 5000


def test_money_is_exact_to_ten_decimals(ledger):
    tiny = "0.0000000123"
    ledger.write_records([record(cost=cost(tiny)) for _ in range(3)])
    with ledger.engine.connect() as connection:
        total = connection.execute(select(func.sum(entries.c.cost_usd))).scalar()
        rolled = connection.execute(select(daily.c.cost_usd)).scalar()
    assert total == Decimal("0.0000000369")
    assert rolled == Decimal("0.0000000369")


def test_cost_is_null_when_the_price_is_unknown(ledger):
    run_id = ledger.open_run("digest", owner="alice")
    ledger.record_usage(run_id, Usage(input_tokens=10), cost=None)
    ledger.record_usage(run_id, Usage(input_tokens=10), cost=cost())
    ledger.close_run(run_id, "ok")
    free = ledger.open_run("digest", owner="alice")
    ledger.close_run(free, "skipped_unchanged")
    with ledger.engine.connect() as connection:
        costs = dict(connection.execute(select(entries.c.run_id, entries.c.cost_usd)).all())
        unknown = connection.execute(select(func.sum(daily.c.runs_cost_unknown))).scalar()
    assert costs == {run_id: None, free: Decimal(0)}
    assert unknown == 1


def test_a_new_vote_replaces_the_old_one(ledger):
    run_id = run_via_api(ledger)
    ledger.add_feedback(run_id, "bob", 1, comment="nice")
    ledger.add_feedback(run_id, "bob", -1)
    ledger.add_feedback(run_id, "carol", -1)
    with ledger.engine.connect() as connection:
        votes = connection.execute(select(feedback.c.person, feedback.c.vote)).all()
        pos, neg = connection.execute(select(daily.c.feedback_pos, daily.c.feedback_neg)).one()
    assert sorted(votes) == [("bob", -1), ("carol", -1)]
    assert (pos, neg) == (0, 2)


def test_times_come_back_in_utc(ledger):
    (run_id,) = ledger.write_records([record()])
    with ledger.engine.connect() as connection:
        started = connection.execute(select(entries.c.started_at)).scalar()
        assert connection.execute(text("SELECT 1")).scalar() == 1
    assert started == T0 and started.utcoffset().total_seconds() == 0
    assert run_id
