"""Results of slow ledger reads (flags, the forecast), kept until the ledger changes.

A result is fresh while the ledger's version (chain head, outcomes, feedback) is the one it was
computed at. When the ledger has moved on, the new result is computed in a background thread;
a page waits for it up to its own time budget and otherwise shows the previous result, marked
with the time it was computed, or says that it is still being computed. A page does not wait
at all for a result whose last computation took longer than its budget (on a busy ledger that
would cost every page its whole budget for nothing), and such a result is computed again only
after a rest, so that on a ledger that changes every second it does not take a core for itself
and slow every page down.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

from sqlalchemy import Connection, func, select

from meshagent.ledger.schema import chain, feedback, outcomes

__all__ = ["Answer", "Memo", "ledger_version"]

T = TypeVar("T")


def ledger_version(connection: Connection) -> tuple[Any, ...]:
    """What changes whenever an entry closes or an outcome or a vote is added or changed."""
    query = select(
        select(func.max(chain.c.seq)).scalar_subquery(),
        select(func.max(outcomes.c.id)).scalar_subquery(),
        select(func.max(feedback.c.id)).scalar_subquery(),
        select(func.max(feedback.c.created_at)).scalar_subquery(),  # a changed vote
    )
    return tuple(connection.execute(query).one())


@dataclass(frozen=True)
class Answer(Generic[T]):
    """A result, or None while it is first computed; `as_of` is when it was computed."""

    value: T | None
    as_of: datetime | None
    fresh: bool

    @property
    def pending(self) -> bool:
        return not self.fresh


@dataclass
class _Slot:
    value: Any = None
    version: Any = None
    as_of: datetime | None = None
    seconds: float = 0.0  # how long the last computation took
    ended: float = 0.0  # when it ended (time.monotonic)
    running: Future[Any] | None = None
    running_version: Any = None


class Memo:
    """Results by key, each recomputed once per ledger version, in at most `workers` threads.

    A result slower than the caller's wait rests `rest` times its computing time between two
    computations (the default keeps the flags over a big ledger from using a core non-stop).
    """

    def __init__(self, *, workers: int = 2, keep: int = 64, rest: float = 9.0) -> None:
        self._slots: dict[Hashable, _Slot] = {}
        self._lock = threading.Lock()
        self._keep = keep
        self._pool: ThreadPoolExecutor | None = None
        self._workers = workers
        self._rest = rest

    def get(
        self, key: Hashable, version: Any, compute: Callable[[], T], *, wait: float
    ) -> Answer[T]:
        """The result for `key` at `version`, waiting at most `wait` seconds for a new one."""
        with self._lock:
            slot = self._slots.get(key)
            if slot is None:
                slot = self._slots[key] = _Slot()
                self._trim()
            if slot.as_of is not None and slot.version == version:
                return Answer(slot.value, slot.as_of, True)
            if slot.as_of is not None and slot.seconds > wait:
                # Not worth waiting for: the last result now, a new one later, computed at most
                # 1 / (1 + rest) of the time so that it does not slow every page down.
                rested = time.monotonic() - slot.ended >= self._rest * slot.seconds
                if slot.running is None and rested:
                    self._start(slot, key, version, compute)
                return Answer(slot.value, slot.as_of, False)
            if slot.running is None or slot.running_version != version:
                self._start(slot, key, version, compute)
            running = slot.running
        try:
            value = running.result(timeout=wait)
        except FutureTimeout:
            with self._lock:
                return Answer(slot.value, slot.as_of, False)
        with self._lock:
            return Answer(value, slot.as_of if slot.version == version else None, True)

    def _start(self, slot: _Slot, key: Hashable, version: Any, compute: Callable[[], T]) -> None:
        slot.running = self._executor().submit(self._compute, key, version, compute)
        slot.running_version = version

    def _compute(self, key: Hashable, version: Any, compute: Callable[[], T]) -> T:
        started = time.monotonic()
        try:
            value = compute()
        except BaseException:
            with self._lock:
                slot = self._slots.get(key)
                if slot is not None and slot.running_version == version:
                    slot.running = None
            raise
        with self._lock:
            slot = self._slots.setdefault(key, _Slot())
            slot.value, slot.version = value, version
            slot.as_of = datetime.now(UTC)
            slot.ended = time.monotonic()
            slot.seconds = slot.ended - started
            if slot.running_version == version:
                slot.running = None
        return value

    def _executor(self) -> ThreadPoolExecutor:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self._workers, thread_name_prefix="dashboard")
        return self._pool

    def _trim(self) -> None:
        while len(self._slots) > self._keep:
            oldest = next(iter(self._slots))
            if self._slots[oldest].running is not None:
                break
            del self._slots[oldest]

    def settle(self, timeout: float) -> bool:
        """Wait until no result is being computed; False if some still is after `timeout`."""
        with self._lock:
            running = [slot.running for slot in self._slots.values() if slot.running is not None]
        try:
            for future in running:
                future.exception(timeout=timeout)
        except FutureTimeout:
            return False
        return True

    def close(self) -> None:
        """Stop the worker threads: computations not begun are dropped, those running are
        waited for (they read the ledger, which its owner closes next)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
