"""The worker process that computes flags and forecasts away from the pages' GIL."""

from __future__ import annotations

import multiprocessing
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

from meshagent.dashboard.worker import Worker, shareable
from meshagent.ledger import Ledger


def whose(ledger: Ledger, *, plus: int = 0) -> tuple[int, int, str]:
    """The process that ran this read, the ledger's entry count (+ plus), and its URL."""
    return os.getpid(), ledger.count() + plus, ledger.url


def sleeps(ledger: Ledger) -> None:
    time.sleep(30)


def test_reads_run_in_one_worker_process_over_the_same_ledger(world):
    worker = Worker(world.ledger)
    try:
        pid, count, url = worker.run(whose, plus=1)
        assert pid != os.getpid() and url == world.url
        assert count == world.ledger.count() + 1
        assert worker.run(whose)[0] == pid  # started once
    finally:
        worker.close()


def test_an_in_memory_ledger_is_read_in_the_calling_process():
    assert not shareable("sqlite://") and not shareable("sqlite:///:memory:")
    assert shareable("sqlite:////tmp/ledger.db") and shareable("postgresql+psycopg://h/db")
    with Ledger.open("sqlite://") as ledger:
        assert Worker(ledger).run(whose)[:2] == (os.getpid(), 0)


def test_close_stops_a_computation_in_progress(world):
    worker = Worker(world.ledger)
    pid = worker.run(whose)[0]
    errors: list[BaseException] = []

    def run() -> None:
        try:
            worker.run(sleeps)
        except BaseException as exc:  # noqa: BLE001 - whatever stops it is what we check
            errors.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    time.sleep(0.3)
    started = time.monotonic()
    worker.close()
    thread.join(10)
    assert not thread.is_alive() and time.monotonic() - started < 5
    assert errors, "the abandoned read ends with an error, not a result"
    deadline = time.monotonic() + 5
    while pid in _children() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert pid not in _children()


def _children() -> set[int | None]:
    return {child.pid for child in multiprocessing.active_children()}


def test_start_spawns_the_process_before_the_first_read(world):
    before = _children()
    worker = Worker(world.ledger)
    try:
        worker.start()
        deadline = time.monotonic() + 10
        while not _children() - before and time.monotonic() < deadline:
            time.sleep(0.05)
        (pid,) = _children() - before
        assert worker.run(whose)[0] == pid
    finally:
        worker.close()


CHILD = textwrap.dedent(
    """
    import sys, time
    from meshagent.ledger import Ledger
    from meshagent.dashboard.worker import Worker
    from tests.dashboard.test_worker import whose

    worker = Worker(Ledger.open(sys.argv[1]))
    print(worker.run(whose)[0], flush=True)
    time.sleep(600)
    """
)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:  # a zombie only waits to be reaped: gone
            return stat.read().split(") ", 1)[1][0] != "Z"
    except FileNotFoundError:
        return False


def test_the_worker_ends_when_the_process_that_started_it_is_killed(tmp_path):
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    with subprocess.Popen(
        [sys.executable, "-c", CHILD, url], stdout=subprocess.PIPE, text=True, cwd=root
    ) as child:
        try:
            worker_pid = int(child.stdout.readline())
            assert worker_pid != child.pid and _alive(worker_pid)
            child.send_signal(signal.SIGKILL)
            child.wait(timeout=10)
            deadline = time.monotonic() + 15
            while _alive(worker_pid) and time.monotonic() < deadline:
                time.sleep(0.1)
            assert not _alive(worker_pid), "the worker outlived the process that started it"
        finally:
            child.kill()
