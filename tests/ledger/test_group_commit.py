"""Group commit: many asyncio callers' writes in shared transactions, each told only once durable.

Also the close that needs no read back: the row it writes is the row it hashed.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest
from sqlalchemy import func, select

from meshagent.exceptions import LedgerError
from meshagent.ledger import Ledger, Outcome, Usage
from meshagent.ledger.records import Event
from meshagent.ledger.schema import daily, entries, events

from .helpers import T0, cost, queued_together, record
from .test_faults import _hold_write_lock


async def _one_run(ledger: Ledger, at: int) -> str:
    run_id = await ledger.aopen_run("digest", owner="alice", team="payments", started_at=T0)
    await ledger.arecord_usage(run_id, Usage(input_tokens=100, model_calls=1), cost=cost())
    await ledger.aclose_run(
        run_id,
        "ok",
        usage=Usage(tool_calls=at),
        outcomes=[Outcome("slack.message", f"C1/{at}")],
        events=[Event("tool_call", "slack.post_message", f"call {at}")],
    )
    return run_id


def test_concurrent_callers_share_transactions_and_are_all_durable(ledger, ledger_url):
    async def many() -> list[str]:
        return await asyncio.gather(*(_one_run(ledger, at) for at in range(150)))

    run_ids = asyncio.run(many())
    assert len(set(run_ids)) == 150
    assert ledger.group_commit().transactions < 3 * 150  # writes were gathered
    with Ledger.open(ledger_url) as fresh:  # what another process sees: all of it
        rows = fresh.read(lambda c: c.execute(select(entries)).mappings().all())
        assert sorted(r["tool_calls"] for r in rows) == list(range(150))
        assert {(r["status"], r["input_tokens"], r["cost_usd"]) for r in rows} == {
            ("ok", 100, Decimal("0.0012"))
        }
        assert fresh.read(lambda c: c.execute(select(func.count()).select_from(events)).scalar())
        assert fresh.read(lambda c: c.execute(select(daily.c.runs_with_outcome)).scalar()) == 150
        assert fresh.verify().ok and fresh.verify().checked == 150


def test_a_step_that_fails_fails_only_its_caller(ledger):
    closed = ledger.open_run("digest")
    ledger.close_run(closed, "ok")

    async def mixed() -> list[object]:
        good = [ledger.aopen_run("digest", idempotency_key=f"k{i}") for i in range(5)]
        bad = ledger.arecord_usage(closed, Usage(input_tokens=1))
        return await asyncio.gather(bad, *good, return_exceptions=True)

    bad, *good = asyncio.run(mixed())
    assert isinstance(bad, LedgerError)
    assert str(bad) == f"run {closed} is closed (ok): a closed entry is never updated"
    assert all(isinstance(run_id, str) for run_id in good)
    assert ledger.count() == 6 and ledger.verify().ok


def test_a_transaction_that_cannot_commit_fails_every_caller_in_it(tmp_path):
    path = tmp_path / "ledger.db"
    with Ledger.open(f"sqlite:///{path}", busy_timeout=0.05, retry_for=0.3) as ledger:

        async def opens() -> list[object]:
            calls = [ledger.aopen_run("digest") for _ in range(20)]
            return await asyncio.gather(*calls, return_exceptions=True)

        holder = _hold_write_lock(path, 1.0)
        failed = asyncio.run(opens())
        holder.join()
        message = f"could not open a run in ledger sqlite:///{path}: database is locked"
        assert [str(error) for error in failed] == [message] * 20
        assert ledger.count() == 0  # nobody was told otherwise
        assert isinstance(asyncio.run(ledger.aopen_run("digest")), str)  # free again: works


def test_a_caller_cancelled_before_its_turn_writes_nothing(ledger):
    group = ledger.group_commit()
    ran: list[int] = []

    def slow(connection, batch):
        time.sleep(0.2)
        ran.append(1)

    async def scenario() -> None:
        first = asyncio.ensure_future(group.write(slow, what="wait"))
        await asyncio.sleep(0.05)  # the writer is in `slow`'s transaction now
        second = asyncio.ensure_future(group.write(slow, what="wait"))
        await asyncio.sleep(0)
        second.cancel()
        await first
        with pytest.raises(asyncio.CancelledError):
            await second

    asyncio.run(scenario())
    time.sleep(0.3)
    assert ran == [1]


class _CountingLoop(asyncio.SelectorEventLoop):
    """An event loop that counts the callbacks other threads hand it (each wakes it up)."""

    handed = 0

    def call_soon_threadsafe(self, callback, *args, context=None):  # type: ignore[override]
        _CountingLoop.handed += 1
        return super().call_soon_threadsafe(callback, *args, context=context)


def test_the_answers_of_a_transaction_reach_the_event_loop_in_one_call(ledger):
    _CountingLoop.handed = 0
    with asyncio.Runner(loop_factory=_CountingLoop) as runner:
        run_ids = runner.run(_opened_together(ledger, 200))
    transactions = ledger.group_commit().transactions
    assert len(set(run_ids)) == 200 and ledger.count() == 200
    assert transactions < 200  # gathered
    # One hand-over per transaction (not one per caller), a few more for the runner itself.
    assert _CountingLoop.handed <= transactions + 5


async def _opened_together(ledger: Ledger, count: int) -> list[str]:
    return await asyncio.gather(*(ledger.aopen_run("digest") for _ in range(count)))


def test_callers_on_two_event_loops_each_get_their_answers(ledger):
    def in_a_thread(found: list[str]) -> None:
        found.extend(asyncio.run(_opened_together(ledger, 50)))

    found: list[list[str]] = [[], []]
    threads = [threading.Thread(target=in_a_thread, args=(each,)) for each in found]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert [len(set(each)) for each in found] == [50, 50]
    assert ledger.count() == 100 and ledger.verify().ok


def test_a_close_retried_after_its_answer_was_lost_is_not_counted_twice(ledger):
    run_id = ledger.open_run("digest", owner="alice", started_at=T0)
    step = ledger._close_step(run_id, "ok", usage=Usage(input_tokens=5))
    ledger._write(step, what="close a run")
    ledger._write(step, what="close a run")  # the same close again: already done, no error
    assert ledger.read(lambda c: c.execute(select(daily.c.runs)).scalar()) == 1
    assert ledger.verify().ok and ledger.verify().checked == 1
    other = ledger._close_step(run_id, "failed")  # another close is still refused
    with pytest.raises(LedgerError, match="is closed"):
        ledger._write(other, what="close a run")


def test_a_close_without_read_back_hashes_what_the_database_holds(ledger, ledger_url):
    berlin = timezone(timedelta(hours=1))
    run_id = ledger.open_run(
        "digest",
        owner="alice",
        minutes_saved=0.125,  # stored as 0.12: the hash must cover what is stored
        started_at=datetime(2025, 3, 3, 10, 0, 0, 123456, tzinfo=berlin),
        scheduled_for=datetime(2025, 3, 3, 9, 0),  # naive: taken as UTC
        model_requested="openai:gpt-4.1-mini",
    )
    ledger.record_usage(run_id, Usage(input_tokens=7), cost=cost("0.00000000015"))
    ledger.record_usage(run_id, Usage(output_tokens=3), cost=None, model_answered="gpt-x")
    asyncio.run(ledger.aclose_run(run_id, "ok", input_hash="h"))
    with Ledger.open(ledger_url) as fresh:
        assert fresh.verify().ok
        row = fresh.entry(run_id)
    assert (row["model_answered"], row["cost_usd"], row["minutes_saved"]) == (
        "gpt-x",
        None,
        Decimal("0.12"),
    )


CHILD = textwrap.dedent(
    """
    import asyncio, sys
    from meshagent.ledger import Ledger, Usage

    ledger = Ledger.open(sys.argv[1])

    async def run(at):
        run_id = await ledger.aopen_run("digest", owner="alice")
        print("open", run_id, flush=True)
        await ledger.arecord_usage(run_id, Usage(input_tokens=at + 1))
        print("usage", run_id, at + 1, flush=True)
        await ledger.aclose_run(run_id, "ok")
        print("close", run_id, flush=True)

    async def worker(first):
        for at in range(first, 10**9, 50):
            await run(at)

    async def main():
        await asyncio.gather(*(worker(first) for first in range(50)))

    asyncio.run(main())
    """
)


def test_nothing_acknowledged_is_lost_when_the_writer_is_killed(tmp_path):
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    Ledger.open(url).close()  # migrated before the child starts
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, url], stdout=subprocess.PIPE, text=True, cwd=os.getcwd()
    )
    told: list[list[str]] = []
    try:
        assert child.stdout is not None
        for line in child.stdout:
            told.append(line.split())
            if sum(1 for word in told if word[0] == "close") >= 300:
                break
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=10)
        rest = child.stdout.read()
        # A line cut short by the kill was never a whole acknowledgement.
        told += [line.split() for line in rest.splitlines(keepends=True) if line.endswith("\n")]
    finally:
        if child.poll() is None:
            child.kill()
        if child.stdout is not None:
            child.stdout.close()
    with Ledger.open(url) as ledger:
        rows = {
            r["run_id"]: r
            for r in ledger.read(lambda c: c.execute(select(entries)).mappings().all())
        }
        recovered = ledger.recover()
        verified = ledger.verify()
    for word in told:
        kind, run_id = word[0], word[1]
        assert run_id in rows, f"{kind} of {run_id} was acknowledged, then lost"
        if kind == "usage":
            assert rows[run_id]["input_tokens"] >= int(word[2])
        if kind == "close":
            assert rows[run_id]["status"] == "ok"
    # The runs it had open are closed as interrupted (there may be none: the kill can fall
    # between a commit of closes and the commit of the next opens).
    assert set(recovered) == {run_id for run_id, r in rows.items() if r["status"] == "running"}
    assert verified.ok


def test_a_batch_keeps_every_value_exactly(ledger, ledger_url):
    """Batches go to PostgreSQL as one array per column: awkward text and NULLs survive."""
    awkward = ["NULL", "a,b", '{"x"}', "back\\slash", "quote'd", "", "ünïcödé ✓", None]
    batch = [
        record(
            agent=f"agent {at}",
            owner=text,
            team=text,
            value_tag=text,
            triggered_by=text,
            error=text,
            minutes_saved=None if text is None else Decimal("0.125"),
            cost=None if at % 2 else cost("0.0000000001"),
            scheduled_for=None,
            outcomes=(Outcome("slack.message", text or "x", text),),
        )
        for at, text in enumerate(awkward)
    ]
    run_ids = ledger.write_records(batch)
    with Ledger.open(ledger_url) as fresh:
        assert fresh.verify().ok  # every stored value hashes as it was written
        for run_id, text in zip(run_ids, awkward, strict=True):
            row = fresh.entry(run_id)
            assert (row["owner"], row["error"], row["triggered_by"]) == (text, text, text)
            assert row["minutes_saved"] == (None if text is None else Decimal("0.12"))
            assert [o.url for o in fresh.outcomes(run_id)] == [text]


def test_one_idempotency_key_opens_one_entry_even_within_one_transaction(ledger):
    async def twice() -> list[str]:
        calls = [ledger.aopen_run("digest", idempotency_key="fire-1") for _ in range(5)]
        return await asyncio.gather(*calls)

    run_ids = asyncio.run(twice())
    assert len(set(run_ids)) == 1 and ledger.count() == 1
    assert ledger.open_run("digest", run_id=run_ids[0]) == run_ids[0]  # a taken run id too
    assert ledger.count() == 1


# -- yielding to requests being answered beside the writer (Slack's acks) --------------------


def _steps_behind(group, gate: threading.Event, count: int, step):
    """``count`` steps made by `step` sharing a transaction (`queued_together`); their futures."""
    return queued_together(group, [("step", step(at)) for at in range(count)], gate)


def test_a_transaction_yields_after_its_step_while_the_loop_is_busy(ledger):
    """A request arriving (the idle event cleared) ends the writer's transaction after the step
    it is running; its callers hear back, and the rest runs, once the loop is idle again."""
    idle = threading.Event()
    idle.set()
    ledger.yield_writes_to(idle, max_wait=10.0)
    group = ledger.group_commit()
    ran: list[int] = []

    def step(at: int):
        def run(connection, batch) -> int:
            ran.append(at)
            if at == 2:
                idle.clear()  # a request arrives while step 2 runs
            return at * 10

        return run

    futures = _steps_behind(group, threading.Event(), 8, step)
    time.sleep(0.5)
    assert ran == [0, 1, 2]  # nothing after the step that was running
    assert not any(f.done() for f in futures)  # committed, told once the loop is idle
    idle.set()
    assert [f.result(timeout=5) for f in futures] == [at * 10 for at in range(8)]
    assert ran == list(range(8))


def test_a_write_waits_for_a_busy_loop_at_most_max_wait(ledger):
    """Requests that never stop slow the writes down by max_wait, never starve them: after
    waiting once, the writer commits its whole batch whatever the event says."""
    idle = threading.Event()  # clear, and never set
    ledger.yield_writes_to(idle, max_wait=0.3)
    group = ledger.group_commit()
    started = time.monotonic()

    def step(at: int):
        return lambda connection, batch: at

    futures = _steps_behind(group, threading.Event(), 20, step)
    assert [f.result(timeout=10) for f in futures] == list(range(20))
    assert 0.3 <= time.monotonic() - started < 3  # one wait of at most max_wait, then all of it


def test_a_writer_with_nothing_to_yield_to_never_waits(ledger):
    group = ledger.group_commit()
    started = time.monotonic()
    futures = _steps_behind(group, threading.Event(), 50, lambda at: lambda c, b: at)
    assert [f.result(timeout=5) for f in futures] == list(range(50))
    assert time.monotonic() - started < 2


def test_what_a_yielding_transaction_left_waits_for_a_busy_loop_once(ledger):
    """Requests that never stop after one arrived mid-transaction: the callers of its part wait
    at most max_wait, and the rest is committed right after, not after a second wait."""
    idle = threading.Event()
    idle.set()
    ledger.yield_writes_to(idle, max_wait=0.5)
    group = ledger.group_commit()

    def step(at: int):
        def run(connection, batch) -> int:
            if at == 1:
                idle.clear()  # and never set again
            return at

        return run

    started = time.monotonic()
    futures = _steps_behind(group, threading.Event(), 6, step)
    assert [f.result(timeout=10) for f in futures] == list(range(6))
    assert 0.5 <= time.monotonic() - started < 1.0  # one wait of max_wait, not two
