"""Which commits wait for the disk.

On PostgreSQL, and on SQLite with ``?sync=full``: an entry's opening does not, what a run spends
and its close do (and with them everything committed before, the opening included). On SQLite by
default (``sync=normal``) no commit waits, a thread of the process writes the log to the disk
within half a second, and a killed process loses nothing it committed.

Each commit is observed on its own connection, just before it happens: SQLite's ``synchronous``
(1 NORMAL, 2 FULL) and PostgreSQL's ``synchronous_commit`` as the transaction sees them.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event

from meshagent.exceptions import LedgerError
from meshagent.ledger import Ledger, Usage
from meshagent.ledger.engine import WAL_SYNC_SECONDS, _WalLog
from meshagent.ledger.lifecycle import usage_step

from .helpers import cost
from .test_faults import _hold_write_lock

RELAXED, DURABLE = "relaxed", "durable"


def _setting(connection: Any) -> str:
    raw = connection.connection.driver_connection
    if connection.dialect.name == "sqlite":
        found = raw.execute("PRAGMA synchronous").fetchone()[0]
        return {1: RELAXED, 2: DURABLE}[found]
    found = raw.execute("SHOW synchronous_commit").fetchone()[0]
    return {"off": RELAXED, "on": DURABLE}[found]


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def ledger_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A SQLite ledger whose spending and closes wait for the disk (sync=full), or PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'ledger.db'}?sync=full"
    return request.getfixturevalue("pg_schema_url")


@pytest.fixture
def commits(ledger: Ledger) -> Iterator[list[str]]:
    """How each write transaction of ``ledger`` commits, in order."""
    seen: list[str] = []

    def on_commit(connection: Any) -> None:
        seen.append(_setting(connection))

    event.listen(ledger.engine, "commit", on_commit)
    try:
        yield seen
    finally:
        event.remove(ledger.engine, "commit", on_commit)


def test_the_opening_is_relaxed_and_spending_and_close_are_durable(ledger, commits):
    run_id = ledger.open_run("digest", owner="alice")
    ledger.record_usage(run_id, Usage(input_tokens=100, model_calls=1), cost=cost())
    ledger.close_run(run_id, "ok", usage=Usage(output_tokens=5))
    assert commits == [RELAXED, DURABLE, DURABLE]
    # The connection that committed relaxed goes back to the pool durable.
    with ledger.engine.connect() as connection:
        assert _setting(connection) == DURABLE
    assert ledger.entry(run_id)["input_tokens"] == 100


def test_group_committed_openings_are_relaxed_unless_they_share_a_durable_write(ledger, commits):
    async def openings() -> list[str]:
        return await asyncio.gather(*(ledger.aopen_run("digest") for _ in range(30)))

    run_ids = asyncio.run(openings())
    assert commits and set(commits) == {RELAXED}

    async def lives() -> None:
        async def one(run_id: str) -> None:
            await ledger.arecord_usage(run_id, Usage(input_tokens=3))
            await ledger.aclose_run(run_id, "ok")

        await asyncio.gather(*(one(run_id) for run_id in run_ids))

    commits.clear()
    asyncio.run(lives())
    assert commits and set(commits) == {DURABLE}
    assert {ledger.entry(r)["input_tokens"] for r in run_ids} == {3}


def test_an_opening_that_shares_a_transaction_with_spending_waits_for_the_disk(tmp_path):
    path = tmp_path / "ledger.db"
    with Ledger.open(f"sqlite:///{path}?sync=full", retry_for=10) as ledger:
        spent = ledger.open_run("digest")
        seen: list[str] = []
        event.listen(ledger.engine, "commit", lambda c: seen.append(_setting(c)))
        group = ledger.group_commit()
        holder = _hold_write_lock(path, 0.3)  # the writer waits with the first step alone
        first = group.submit(_open_step(ledger), what="open a run", durable=False)
        time.sleep(0.1)  # taken by the writer, which waits for the lock
        both = [
            group.submit(_open_step(ledger), what="open a run", durable=False),
            group.submit(usage_step(spent, {"input_tokens": 7}), what="record usage"),
        ]
        holder.join()
        first.result(10)
        for future in both:
            future.result(10)
        assert seen == [RELAXED, DURABLE]
        assert ledger.entry(spent)["input_tokens"] == 7


def _open_step(ledger: Ledger) -> Any:
    from meshagent.ledger.lifecycle import open_step

    return open_step(ledger.entry_values("digest"), None)


# -- SQLite's default: sync=normal -----------------------------------------------------------


@pytest.mark.parametrize("url", ["sqlite:///{path}", "sqlite:///file:{path}?uri=true"])
def test_by_default_no_sqlite_commit_waits_and_the_log_is_synced_soon_after(tmp_path, url):
    with Ledger.open(url.format(path=tmp_path / "ledger.db")) as ledger:
        seen: list[str] = []
        event.listen(ledger.engine, "commit", lambda c: seen.append(_setting(c)))
        time.sleep(2 * WAL_SYNC_SECONDS)  # the migration's commits synced, if any
        synced = _WalLog.synced
        run_id = ledger.open_run("digest", owner="alice")
        ledger.record_usage(run_id, Usage(input_tokens=100, model_calls=1), cost=cost())
        ledger.close_run(run_id, "ok", usage=Usage(output_tokens=5))
        assert seen == [RELAXED, RELAXED, RELAXED]
        deadline = time.monotonic() + 4 * WAL_SYNC_SECONDS + 2
        while _WalLog.synced == synced and time.monotonic() < deadline:
            time.sleep(0.02)
        assert _WalLog.synced > synced  # the three commits' log written to the disk
        assert ledger.entry(run_id)["status"] == "ok"


def test_a_killed_process_loses_no_close_it_committed(tmp_path):
    # The child closes entries and kills itself at once, before its log could be synced: what
    # it committed is in the operating system's hands, and the next opening reads it.
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    child = textwrap.dedent(
        f"""
        import os, signal
        from meshagent.ledger import Ledger, Usage
        ledger = Ledger.open({url!r})
        for _ in range(5):
            run_id = ledger.open_run("digest")
            ledger.close_run(run_id, "ok", usage=Usage(input_tokens=7))
            print(run_id, flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", child], capture_output=True, text=True, timeout=60,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )  # fmt: skip
    assert done.returncode == -signal.SIGKILL, done.stderr
    run_ids = done.stdout.split()
    assert len(run_ids) == 5
    with Ledger.open(url) as ledger:
        assert [ledger.entry(r)["input_tokens"] for r in run_ids] == [7] * 5
        assert ledger.verify().ok


@pytest.mark.parametrize(
    "url",
    [
        "sqlite:///ledger.db?sync=fast",
        "postgresql+psycopg://postgres@127.0.0.1:5432/test?sync=full",
    ],
)
def test_a_sync_setting_the_ledger_cannot_take_is_named(url):
    with pytest.raises(LedgerError, match=r"sync='(fast|full)' is not a setting of it"):
        Ledger.open(url)
