"""The entry's life: open, usage as it goes, close once; outcomes, recovery, batching."""

from __future__ import annotations

import re
import subprocess
import sys
from datetime import timedelta
from decimal import Decimal

import pytest
from sqlalchemy import select

from meshagent.exceptions import LedgerError
from meshagent.ledger import BatchWriter, Ledger, Outcome, Usage
from meshagent.ledger.schema import daily, entries, outcomes

from .helpers import T0, cost, record, run_via_api


def _entry(ledger: Ledger, run_id: str):
    with ledger.engine.connect() as connection:
        query = select(entries).where(entries.c.run_id == run_id)
        return connection.execute(query).mappings().one()


def test_usage_is_recorded_as_the_run_goes(ledger):
    run_id = ledger.open_run("digest", owner="alice", trigger_kind="slash", triggered_by="bob")
    assert _entry(ledger, run_id)["status"] == "running"
    ledger.record_usage(
        run_id, Usage(input_tokens=100, cache_read_tokens=40, model_calls=1), cost=cost("0.001")
    )
    ledger.record_usage(
        run_id,
        Usage(output_tokens=7, reasoning_tokens=3, estimated=True),
        cost=cost("0.0005"),
        model_answered="gpt-x",
    )
    row = _entry(ledger, run_id)  # a crash now would still leave what was spent
    assert (row["input_tokens"], row["cache_read_tokens"], row["output_tokens"]) == (100, 40, 7)
    assert row["usage_estimated"] is True and row["cost_usd"] == Decimal("0.0015")
    ledger.close_run(run_id, "failed", error="boom", outcomes=[Outcome("jira.issue", "PAY-1")])
    row = _entry(ledger, run_id)
    assert (row["status"], row["error"], row["model_answered"], row["seq"]) == (
        "failed",
        "boom",
        "gpt-x",
        1,
    )


def test_a_closed_entry_is_never_updated(ledger):
    run_id = run_via_api(ledger)
    message = f"run {run_id} is closed (ok): a closed entry is never updated"
    with pytest.raises(LedgerError, match=re.escape(message)):
        ledger.record_usage(run_id, Usage(input_tokens=1))
    with pytest.raises(LedgerError, match=re.escape(message)):
        ledger.close_run(run_id, "failed")
    with pytest.raises(LedgerError, match="is not in the ledger"):
        ledger.close_run("no-such-run", "ok")
    with pytest.raises(LedgerError, match="cannot be closed as 'running'"):
        ledger.close_run(run_id, "running")


def test_an_idempotency_key_opens_one_entry(ledger):
    first = ledger.open_run("digest", idempotency_key="fire-2025-03-03T09:00")
    second = ledger.open_run("digest", idempotency_key="fire-2025-03-03T09:00")
    assert first == second and ledger.count() == 1


def test_an_outcome_after_close_counts_once_in_reports(ledger):
    run_id = ledger.open_run("digest", owner="alice", minutes_saved=15, started_at=T0)
    ledger.close_run(run_id, "ok")
    ledger.add_outcome(run_id, "slack.message", "C1/1", "https://slack/1")
    ledger.add_outcome(run_id, "slack.message", "C1/1")  # a retry adds nothing
    ledger.add_outcome(run_id, "jira.issue", "PAY-2")
    with ledger.engine.connect() as connection:
        assert len(connection.execute(select(outcomes)).all()) == 2
        with_outcome, minutes = connection.execute(
            select(daily.c.runs_with_outcome, daily.c.minutes_saved)
        ).one()
    assert (with_outcome, minutes) == (1, Decimal(15))
    assert ledger.verify().ok


def test_recover_interrupts_runs_of_dead_processes_only(ledger, ledger_url):
    mine = ledger.open_run("digest")
    code = (
        "from meshagent.ledger import Ledger\n"
        f"print(Ledger.open({ledger_url!r}).open_run('digest'))\n"
    )
    dead = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert ledger.recover() == [dead]
    assert _entry(ledger, dead)["status"] == "interrupted"
    assert _entry(ledger, mine)["status"] == "running"
    assert ledger.recover(older_than=timedelta(0)) == [mine]
    assert ledger.verify().ok


def test_batch_writer_acknowledges_only_durable_entries(ledger):
    with BatchWriter(ledger, max_entries=50, max_delay=0.01) as writer:
        futures = [writer.submit(record(input_hash=f"h{i}")) for i in range(120)]
        writer.flush()
        assert all(future.done() for future in futures)
        assert ledger.count() == 120
    assert ledger.verify().checked == 120
    with pytest.raises(LedgerError, match="batch writer is closed"):
        writer.submit(record())


def test_write_records_is_idempotent_by_run_id(ledger):
    batch = [record(run_id=f"run-{i}") for i in range(5)]
    assert ledger.write_records(batch) == ledger.write_records(batch)
    assert ledger.count() == 5 and ledger.verify().ok
