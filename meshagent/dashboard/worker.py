"""Slow ledger reads (flags, forecasts) in a process of their own, over the same database.

Computing the flags over a big ledger is seconds of Python; in a thread of the process that
serves the pages it holds the GIL, and every page takes three times as long meanwhile. In a
worker process it takes a core of its own, and the pages keep theirs. A ledger that another
process cannot open (SQLite in memory) is read in the calling thread instead.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any, TypeVar

from sqlalchemy.engine import make_url

from meshagent.ledger.store import Ledger

__all__ = ["Worker"]

T = TypeVar("T")

_ledger: Ledger | None = None  # the worker process's own connection to the ledger


@contextlib.contextmanager
def _deaf_to_ctrl_c() -> Iterator[None]:
    """Processes spawned meanwhile ignore SIGINT from their first instruction (an ignored signal
    survives exec): Ctrl-C reaches the whole process group, and a worker still importing would
    print a KeyboardInterrupt traceback. The parent stops its worker itself."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _open(url: str, parent: int) -> None:
    global _ledger
    # Ctrl-C reaches the whole process group: the parent stops this worker, without a traceback.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _ledger = Ledger.open(url, migrate=False)
    threading.Thread(target=_exit_with, args=(parent,), name="parent-watch", daemon=True).start()


def _exit_with(parent: int) -> None:
    """End this worker when the process that started it is gone (killed, even with SIGKILL).

    A pool's worker waits on its queue forever: without this, a `meshagent serve` killed
    with SIGKILL would leave its workers behind, each holding a connection to the ledger.
    """
    while os.getppid() == parent:
        time.sleep(1.0)
    os._exit(0)


def _call(read: Callable[..., T], args: tuple[Any, ...], options: dict[str, Any]) -> T:
    assert _ledger is not None, "the worker process opens the ledger when it starts"
    return read(_ledger, *args, **options)


def shareable(url: str) -> bool:
    """Whether another process can open the same ledger at `url`."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return True
    return bool(parsed.database) and parsed.database != ":memory:" and "mode=memory" not in url


class Worker:
    """Runs `read(ledger, ...)` in one worker process (started when first needed)."""

    def __init__(self, ledger: Ledger) -> None:
        self._ledger = ledger
        self._separate = shareable(ledger.url)
        self._pool: ProcessPoolExecutor | None = None
        self._booting: Future[int] | None = None
        self._lock = threading.Lock()

    def run(self, read: Callable[..., T], /, *args: Any, **options: Any) -> T:
        """`read(ledger, *args, **options)`, in the worker process when there is one.

        `read` and its arguments cross to the worker by pickling: a module-level function and
        plain values. Blocks the calling thread (without holding the GIL) until it is done.
        """
        if not self._separate:
            return read(self._ledger, *args, **options)
        pool = self._executor()
        try:
            return pool.submit(_call, read, args, options).result()
        except BrokenProcessPool:
            with self._lock:  # the worker died (killed, out of memory): start another next time
                if self._pool is pool:
                    self._pool = None
            raise

    def start(self) -> None:
        """Start the worker process now rather than on the first read (it takes a second)."""
        if self._separate:
            with _deaf_to_ctrl_c():
                self._booting = self._executor().submit(int)

    def ready(self) -> bool:
        """Whether the process `start` began has booted (or failed to: a read will say so)."""
        return self._booting is None or self._booting.done()

    def _executor(self) -> ProcessPoolExecutor:
        with self._lock:
            if self._pool is None:
                self._pool = ProcessPoolExecutor(
                    1,
                    mp_context=multiprocessing.get_context("spawn"),
                    initializer=_open,
                    initargs=(self._ledger.url, os.getpid()),
                )
            return self._pool

    def close(self) -> None:
        """Stop the worker process, abandoning what it computes."""
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is None:
            return
        processes = list(getattr(pool, "_processes", {}).values())
        pool.shutdown(wait=False, cancel_futures=True)
        for process in processes:  # a computation can take seconds: do not wait for it
            process.terminate()
