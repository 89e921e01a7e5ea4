"""A busy machine against the fleet: a lagging loop, runs that just finished, slow closes.

What the fleet promises, whatever the load: no fire is lost without an entry that says so (each
fire has its claim, and the claim names the entry that stands for it), a missed entry's reason is
true and names what held the fire, and nothing blocks a fire but a run in progress.
"""

from __future__ import annotations

import asyncio
import re
import time
from datetime import datetime, timedelta

from sqlalchemy import select

from meshagent.agentfile.loader import scan_agents
from meshagent.config import Config
from meshagent.fleet.scheduler import Fleet
from meshagent.ledger import claims as claims_module
from meshagent.ledger import lifecycle
from meshagent.ledger.schema import claims, entries
from meshagent.ledger.store import Ledger
from meshagent.models import ScriptedChatModel
from meshagent.runtime.runner import Runtime
from tests.serve.conftest import write_agent
from tests.serve.test_fleet import LAGGED as LOOP_LAGGED  # a true reason on a loaded machine
from tests.serve.test_fleet import _fleet, _run_for

STILL_RUNNING = "the previous fire of this agent was still in progress"


def _entries(ledger) -> list[dict]:
    query = select(entries).order_by(entries.c.scheduled_for)
    return [dict(row) for row in ledger.read(lambda c: c.execute(query).mappings().all())]


def _claims(ledger) -> list[tuple]:
    query = select(claims.c.agent, claims.c.fire_time, claims.c.run_id, claims.c.done)
    return [tuple(row) for row in ledger.read(lambda c: c.execute(query).all())]


def _fires(first: datetime, last: datetime, seconds: int) -> list[datetime]:
    step = timedelta(seconds=seconds)
    return [first + step * n for n in range(int((last - first) / step) + 1)]


def _assert_every_fire_accounted_for(ledger, agent: str, seconds: int) -> list[dict]:
    """Every fire from the first to the last has a claim naming a closed entry, and each missed
    entry's count of coalesced fires is the number of claims that name it."""
    rows = [r for r in _entries(ledger) if r["agent"] == agent]
    assert rows, "no entries at all"
    assert ledger.verify().ok  # entries closed as they were claimed are chained like any other
    by_run = {r["run_id"]: r for r in rows}
    claimed = {fire: run_id for name, fire, run_id, _ in _claims(ledger) if name == agent}
    expected = _fires(rows[0]["scheduled_for"], rows[-1]["scheduled_for"], seconds)
    lost = [fire for fire in expected if fire not in claimed]
    assert lost == [], f"{len(lost)} fires have no claim, hence no entry: {lost[:3]}"
    for run_id in set(claimed.values()):
        entry = by_run[run_id]
        assert entry["status"] != "running", entry
        named = sum(1 for r in claimed.values() if r == run_id)
        found = re.search(r"\((\d+) earlier fires coalesced into this one\)", entry["error"] or "")
        assert (int(found.group(1)) if found else 0) == named - 1, (entry["error"], named)
    return rows


def test_a_run_whose_entry_is_closed_blocks_nothing(tmp_path, ledger, monkeypatch):
    # Marking a claim done is slow (a loaded database): the run's entry is closed already.
    finish = claims_module.finish

    def slow_finish(*args, **kwargs):
        time.sleep(1.5)
        return finish(*args, **kwargs)

    monkeypatch.setattr(claims_module, "finish", slow_finish)
    fleet = _fleet(tmp_path, ledger)
    write_agent(fleet.agents_dir, "tick")
    asyncio.run(_run_for(fleet, 4.5))
    rows = _assert_every_fire_accounted_for(ledger, "tick", 1)
    assert len(rows) >= 3
    stopped = [r for r in rows if r["status"] != "ok" and LOOP_LAGGED not in r["error"]]
    assert [(r["status"], r["error"]) for r in stopped] == []


def test_a_slow_close_of_a_missed_fire_does_not_make_the_next_one_busy(
    tmp_path, ledger, sandbox, monkeypatch
):
    # A crash-looping agent backs off: each fire is missed for that reason, and closing each
    # missed entry is slow (before its transaction and inside it). The next fire must still say
    # why it really did not run.
    close_run, close_missed = Ledger.close_run, getattr(claims_module, "close_missed", None)

    def slow_close_run(self, run_id, status, **options):
        if status == "missed":
            time.sleep(1.2)
        return close_run(self, run_id, status, **options)

    def slow_close_missed(*args, **kwargs):
        time.sleep(1.2)
        return close_missed(*args, **kwargs)

    monkeypatch.setattr(Ledger, "close_run", slow_close_run)
    monkeypatch.setattr(claims_module, "close_missed", slow_close_missed, raising=False)
    close_step = lifecycle.close_step

    def slow_close_step(run_id, values, **options):
        step = close_step(run_id, values, **options)
        if values.get("status") != "missed":
            return step

        def slow(connection, batch):
            time.sleep(1.2)
            return step(connection, batch)

        return slow

    monkeypatch.setattr(lifecycle, "close_step", slow_close_step)
    sandbox.jira_faults.fail_next(10_000, status=404)
    fleet = _fleet(tmp_path, ledger, sandbox=sandbox, backoff_after_failures=1)
    write_agent(fleet.agents_dir, "broken", body="context:\n  - jira.issue: {key: PAY-1}\n")
    asyncio.run(_run_for(fleet, 5.5))
    rows = _assert_every_fire_accounted_for(ledger, "broken", 1)
    assert rows[0]["status"] == "failed"
    missed = [r for r in rows[1:] if r["status"] == "missed"]
    assert len(missed) >= 2
    untrue = [r["error"] for r in missed if LOOP_LAGGED not in r["error"]
              and "backing off after 1 failed runs" not in r["error"]]  # fmt: skip
    assert untrue == []


