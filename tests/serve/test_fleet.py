"""The scheduled fleet in-process: fires, claims, hot reload, misses, backoff and shutdown."""

from __future__ import annotations

import asyncio
import os
import re
import time
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from meshagent.agentfile.loader import load_agent
from meshagent.config import Config
from meshagent.exceptions import ConfigError
from meshagent.fleet.scheduler import Fleet
from meshagent.fleet.server import single_replica_lock
from meshagent.ledger.schema import claims, entries
from meshagent.models import ScriptedChatModel
from meshagent.runtime.runner import Runtime
from tests.serve.conftest import write_agent

#: The reason of fires a late-waking loop skipped: on a loaded machine, any test may see it.
LAGGED = "this replica's scheduler woke "


def _fleet(tmp_path, ledger, sandbox=None, chat_model=None, **serve) -> Fleet:
    agents = tmp_path / "agents"
    agents.mkdir(exist_ok=True)
    config = Config(
        ledger_url=ledger.url,
        agents_dir=agents,
        serve={"reload_seconds": 0.1, "min_interval_seconds": 1, **serve},
    )
    env = sandbox.env() if sandbox is not None else {}
    runtime = Runtime(
        config, ledger=ledger, env=env, chat_model=chat_model, retry_base_seconds=0.01
    )
    return Fleet(config, runtime)


def _rows(ledger, *columns):
    query = select(*(entries.c[name] for name in columns)).order_by(entries.c.id)
    return [tuple(row) for row in ledger.read(lambda c: c.execute(query).all())]


async def _run_for(fleet: Fleet, seconds: float, during=None) -> None:
    await fleet.start()
    try:
        if during is not None:
            await during()
        await asyncio.sleep(seconds)
    finally:
        await fleet.stop(timeout=5)


def test_every_fire_runs_once_at_its_scheduled_second(tmp_path, ledger):
    fleet = _fleet(tmp_path, ledger)
    write_agent(fleet.agents_dir, "tick")
    write_agent(fleet.agents_dir, "tock", every="2s")
    asyncio.run(_run_for(fleet, 4.2))
    rows = _rows(ledger, "agent", "status", "scheduled_for", "trigger_kind", "error")
    query = select(claims.c.agent, claims.c.fire_time, claims.c.done)
    fired = [tuple(f) for f in ledger.read(lambda c: c.execute(query).all())]
    ticks = [f for f in fired if f[0] == "tick"]
    tocks = [f for f in fired if f[0] == "tock"]
    assert 3 <= len(ticks) <= 6 and 1 <= len(tocks) <= 3
    # On a loaded machine the loop may wake late: the fires it skipped are recorded, not lost.
    assert all(r[3] == "schedule" and (r[1] == "ok" or r[4].startswith(LAGGED)) for r in rows)
    assert all(r[2].microsecond == 0 for r in rows)
    ticked = [r[2] for r in rows if r[0] == "tick"]
    assert len(set(ticked)) == len(ticked)  # one entry per fire
    assert all(f[1].second % 2 == 0 for f in tocks)  # anchored: every replica agrees
    assert fleet.stats.claims_won == len(fired) and fleet.stats.claims_lost == 0
    assert all(done for _, _, done in fired)


def test_stable_job_ids_and_hot_reload(tmp_path, ledger):
    fleet = _fleet(tmp_path, ledger)
    path = write_agent(fleet.agents_dir, "watcher", every="1h")

    async def scenario():
        await fleet.start()
        try:
            assert [job for job, _ in fleet.jobs()] == ["watcher#0"]
            write_agent(fleet.agents_dir, "added", every="1h")
            await _until(lambda: "added#0" in dict(fleet.jobs()))
            first = fleet.specs["watcher"].version
            write_agent(fleet.agents_dir, "watcher", body="description: now hourly\n", every="2h")
            await _until(lambda: fleet.specs["watcher"].version != first)
            assert [job for job, _ in fleet.jobs()].count("watcher#0") == 1
            # A broken edit keeps the last good version, and says where the error is.
            good = fleet.specs["watcher"].version
            path.write_text(path.read_text() + "contxt: []\n", encoding="utf-8")
            await _until(lambda: fleet.problems)
            assert "watcher.yaml:" in fleet.problems[0] and "contxt" in fleet.problems[0]
            assert fleet.specs["watcher"].version == good and "watcher#0" in dict(fleet.jobs())
            (fleet.agents_dir / "added.yaml").unlink()
            await _until(lambda: "added#0" not in dict(fleet.jobs()))
            assert "added" not in fleet.specs
        finally:
            await fleet.stop()

    started = time.monotonic()
    asyncio.run(scenario())
    assert time.monotonic() - started < 15


