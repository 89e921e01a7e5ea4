"""The writes of an entry's life (open, usage, close), each a step run on one connection.

A step's statements are compiled once per dialect (`engine.execute`): a write costs its SQL, not
Core's statement building. Steps of one transaction share a `Batch`: the chain head is read and
locked once and advanced once, and the rollup rows change once, however many entries close in it.
Every step is idempotent, so a transaction retried after a commit whose answer was lost neither
loses nor doubles a write.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

from sqlalchemy import Connection, and_, bindparam, case, exists, func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite

from meshagent.exceptions import LedgerError
from meshagent.ledger import chain, rollup
from meshagent.ledger.engine import execute, executemany
from meshagent.ledger.records import PLANNED, Event, Outcome
from meshagent.ledger.rows import now
from meshagent.ledger.schema import chain as chain_table
from meshagent.ledger.schema import entries, events, feedback, outcomes

__all__ = [
    "Batch",
    "Step",
    "close_step",
    "insert_outcome",
    "not_open",
    "open_step",
    "run_steps",
    "usage_step",
]

T = TypeVar("T")
Step = Callable[[Connection, "Batch"], T]

_FIND = select(entries.c.run_id).where(
    or_(
        entries.c.run_id == bindparam("find_run_id"),
        entries.c.idempotency_key == bindparam("find_key"),
    )
)
# An entry whose run id or idempotency key is taken is not inserted: one round trip when new.
_INSERT_NEW = {
    "sqlite": sqlite.insert(entries).on_conflict_do_nothing(),
    "postgresql": postgresql.insert(entries).on_conflict_do_nothing(),
}
_UPDATE_RUNNING = update(entries).where(
    entries.c.run_id == bindparam("where_run_id"), entries.c.status == bindparam("where_status")
)
_HEAD = (
    select(chain_table.c.seq, chain_table.c.hash)
    .where(chain_table.c.id == bindparam("head_id"))
    .with_for_update()
)
_ADVANCE = update(chain_table).where(chain_table.c.id == bindparam("head_id"))
# Whether a run has an outcome that is not a plan, and its votes, in one round trip.
_ANNOTATIONS = select(
    exists().where(
        and_(outcomes.c.run_id == bindparam("run_id"), outcomes.c.kind != bindparam("planned"))
    ),
    select(func.coalesce(func.sum(case((feedback.c.vote == 1, 1), else_=0)), 0))
    .where(feedback.c.run_id == bindparam("run_id"))
    .scalar_subquery(),
    select(func.coalesce(func.sum(case((feedback.c.vote == -1, 1), else_=0)), 0))
    .where(feedback.c.run_id == bindparam("run_id"))
    .scalar_subquery(),
)
_INSERT_EVENTS = events.insert()
# A close's update of the running entry, answering in the same round trip what the rollup needs
# (whether the run had a result before this close, and its votes); no row: it was not running.
_RUN_ID = bindparam("where_run_id")
_CLOSE_RUNNING = _UPDATE_RUNNING.returning(
    exists().where(and_(outcomes.c.run_id == _RUN_ID, outcomes.c.kind != bindparam("planned"))),
    *(
        select(func.coalesce(func.sum(case((feedback.c.vote == vote, 1), else_=0)), 0))
        .where(feedback.c.run_id == _RUN_ID)
        .scalar_subquery()
        for vote in (1, -1)
    ),
)
# An outcome unless the run has it already, in one statement, one per set of columns.
_NEW_OUTCOME: dict[tuple[str, ...], Any] = {}


def insert_outcome(connection: Connection, run_id: str, outcome: Outcome) -> bool:
    """Insert `outcome` unless the run already has it (a retry, or added before a close); True
    when inserted."""
    made = outcome.row(run_id, now())
    return execute(connection, _new_outcome(tuple(made)), made).rowcount == 1


def _new_outcome(columns: tuple[str, ...]) -> Any:
    statement = _NEW_OUTCOME.get(columns)
    if statement is None:
        same = exists().where(
            outcomes.c.run_id == bindparam("run_id"),
            outcomes.c.kind == bindparam("kind"),
            outcomes.c.ref == bindparam("ref"),
        )
        row = select(*(bindparam(name, type_=outcomes.c[name].type) for name in columns))
        statement = outcomes.insert().from_select(list(columns), row.where(~same))
        _NEW_OUTCOME[columns] = statement
    return statement


# What a close writes: every column of the entry but its identity, so the row is what was hashed.
_CLOSE_COLUMNS = tuple(c.name for c in entries.columns if c.name not in {"id", "run_id"})


class Batch:
    """What the steps of one transaction share: the chain head, and the rollup changes."""

    def __init__(self) -> None:
        self.head: tuple[int, str] | None = None
        self.moved = False
        self.deltas: rollup.Deltas = {}

    def chain_head(self, connection: Connection) -> tuple[int, str]:
        """The last sequence number and hash, locked until the transaction ends."""
        if self.head is None:
            row = execute(connection, _HEAD, {"head_id": 1}).one()
            self.head = int(row[0]), str(row[1])
        return self.head

    def appended(self, seq: int, digest: str) -> None:
        self.head, self.moved = (seq, digest), True

    def finish(self, connection: Connection) -> None:
        """Write the chain head and the rollup rows the steps changed."""
        if self.moved and self.head is not None:
            seq, digest = self.head
            execute(connection, _ADVANCE, {"seq": seq, "hash": digest, "head_id": 1})
        rollup.apply_deltas(connection, self.deltas)


def run_steps(
    connection: Connection, steps: Sequence[Step[Any]], stop: Callable[[], bool] | None = None
) -> list[Any]:
    """Run `steps` in order in the connection's transaction; their results, in order.

    With `stop`, asked before each step after the first: once it says True, the steps left are
    not run (their results are missing from the end of the list) and the transaction ends with
    the ones that were.
    """
    batch = Batch()
    results = []
    for step in steps:
        if results and stop is not None and stop():
            break
        results.append(step(connection, batch))
    batch.finish(connection)
    return results


def open_step(values: Mapping[str, Any], idempotency_key: str | None) -> Step[tuple[str, bool]]:
    """Insert a running entry unless its run id or idempotency key is recorded: (run id, new)."""
    run_id = values["run_id"]
    find = {"find_run_id": run_id, "find_key": idempotency_key}

    def step(connection: Connection, _batch: Batch) -> tuple[str, bool]:
        if execute(connection, _INSERT_NEW[connection.dialect.name], values).rowcount == 1:
            return run_id, True
        return str(execute(connection, _FIND, find).scalar_one()), False

    return step


def usage_step(run_id: str, values: Mapping[str, Any]) -> Step[None]:
    """Write a running entry's totals so far (totals, so a retried write is harmless)."""
    params = {**values, "where_run_id": run_id, "where_status": "running"}

    def step(connection: Connection, _batch: Batch) -> None:
        if execute(connection, _UPDATE_RUNNING, params).rowcount == 0:
            raise not_open(connection, run_id)

    return step


