"""Group commit: the entry writes of many concurrent runs, committed together by one thread.

Callers hand in steps (see `lifecycle`) and get a future. The writer takes every step waiting,
runs them in one transaction and commits, and only then resolves their futures: a caller is told
its write is recorded once it is durable, never before (an entry's opening, written with
``durable=False``, once committed: its transaction waits for the disk only when another step in
it needs to, see `Ledger.open_run`). While one transaction commits, the next
callers queue, so a thousand runs opening at once cost a few commits, not a thousand. A step that
fails on its own (a closed entry, a value the database refuses) fails only its caller, and the
others are committed without it; a transaction that cannot commit fails every caller in it.
Steps of one kind in a transaction run together, in one statement on PostgreSQL
(`lifecycle.run_steps`); when they cannot, the transaction runs again with each step alone.

The writer runs beside an event loop that may have requests to answer quickly (Slack's acks),
and its Python work takes the interpreter from that loop in slices. Given an ``idle`` event
(`yield_to`), it lets them go first: while the event is clear it ends its transaction after the
step it is running, and starts the next once the event is set again, or after ``max_wait``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy.exc import DBAPIError

from meshagent.config import mask_url
from meshagent.exceptions import LedgerError
from meshagent.ledger.engine import first_line, is_transient
from meshagent.ledger.lifecycle import Apart, Step, run_steps

if TYPE_CHECKING:
    from meshagent.ledger.access import LedgerAccess

__all__ = ["GroupCommit"]

T = TypeVar("T")
log = logging.getLogger(__name__)


@dataclass
class _Pending:
    """One caller's step: its answer goes to ``future`` (`submit`), or to ``waiter`` on its event
    loop (`write`)."""

    step: Step[Any]
    what: str
    durable: bool = True
    future: Future[Any] | None = None
    waiter: asyncio.Future[Any] | None = None
    loop: asyncio.AbstractEventLoop | None = None

    def wanted(self) -> bool:
        """Whether the caller still waits (a cancelled task gave up before its turn)."""
        if self.future is not None:
            return self.future.set_running_or_notify_cancel()
        return self.waiter is not None and not self.waiter.done()  # read across threads: a hint


class _StepFailed(Exception):
    """One step's own failure: the transaction is rolled back and retried without it."""

    def __init__(self, index: int, error: BaseException) -> None:
        super().__init__(str(error))
        self.index = index
        self.error = error


