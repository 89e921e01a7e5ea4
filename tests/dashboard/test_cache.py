"""The memo of slow results: fresh per ledger version, the old result while a new one computes."""

from __future__ import annotations

import threading
import time

import pytest

from meshagent.dashboard.cache import Memo, ledger_version
from meshagent.ledger import Ledger

from .world import MONDAY, TEAMS, run


def test_a_result_is_computed_once_per_version():
    memo = Memo()
    calls = []

    def compute() -> int:
        calls.append(1)
        return len(calls)

    try:
        assert memo.get("k", 1, compute, wait=5).value == 1
        assert memo.get("k", 1, compute, wait=5).value == 1
        answer = memo.get("k", 2, compute, wait=5)
        assert (answer.value, answer.fresh) == (2, True) and len(calls) == 2
    finally:
        memo.close()


def test_a_slow_result_shows_the_previous_one_until_it_is_ready():
    memo = Memo()
    gate = threading.Event()
    try:
        assert memo.get("k", 1, lambda: "old", wait=5).value == "old"

        def slow() -> str:
            gate.wait(5)
            return "new"

        waiting = memo.get("k", 2, slow, wait=0.01)
        assert (waiting.value, waiting.fresh, waiting.pending) == ("old", False, True)
        assert waiting.as_of is not None
        assert memo.get("k", 2, slow, wait=0.01).value == "old"  # not started twice
        gate.set()
        assert memo.get("k", 2, slow, wait=5).value == "new"
    finally:
        memo.close()


def test_a_result_slower_than_the_budget_is_not_waited_for_nor_recomputed_at_once():
    memo = Memo(rest=1.0)  # a result that takes s seconds waits s seconds before the next
    gate = threading.Event()
    try:

        def slow(value: str) -> str:
            time.sleep(0.3)
            return value

        def new() -> str:
            gate.wait(5)
            return "new"

        assert memo.get("k", 1, lambda: slow("old"), wait=5).value == "old"
        started = time.monotonic()
        answer = memo.get("k", 2, new, wait=0.2)
        assert time.monotonic() - started < 0.1  # it took 0.3 s last time: no use waiting 0.2
        assert (answer.value, answer.fresh) == ("old", False)
        assert memo.settle(0) and memo.get("k", 2, new, wait=0).value == "old"  # not started
        time.sleep(0.4)  # rested (a little longer than) as long as it took
        assert memo.get("k", 2, new, wait=0.2).value == "old"  # started, not waited for
        assert not memo.settle(0.05)
        gate.set()
        assert memo.settle(5)
        assert memo.get("k", 2, lambda: "unused", wait=0).value == "new"
        quick = memo.get("k", 3, lambda: "newer", wait=5)  # quick last time: waited for
        assert (quick.value, quick.fresh) == ("newer", True)
    finally:
        memo.close()


def test_a_first_result_not_ready_in_time_is_pending():
    memo = Memo()
    gate = threading.Event()
    try:
        answer = memo.get("k", 1, lambda: gate.wait(5) and "x", wait=0.01)
        assert (answer.value, answer.as_of, answer.pending) == (None, None, True)
        gate.set()
        assert memo.get("k", 1, lambda: "unused", wait=5).value == "x"
    finally:
        memo.close()


def test_a_failed_computation_is_tried_again():
    memo = Memo()
    attempts = []

    def flaky() -> str:
        attempts.append(1)
        if len(attempts) == 1:
            raise RuntimeError("database went away")
        return "ok"

    try:
        with pytest.raises(RuntimeError, match="went away"):
            memo.get("k", 1, flaky, wait=5)
        assert memo.get("k", 1, flaky, wait=5).value == "ok"
    finally:
        memo.close()


def test_the_version_moves_with_entries_outcomes_and_votes(tmp_path):
    with Ledger.open(f"sqlite:///{tmp_path / 'l.db'}") as ledger:
        versions = [ledger.read(ledger_version)]
        (run_id,) = ledger.write_records([run("a", TEAMS["big"][0], "big", MONDAY)])
        versions.append(ledger.read(ledger_version))
        ledger.add_outcome(run_id, "jira.issue", "OPS-1")
        versions.append(ledger.read(ledger_version))
        ledger.add_feedback(run_id, "x", 1)
        versions.append(ledger.read(ledger_version))
        ledger.add_feedback(run_id, "x", -1)
        versions.append(ledger.read(ledger_version))
        assert len(set(versions)) == len(versions)