def close_step(
    run_id: str,
    values: Mapping[str, Any],
    *,
    opened: Mapping[str, Any] | None,
    produced: Sequence[Outcome],
    steps: Sequence[Event] = (),
) -> Step[None]:
    """Close a running entry with `values`, chain it, add its outcomes and events, roll it up.

    `opened` is the entry as this process opened it and last wrote it, when it knows it: then
    the row is not read back, and the update writes every column, so the row is what was hashed.
    """
    attempts: list[str] = []  # the hashes this close computed, one per attempt

    def step(connection: Connection, batch: Batch) -> None:
        seq, previous = batch.chain_head(connection)
        seq += 1
        if opened is not None:
            closed = {**opened, **values}
            digest = chain.entry_hash(seq, previous, closed)
            params = {name: closed.get(name) for name in _CLOSE_COLUMNS}
            params.update(seq=seq, prev_hash=previous, entry_hash=digest)
            params.update(where_run_id=run_id, where_status="running", planned=PLANNED)
            found = execute(connection, _CLOSE_RUNNING, params).first()
            if found is None:
                if _closed_by(connection, run_id, attempts):
                    return  # a previous attempt committed but its answer was lost
                raise not_open(connection, run_id)
            had, pos, neg = found
        else:
            row = (
                connection.execute(
                    select(entries).where(entries.c.run_id == run_id).with_for_update()
                )
                .mappings()
                .one_or_none()
            )
            if row is not None and row["entry_hash"] in attempts:
                return  # a previous attempt committed but its answer was lost
            if row is None or row["status"] != "running":
                raise not_open(connection, run_id)
            closed = {**row, **values}
            digest = chain.entry_hash(seq, previous, closed)
            connection.execute(
                update(entries)
                .where(entries.c.run_id == run_id)
                .values(**values, seq=seq, prev_hash=previous, entry_hash=digest)
            )
            annotations = {"run_id": run_id, "planned": PLANNED}
            had, pos, neg = execute(connection, _ANNOTATIONS, annotations).one()
        attempts.append(digest)
        batch.appended(seq, digest)
        for outcome in produced:  # unless already added (add_outcome before the close)
            insert_outcome(connection, run_id, outcome)
        executemany(connection, _INSERT_EVENTS, event_rows(run_id, steps))
        # What it had before this close, or a result this close added.
        has_outcome = bool(had) or any(outcome.kind != PLANNED for outcome in produced)
        sums = rollup.entry_sums(closed, has_outcome=has_outcome, pos=int(pos), neg=int(neg))
        rollup.add_delta(batch.deltas, rollup.daily_key(closed), sums)

    return step


def event_rows(run_id: str, steps: Sequence[Event]) -> list[dict[str, Any]]:
    """The rows of a run's recorded steps (tool calls, refusals), details cut to 2,000 chars."""
    return [
        {
            "run_id": run_id,
            "at": event.at or now(),
            "kind": event.kind,
            "name": event.name,
            "detail": (event.detail or "")[:2000] or None,
        }
        for event in steps
    ]


def _closed_by(connection: Connection, run_id: str, digests: list[str]) -> bool:
    """Whether the entry was closed by an earlier attempt of this close (it has its hash)."""
    if not digests:
        return False
    found = connection.execute(
        select(entries.c.entry_hash).where(entries.c.run_id == run_id)
    ).scalar()
    return found in digests


def not_open(connection: Connection, run_id: str) -> LedgerError:
    """The error for a write to an entry that is missing or already closed."""
    status = connection.execute(select(entries.c.status).where(entries.c.run_id == run_id)).scalar()
    if status is None:
        return LedgerError(f"run {run_id} is not in the ledger: open it with open_run first")
    return LedgerError(f"run {run_id} is closed ({status}): a closed entry is never updated")