class GroupCommit:
    """One writer thread that commits the steps of many callers in shared transactions."""

    def __init__(self, ledger: LedgerAccess, *, max_steps: int = 1000) -> None:
        self.ledger = ledger
        self.max_steps = max_steps
        self.transactions = 0  # how many transactions committed (for tests and benchmarks)
        self._pending: list[_Pending] = []
        self._cond = threading.Condition()
        self._closed = False
        self._idle: threading.Event | None = None
        self._max_wait = 0.0
        self._thread = threading.Thread(target=self._run, name="ledger-group-commit", daemon=True)
        self._thread.start()

    def yield_to(self, idle: threading.Event, *, max_wait: float) -> None:
        """Let other work go first while ``idle`` is clear: the writer commits what it has done
        after the step it is running and waits for ``idle`` before its next transaction, for at
        most ``max_wait`` seconds; after that wait it commits a whole batch whatever ``idle``
        says, so that a steady stream of such work slows the writes but never starves them."""
        self._idle, self._max_wait = idle, max_wait

    def submit(self, step: Step[T], *, what: str, durable: bool = True) -> Future[T]:
        """Queue `step`; its future gives the step's result once its transaction committed."""
        pending = _Pending(step, what, durable, future=Future())
        self._queue(pending)
        return pending.future  # type: ignore[return-value]

    async def write(self, step: Step[T], *, what: str, durable: bool = True) -> T:
        """Run `step` in the next group transaction; returns once it is committed (durable,
        unless every step of that transaction was given with ``durable=False``).

        The answers of one transaction reach each event loop in one call: handing them over one
        by one made the writer wait for the interpreter after each, while the loop was busy.
        """
        loop = asyncio.get_running_loop()
        pending = _Pending(step, what, durable, waiter=loop.create_future(), loop=loop)
        self._queue(pending)
        return await pending.waiter  # type: ignore[misc]

    def _queue(self, pending: _Pending) -> None:
        with self._cond:
            if self._closed:
                raise LedgerError("the ledger is closed: open it again to write")
            self._pending.append(pending)
            self._cond.notify()

    def close(self) -> None:
        """Commit what is queued, then stop the writer thread."""
        with self._cond:
            self._closed = True
            self._cond.notify()
        self._thread.join()

    def _run(self) -> None:
        carried: list[_Pending] = []  # steps a transaction that yielded left for the next
        while True:
            with self._cond:
                while not self._pending and not carried and not self._closed:
                    self._cond.wait()
                if not self._pending and not carried:
                    return
            # What a yielding transaction left goes whole into the next one, at once (that
            # transaction waited for the loop already): a write yields once, for at most
            # max_wait, however often the idle event flickers.
            patient = not carried and self._waited_for_idle()
            with self._cond:
                room = max(self.max_steps - len(carried), 0)
                batch = self._pending[:room]
                del self._pending[:room]
            # A caller that gave up (a cancelled task) before its turn is left out.
            wanted = carried + [p for p in batch if p.wanted()]
            carried = self._commit(wanted, self._busy if patient else None)

    def _busy(self) -> bool:
        """Whether the idle event is clear: other work wants the interpreter now."""
        idle = self._idle
        return idle is not None and not idle.is_set()

    def _waited_for_idle(self) -> bool:
        """Wait for the idle event (if any) unless closing; False when ``max_wait`` ran out."""
        idle = self._idle
        if idle is None or idle.is_set() or self._closed:
            return True
        return idle.wait(self._max_wait)

    def _commit(
        self, batch: list[_Pending], stop: Callable[[], bool] | None = None
    ) -> list[_Pending]:
        """Commit the steps of `batch` and answer their callers; the ones `stop` left out.

        Steps of one kind run together (`lifecycle.run_steps`); when they cannot, the batch runs
        again with each step alone, which says whose step failed.
        """
        together = True
        while batch:
            steps = [pending.step for pending in batch]
            what = " and ".join(dict.fromkeys(pending.what for pending in batch))
            durable = any(pending.durable for pending in batch)
            work = partial(
                run_steps,
                steps=steps,
                stop=stop,
                together=together,
                failed=partial(self._failed, batch),
            )
            try:
                results = self.ledger.transact(work, what=what, durable=durable)
            except Apart as apart:
                log.debug("steps of %s could not run together (%s): each runs alone", what, apart)
                together = False
                continue
            except _StepFailed as failed:
                _answer([(batch.pop(failed.index), failed.error, True)])
                continue
            except BaseException as exc:  # noqa: BLE001 - handed to every caller in it
                _answer([(pending, exc, True) for pending in batch])
                return []
            self.transactions += 1
            done = len(results)
            if stop is not None and stop():
                # Its callers go on on the busy event loop: once it is idle again.
                self._waited_for_idle()
            _answer([(p, result, False) for p, result in zip(batch, results, strict=False)])
            return batch[done:]
        return []

    def _failed(self, batch: list[_Pending], at: int, exc: Exception) -> None:
        """A step's own failure fails its caller alone; a transient one, the transaction."""
        if isinstance(exc, DBAPIError):
            if is_transient(exc):
                raise exc  # the whole transaction is retried
            error = LedgerError(
                f"could not {batch[at].what} in ledger {mask_url(self.ledger.url)}: "
                f"{first_line(exc)}"
            )
            error.__cause__ = exc
            raise _StepFailed(at, error) from exc
        raise _StepFailed(at, exc) from exc


def _answer(answers: list[tuple[_Pending, Any, bool]]) -> None:
    """Give each caller its result (or its exception, when the flag is set): futures at once,
    waiters in one call per event loop."""
    by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[Any], Any, bool]]] = {}
    for pending, value, failed in answers:
        if pending.future is not None:
            if failed:
                pending.future.set_exception(value)
            else:
                pending.future.set_result(value)
        elif pending.loop is not None and pending.waiter is not None:
            by_loop.setdefault(pending.loop, []).append((pending.waiter, value, failed))
    for loop, waiters in by_loop.items():
        with contextlib.suppress(RuntimeError):  # its loop is closed: nobody waits any more
            loop.call_soon_threadsafe(_settle, waiters)


def _settle(waiters: list[tuple[asyncio.Future[Any], Any, bool]]) -> None:
    for waiter, value, failed in waiters:
        if waiter.done():  # cancelled meanwhile
            continue
        if failed:
            waiter.set_exception(value)
        else:
            waiter.set_result(value)
