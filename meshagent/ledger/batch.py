"""Writing finished runs in batches: one transaction for many entries, nothing acknowledged early.

`write_records` stores a batch atomically and idempotently (by run id), so a retry after a lost
commit answer neither loses nor doubles an entry. `BatchWriter` gathers records from many
callers and writes them every `max_entries` records or `max_delay` seconds; a record counts as
recorded only when its future is done or `flush()` has returned.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Sequence
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, or_, select

from meshagent.exceptions import LedgerError
from meshagent.ledger import chain, rollup, rows
from meshagent.ledger.records import RunRecord
from meshagent.ledger.schema import entries, outcomes

if TYPE_CHECKING:
    from meshagent.ledger.store import Ledger

__all__ = ["BatchWriter", "write_records"]


def write_records(ledger: Ledger, records: Sequence[RunRecord]) -> list[str]:
    """Store finished runs as closed, chained entries with their outcomes, in one transaction."""
    for record in records:
        record.run_id = record.run_id or str(uuid.uuid4())
    prepared = [rows.record_row(record, record.run_id or "") for record in records]
    ids = [row["run_id"] for row in prepared]
    keys = [row["idempotency_key"] for row in prepared if row["idempotency_key"]]

    def work(connection: Connection) -> None:
        seq, previous = chain.lock_head(connection)
        match = entries.c.run_id.in_(ids)
        if keys:
            match = or_(match, entries.c.idempotency_key.in_(keys))
        seen = connection.execute(select(entries.c.run_id, entries.c.idempotency_key).where(match))
        done = {value for pair in seen for value in pair if value}
        new_rows, new_outcomes, deltas = [], [], {}
        for record, row in zip(records, prepared, strict=True):
            if row["run_id"] in done or (row["idempotency_key"] or "") in done:
                continue
            seq += 1
            digest = chain.entry_hash(seq, previous, row)
            new_rows.append({**row, "seq": seq, "prev_hash": previous, "entry_hash": digest})
            previous = digest
            now = rows.now()
            unique = {(o.kind, o.ref): o for o in record.outcomes}
            new_outcomes += [
                {
                    "run_id": row["run_id"],
                    "kind": o.kind,
                    "ref": o.ref,
                    "url": o.url,
                    "created_at": now,
                }
                for o in unique.values()
            ]
            delivered = any(o.delivered for o in unique.values())
            sums = rollup.entry_sums(row, has_outcome=delivered, pos=0, neg=0)
            rollup.add_delta(deltas, rollup.daily_key(row), sums)
        if not new_rows:
            return
        connection.execute(entries.insert(), new_rows)
        if new_outcomes:
            connection.execute(outcomes.insert(), new_outcomes)
        rollup.apply_deltas(connection, deltas)
        chain.advance_head(connection, seq, previous)

    if records:
        ledger.transact(work, what="write a batch of runs")
    return ids


class BatchWriter:
    """Gathers finished runs from many callers and writes them in batches from one thread."""

    def __init__(self, ledger: Ledger, *, max_entries: int = 1000, max_delay: float = 0.05):
        self.ledger = ledger
        self.max_entries = max_entries
        self.max_delay = max_delay
        self._pending: list[tuple[RunRecord, Future[str]]] = []
        self._cond = threading.Condition()
        self._closed = False
        self._urgent = False
        self._thread = threading.Thread(target=self._run, name="ledger-batch", daemon=True)
        self._thread.start()

    def submit(self, record: RunRecord) -> Future[str]:
        """Queue a finished run; the future gives its run id once it is durable."""
        future: Future[str] = Future()
        with self._cond:
            if self._closed:
                raise LedgerError("the batch writer is closed: open a new one to write runs")
            self._pending.append((record, future))
            if len(self._pending) >= self.max_entries:
                self._cond.notify_all()
        return future

    def flush(self) -> None:
        """Return once every run submitted so far is durable; raises if a write failed."""
        with self._cond:
            waiting = [future for _, future in self._pending]
            self._urgent = True
            self._cond.notify_all()
        for future in waiting:
            future.result()

    def close(self) -> None:
        """Write what is pending, stop the writer thread and raise if a write failed."""
        try:
            self.flush()
        finally:
            with self._cond:
                self._closed = True
                self._cond.notify_all()
            self._thread.join()

    def __enter__(self) -> BatchWriter:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def _run(self) -> None:
        while True:
            with self._cond:
                if not self._pending and not self._closed:
                    self._cond.wait()
                if len(self._pending) < self.max_entries and not (self._closed or self._urgent):
                    self._cond.wait(self.max_delay)
                batch = self._pending[: self.max_entries]
                del self._pending[: self.max_entries]
                self._urgent = bool(self._pending) and self._urgent
                if not batch and self._closed:
                    return
            self._write(batch)

    def _write(self, batch: list[tuple[RunRecord, Future[Any]]]) -> None:
        if not batch:
            return
        try:
            ids = write_records(self.ledger, [record for record, _ in batch])
        except BaseException as exc:  # noqa: BLE001 - handed to every waiting caller
            for _, future in batch:
                future.set_exception(exc)
            return
        for (_, future), run_id in zip(batch, ids, strict=True):
            future.set_result(run_id)
