"""Group commit: the entry writes of many concurrent runs, committed together by one thread.

Callers hand in steps (see `lifecycle`) and get a future. The writer takes every step waiting,
runs them in one transaction and commits, and only then resolves their futures: a caller is told
its write is recorded once it is durable, never before (an entry's opening, written with
``durable=False``, once committed: its transaction waits for the disk only when another step in
it needs to, see `Ledger.open_run`). While one transaction commits, the next
callers queue, so a thousand runs opening at once cost a few commits, not a thousand. A step that
fails on its own (a closed entry, a value the database refuses) fails only its caller, and the
others are committed without it; a transaction that cannot commit fails every caller in it.
"""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import Future
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy import Connection
from sqlalchemy.exc import DBAPIError

from meshagent.config import mask_url
from meshagent.exceptions import LedgerError
from meshagent.ledger.engine import first_line, is_transient
from meshagent.ledger.lifecycle import Batch, Step, run_steps

if TYPE_CHECKING:
    from meshagent.ledger.store import Ledger

__all__ = ["GroupCommit"]

T = TypeVar("T")


@dataclass
class _Pending:
    step: Step[Any]
    what: str
    durable: bool = True
    future: Future[Any] = field(default_factory=Future)


class _StepFailed(Exception):
    """One step's own failure: the transaction is rolled back and retried without it."""

    def __init__(self, index: int, error: BaseException) -> None:
        super().__init__(str(error))
        self.index = index
        self.error = error


class GroupCommit:
    """One writer thread that commits the steps of many callers in shared transactions."""

    def __init__(self, ledger: Ledger, *, max_steps: int = 1000) -> None:
        self.ledger = ledger
        self.max_steps = max_steps
        self.transactions = 0  # how many transactions committed (for tests and benchmarks)
        self._pending: list[_Pending] = []
        self._cond = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="ledger-group-commit", daemon=True)
        self._thread.start()

    def submit(self, step: Step[T], *, what: str, durable: bool = True) -> Future[T]:
        """Queue `step`; its future gives the step's result once its transaction committed."""
        pending = _Pending(step, what, durable)
        with self._cond:
            if self._closed:
                raise LedgerError("the ledger is closed: open it again to write")
            self._pending.append(pending)
            self._cond.notify()
        return pending.future

    async def write(self, step: Step[T], *, what: str, durable: bool = True) -> T:
        """Run `step` in the next group transaction; returns once it is committed (durable,
        unless every step of that transaction was given with ``durable=False``)."""
        return await asyncio.wrap_future(self.submit(step, what=what, durable=durable))

    def close(self) -> None:
        """Commit what is queued, then stop the writer thread."""
        with self._cond:
            self._closed = True
            self._cond.notify()
        self._thread.join()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._pending and not self._closed:
                    self._cond.wait()
                if not self._pending:
                    return
                batch = self._pending[: self.max_steps]
                del self._pending[: self.max_steps]
            # A caller that gave up (a cancelled task) before its turn is left out.
            self._commit([p for p in batch if p.future.set_running_or_notify_cancel()])

    def _commit(self, batch: list[_Pending]) -> None:
        while batch:
            steps = [self._guarded(at, pending) for at, pending in enumerate(batch)]
            what = " and ".join(dict.fromkeys(pending.what for pending in batch))
            durable = any(pending.durable for pending in batch)
            try:
                results = self.ledger.transact(
                    partial(run_steps, steps=steps), what=what, durable=durable
                )
            except _StepFailed as failed:
                batch.pop(failed.index).future.set_exception(failed.error)
                continue
            except BaseException as exc:  # noqa: BLE001 - handed to every caller in it
                for pending in batch:
                    pending.future.set_exception(exc)
                return
            self.transactions += 1
            for pending, result in zip(batch, results, strict=True):
                pending.future.set_result(result)
            return

    def _guarded(self, at: int, pending: _Pending) -> Step[Any]:
        url = self.ledger.url

        def step(connection: Connection, batch: Batch) -> Any:
            try:
                return pending.step(connection, batch)
            except DBAPIError as exc:
                if is_transient(exc):
                    raise  # the whole transaction is retried
                error = LedgerError(
                    f"could not {pending.what} in ledger {mask_url(url)}: {first_line(exc)}"
                )
                error.__cause__ = exc
                raise _StepFailed(at, error) from exc
            except Exception as exc:
                raise _StepFailed(at, exc) from exc

        return step