async def _until(condition, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("the fleet did not change within 5 seconds")
        await asyncio.sleep(0.05)


def test_a_fire_later_than_the_grace_time_is_recorded_missed(tmp_path, ledger):
    fleet = _fleet(tmp_path, ledger, misfire_grace_seconds=1)
    write_agent(fleet.agents_dir, "late", every="1h")

    async def scenario():
        await fleet.start()
        try:
            late = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=30)
            earlier = late - timedelta(hours=1)
            await fleet._fire("late#0", [earlier, late])
        finally:
            await fleet.stop()

    asyncio.run(scenario())
    [(status, error, model_calls)] = _rows(ledger, "status", "error", "model_calls")
    assert status == "missed" and model_calls == 0
    assert re.search(r"started 3\ds late, beyond the grace time of 1s", error)
    assert "1 earlier fires coalesced" in error


def test_never_two_runs_of_one_agent_at_once(tmp_path, ledger):
    slow = ScriptedChatModel(responses=["done"] * 10, latency=1.6)
    fleet = _fleet(tmp_path, ledger, chat_model=slow)
    write_agent(fleet.agents_dir, "slow", model="scripted")
    asyncio.run(_run_for(fleet, 3.5))
    rows = _rows(ledger, "status", "error", "scheduled_for")
    ran = [r for r in rows if r[0] == "ok"]
    missed = [r for r in rows if r[0] == "missed"]
    assert ran and missed
    held = "the previous fire of this agent was still in progress: run "
    assert all(r[1].startswith((held, "this replica was stopping")) for r in missed), missed
    assert len({r[2] for r in rows}) == len(rows)


def test_a_crash_looping_agent_backs_off_and_the_others_keep_running(tmp_path, ledger, sandbox):
    sandbox.jira_faults.fail_next(10_000, status=404)
    fleet = _fleet(tmp_path, ledger, sandbox=sandbox, backoff_after_failures=2)
    write_agent(
        fleet.agents_dir, "broken", body="context:\n  - jira.issue: {key: PAY-1, comments: 0}\n"
    )
    write_agent(fleet.agents_dir, "healthy")
    asyncio.run(_run_for(fleet, 4.5))
    rows = _rows(ledger, "agent", "status", "error")
    broken = [r for r in rows if r[0] == "broken"]
    assert [r[1] for r in broken[:2]] == ["failed", "failed"]
    held = ("backing off after 2 failed runs", LAGGED)  # a loop that woke late records it too
    assert all(r[1] == "missed" and any(h in r[2] for h in held) for r in broken[2:])
    assert len(broken) >= 3
    assert sum(1 for r in rows if r[0] == "healthy" and r[1] == "ok") >= 3


def test_fires_due_while_down_are_coalesced_into_one_run(tmp_path, ledger):
    fleet = _fleet(tmp_path, ledger, misfire_grace_seconds=1)
    write_agent(fleet.agents_dir, "hourly", every="1h")
    now = datetime.now(UTC)
    hour = now.replace(minute=0, second=0, microsecond=0)
    if now - hour < timedelta(seconds=3):  # the latest fire must be late beyond the grace time
        time.sleep(3 - (now - hour).total_seconds())
    then = hour - timedelta(hours=3)
    run_id = ledger.open_run("hourly", trigger_kind="schedule", scheduled_for=then)
    ledger.close_run(run_id, "ok")
    asyncio.run(_run_for(fleet, 0.3))
    rows = _rows(ledger, "status", "scheduled_for", "error")
    assert len(rows) == 2
    status, fire, error = rows[1]
    assert fire == then + timedelta(hours=3)  # the latest due fire stands for all three
    assert status == "missed" and "2 earlier fires coalesced" in error