def test_a_loop_that_lags_loses_no_fire_silently(tmp_path, ledger):
    fleet = _fleet(tmp_path, ledger)
    write_agent(fleet.agents_dir, "tick")

    async def block_the_loop():
        await asyncio.sleep(1.2)
        time.sleep(3.5)  # a handler that blocks the event loop: fires come due meanwhile

    asyncio.run(_run_for(fleet, 2.5, during=block_the_loop))
    rows = _assert_every_fire_accounted_for(ledger, "tick", 1)
    coalesced = [r for r in rows if r["status"] == "missed"]
    assert coalesced, [(r["status"], r["error"]) for r in rows]

    # Woken late, it ran the latest fire. On a loaded machine two more true reasons occur: woken
    # later still, beyond the grace time, it ran none; or the latest waited for a run of the
    # agent that the blocked loop had held up.
    def lagged(error: str) -> bool:
        return error.startswith(
            (LOOP_LAGGED, "the previous fire of this agent was still in progress")
        ) or (error.startswith("started ") and "late, beyond the grace time" in error)

    assert all(lagged(r["error"]) for r in coalesced), [r["error"] for r in coalesced]
    assert any("earlier fires coalesced into this one" in r["error"] for r in coalesced)


def test_a_fire_due_while_the_previous_run_ends_still_runs(tmp_path, ledger):
    # Each run lasts a little longer than the interval: the next fire waits for it and runs.
    slow = ScriptedChatModel(responses=["done"] * 10, latency=2.3)
    fleet = _fleet(tmp_path, ledger, chat_model=slow)
    write_agent(fleet.agents_dir, "slow", model="scripted", every="2s")
    asyncio.run(_run_for(fleet, 6.5))
    rows = _assert_every_fire_accounted_for(ledger, "slow", 2)
    assert [r["status"] for r in rows[:2]] == ["ok", "ok"], [
        (r["status"], r["error"]) for r in rows
    ]


def test_a_missed_fire_names_the_run_that_held_it(tmp_path, ledger):
    runs: dict[datetime, tuple[float, float]] = {}
    slow = ScriptedChatModel(responses=["done"] * 10, latency=2.6)
    fleet = _fleet(tmp_path, ledger, chat_model=slow)
    write_agent(fleet.agents_dir, "slow", model="scripted")
    run = fleet.runtime.run

    async def timed(spec, **options):
        started = time.time()
        try:
            return await run(spec, **options)
        finally:
            runs[options["scheduled_for"]] = (started, time.time())

    fleet.runtime.run = timed
    asyncio.run(_run_for(fleet, 4.5))
    rows = _assert_every_fire_accounted_for(ledger, "slow", 1)
    by_run = {r["run_id"]: r for r in rows}
    intervals = sorted(runs.values())
    assert all(
        a[1] <= b[0] for a, b in zip(intervals, intervals[1:], strict=False)
    )  # one at a time
    missed = [r for r in rows if r["status"] == "missed" and "stopping" not in r["error"]
              and LOOP_LAGGED not in r["error"]]  # fmt: skip
    assert missed
    for entry in missed:
        assert entry["error"].startswith(STILL_RUNNING), entry["error"]
        named = re.search(r"run ([0-9a-f-]{36})", entry["error"])
        assert named, entry["error"]
        started, ended = runs[by_run[named.group(1)]["scheduled_for"]]
        # It began before this fire gave up, and still ran when the next fire was due.
        next_due = (entry["scheduled_for"] + timedelta(seconds=1)).timestamp()
        assert started <= entry["finished_at"].timestamp(), entry["error"]
        assert ended >= next_due - 0.25, (entry["error"], ended, next_due)


def test_an_interval_under_the_minimum_is_a_located_error(tmp_path):
    path = write_agent(tmp_path, "chatty", every="30s")
    [issue] = scan_agents([path]).issues
    assert (issue.file, issue.line, issue.column) == (str(path), 7, 12)
    assert str(issue) == (
        f"{path}:7:12: triggers[0].every: '30s' is shorter than the shortest interval allowed, "
        "60s ([serve] min_interval_seconds in meshagent.toml): use a longer interval, or a "
        "schedule"
    )
    assert scan_agents([path], min_interval_seconds=30).issues == []
    fleet = Fleet(Config(agents_dir=tmp_path, ledger_url=f"sqlite:///{tmp_path / 'l.db'}"),
                  Runtime(Config(ledger_url=f"sqlite:///{tmp_path / 'l.db'}")))  # fmt: skip
    fleet.reload(force=True)
    assert fleet.specs == {} and "is shorter than the shortest interval" in fleet.problems[0]
