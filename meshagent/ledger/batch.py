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

from sqlalchemy import Connection, String, any_, bindparam, or_, select
from sqlalchemy.dialects.postgresql import ARRAY

from meshagent.exceptions import LedgerError
from meshagent.ledger import chain, rollup, rows
from meshagent.ledger.engine import executemany
from meshagent.ledger.records import RunRecord
from meshagent.ledger.schema import entries, outcomes

if TYPE_CHECKING:
    from meshagent.ledger.access import LedgerAccess

__all__ = ["BatchWriter", "write_records"]

_INSERT_ENTRIES = entries.insert()
_INSERT_OUTCOMES = outcomes.insert()
# SQLite allows 32766 variables in a statement: membership is asked this many values at a time.
_SQLITE_CHUNK = 500
# PostgreSQL gets the batch's ids as one array: one statement text whatever the batch size.
_PG_RECORDED = select(entries.c.run_id, entries.c.idempotency_key).where(
    or_(
        entries.c.run_id == any_(bindparam("ids", type_=ARRAY(String))),
        entries.c.idempotency_key == any_(bindparam("keys", type_=ARRAY(String))),
    )
)


def write_records(ledger: LedgerAccess, records: Sequence[RunRecord]) -> list[str]:
    """Store finished runs as closed, chained entries with their outcomes, in one transaction."""
    for record in records:
        record.run_id = record.run_id or str(uuid.uuid4())
    prepared = [rows.record_row(record, record.run_id or "") for record in records]
    # Everything that depends on a run alone is worked out before the chain head is locked.
    facts = [chain.facts_json(row) for row in prepared]
    produced = [list({(o.kind, o.ref): o for o in record.outcomes}.values()) for record in records]
    sums = [
        (
            rollup.daily_key(row),
            rollup.entry_sums(row, has_outcome=any(o.delivered for o in made), pos=0, neg=0),
        )
        for row, made in zip(prepared, produced, strict=True)
    ]
    ids = [row["run_id"] for row in prepared]
    keys = [row["idempotency_key"] for row in prepared if row["idempotency_key"]]

    def work(connection: Connection) -> None:
        seq, previous = chain.lock_head(connection)
        done = _recorded(connection, ids, keys)
        new_rows, new_outcomes, deltas = [], [], {}
        now = rows.now()
        for at, row in enumerate(prepared):
            if done and (row["run_id"] in done or (row["idempotency_key"] or "") in done):
                continue
            seq += 1
            digest = chain.chain_hash(seq, previous, facts[at])
            new_rows.append({**row, "seq": seq, "prev_hash": previous, "entry_hash": digest})
            previous = digest
            new_outcomes += [o.row(row["run_id"], row["finished_at"] or now) for o in produced[at]]
            rollup.add_delta(deltas, *sums[at])
        if not new_rows:
            return
        executemany(connection, _INSERT_ENTRIES, new_rows)
        executemany(connection, _INSERT_OUTCOMES, new_outcomes)
        rollup.apply_deltas(connection, deltas)
        chain.advance_head(connection, seq, previous)

    if records:
        ledger.transact(work, what="write a batch of runs")
    return ids


def _recorded(connection: Connection, ids: list[str], keys: list[str]) -> set[str]:
    """The run ids and idempotency keys among `ids` and `keys` that the ledger already holds."""
    if connection.dialect.name == "postgresql":
        return _recorded_postgresql(connection, ids, keys)
    found: set[str] = set()
    for at in range(0, max(len(ids), len(keys)), _SQLITE_CHUNK):
        some_ids, some_keys = ids[at : at + _SQLITE_CHUNK], keys[at : at + _SQLITE_CHUNK]
        match = or_(entries.c.run_id.in_(some_ids), entries.c.idempotency_key.in_(some_keys))
        query = select(entries.c.run_id, entries.c.idempotency_key).where(match)
        found.update(value for pair in connection.execute(query) for value in pair if value)
    return found


def _recorded_postgresql(connection: Connection, ids: list[str], keys: list[str]) -> set[str]:
    """The same on PostgreSQL, planned for this batch's values every time.

    psycopg prepares a statement once it has run five times, and the server may then keep one
    generic plan for all values. A generic plan cannot hash the array, and one made while the
    table was small scans every entry comparing it with each id of the batch: the write rate
    falls as the ledger grows. A plan for the values probes the unique indexes instead.
    """
    custom = (connection.dialect.server_version_info or (0,)) >= (12,)  # plan_cache_mode: 12+
    if custom:
        before = connection.exec_driver_sql(
            "SELECT current_setting('plan_cache_mode'), "
            "set_config('plan_cache_mode', 'force_custom_plan', true)"
        ).scalar_one()
    found = connection.execute(_PG_RECORDED, {"ids": ids, "keys": keys})
    recorded = {value for pair in found for value in pair if value}
    if custom:
        connection.exec_driver_sql(
            "SELECT set_config('plan_cache_mode', %(before)s, true)", {"before": before}
        )
    return recorded


class BatchWriter:
    """Gathers finished runs from many callers and writes them in batches from one thread."""

    def __init__(self, ledger: LedgerAccess, *, max_entries: int = 1000, max_delay: float = 0.05):
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