def test_shutdown_waits_then_interrupts(tmp_path, ledger):
    stuck = ScriptedChatModel(responses=["never"], latency=30)
    fleet = _fleet(tmp_path, ledger, chat_model=stuck)
    write_agent(fleet.agents_dir, "stuck", model="scripted")

    async def scenario():
        await fleet.start()
        await _until(lambda: fleet._running)
        started = time.monotonic()
        await fleet.stop(timeout=0.3)
        return time.monotonic() - started

    waited = asyncio.run(scenario())
    assert 0.3 <= waited < 5
    [(status, error)] = _rows(ledger, "status", "error")
    assert status == "interrupted" and error == "cancelled while running"


def test_a_second_replica_on_sqlite_refuses_with_the_reason(tmp_path):
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    first = single_replica_lock(url)
    try:
        with pytest.raises(ConfigError) as caught:
            single_replica_lock(url)
    finally:
        first.close()
    message = str(caught.value)
    assert f"another meshagent serve (pid {os.getpid()}) already runs the fleet" in message
    assert "set ledger_url to a PostgreSQL database" in message
    single_replica_lock(url).close()  # free again once the first one stopped


def test_a_fire_refused_before_its_run_starts_closes_its_entry_as_failed(tmp_path, ledger, caplog):
    fleet = _fleet(tmp_path, ledger)  # no OPENAI_API_KEY in the runtime's environment
    write_agent(fleet.agents_dir, "keyless", model="openai:gpt-4.1-mini")
    write_agent(fleet.agents_dir, "fine")
    asyncio.run(_run_for(fleet, 2.2))
    rows = _rows(ledger, "agent", "status", "error", "input_tokens")
    keyless = [r for r in rows if r[0] == "keyless"]
    keyless = [r for r in keyless if not (r[1] == "missed" and r[2].startswith(LAGGED))]
    assert keyless and all(r[1] == "failed" for r in keyless)  # none left running
    assert keyless[0][2] == "model 'openai:gpt-4.1-mini' needs an API key: set OPENAI_API_KEY"
    assert {r[1] for r in rows if r[0] == "fine"} == {"ok"}  # the others ran
    assert fleet.stats.runs[("keyless", "failed")] == len(keyless)
    assert "Traceback" not in caplog.text


def test_a_claimed_entry_another_replica_expired_is_left_as_it_is(tmp_path, ledger, caplog):
    # A replica too busy to renew its lease in time: another one's expiry closed the entry as
    # interrupted before this one closed it as missed. The fire is over either way.
    fleet = _fleet(tmp_path, ledger)
    spec = load_agent(write_agent(fleet.agents_dir, "late"), min_interval_seconds=1)
    run_id = ledger.open_run("late", trigger_kind="schedule")
    ledger.close_run(run_id, "interrupted", error="replica r2 stopped renewing its claim")
    fire = datetime(2026, 12, 2, 9, tzinfo=UTC)
    fleet._close_missed(spec, run_id, fire, "started 70s late")
    assert ledger.entry(run_id)["status"] == "interrupted"
    assert fleet.stats.runs[("late", "missed")] == 0
    assert f"run {run_id} is closed (interrupted)" in caplog.text


def test_a_reloaded_agent_keeps_its_pending_fire(tmp_path, ledger):
    # A fire already due when the file changed (a loop that lags) is not dropped by the reload.
    fleet = _fleet(tmp_path, ledger)
    write_agent(fleet.agents_dir, "hourly", every="1h")

    async def scenario():
        await fleet.start()
        try:
            assert fleet._scheduler is not None
            fleet._scheduler.pause()  # as if the loop had not come round to it yet
            due = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=1)
            fleet._scheduler.modify_job("hourly#0", next_run_time=due)
            write_agent(fleet.agents_dir, "hourly", body="description: reworded\n", every="1h")
            await _until(lambda: fleet.specs["hourly"].description == "reworded")
            assert dict(fleet.jobs())["hourly#0"] == due
            fleet._scheduler.resume()
            await _until(lambda: _rows(ledger, "scheduled_for") == [(due,)])
        finally:
            await fleet.stop()

    asyncio.run(scenario())
