"""The writes of an entry's life (open, usage, close), each a step run on one connection.

A step's statements are compiled once per dialect (`engine.execute`): a write costs its SQL, not
Core's statement building. Steps of one transaction share a `Batch`: the chain head is read and
locked once and advanced once, and the rollup rows change once, however many entries close in it.
Every step is idempotent, so a transaction retried after a commit whose answer was lost neither
loses nor doubles a write.

On PostgreSQL every statement is a round trip, and a thousand runs closing at once are a
thousand of them on one writer. Steps of one kind in a transaction (a `Grouped` step's
``group``) can run together when the caller asks (``run_steps(together=True)``, the group commit
does): one statement for all their rows, each column's values as one array (``unnest``), and the
steps' events in one insert when the transaction ends. When anything about such a group is not
as expected (an entry not running, a value the database refuses), the group raises `Apart`: the
caller runs the transaction again with every step alone, which tells whose write it was and
keeps the others.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping, Sequence
from functools import partial
from typing import Any, TypeVar

from sqlalchemy import (
    ARRAY,
    Column,
    Connection,
    and_,
    bindparam,
    case,
    exists,
    func,
    or_,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DBAPIError

from meshagent.exceptions import LedgerError
from meshagent.ledger import chain, rollup
from meshagent.ledger.engine import execute, executemany, first_line, is_transient, unbounded
from meshagent.ledger.records import PLANNED, Event, Outcome
from meshagent.ledger.rows import now
from meshagent.ledger.schema import chain as chain_table
from meshagent.ledger.schema import entries, events, feedback, outcomes

__all__ = [
    "Apart",
    "Batch",
    "Grouped",
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


def _close_answers(run_id: Any) -> tuple[Any, ...]:
    """What a close reads back for the rollup: whether the run had a result before it, its
    votes for and against."""
    return (
        exists().where(and_(outcomes.c.run_id == run_id, outcomes.c.kind != bindparam("planned"))),
        *(
            select(func.coalesce(func.sum(case((feedback.c.vote == vote, 1), else_=0)), 0))
            .where(feedback.c.run_id == run_id)
            .scalar_subquery()
            for vote in (1, -1)
        ),
    )


# Whether a run has an outcome that is not a plan, and its votes, in one round trip.
_ANNOTATIONS = select(*_close_answers(bindparam("run_id")))
_INSERT_EVENTS = events.insert()


# A close's update of the running entry, answering in the same round trip what the rollup needs;
# no row: it was not running.
_CLOSE_RUNNING = _UPDATE_RUNNING.returning(*_close_answers(bindparam("where_run_id")))
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
    """What the steps of one transaction share: the chain head, the rollup changes, and (steps
    run together) the events to insert when it ends."""

    def __init__(self, *, together: bool = False) -> None:
        self.head: tuple[int, str] | None = None
        self.moved = False
        self.deltas: rollup.Deltas = {}
        self.together = together
        self.events: list[dict[str, Any]] = []

    def chain_head(self, connection: Connection) -> tuple[int, str]:
        """The last sequence number and hash, locked until the transaction ends."""
        if self.head is None:
            row = execute(connection, _HEAD, {"head_id": 1}).one()
            self.head = int(row[0]), str(row[1])
        return self.head

    def appended(self, seq: int, digest: str) -> None:
        self.head, self.moved = (seq, digest), True

    def add_events(self, connection: Connection, rows: list[dict[str, Any]]) -> None:
        """Insert event rows: now, or with the other steps' when the transaction ends (together;
        nothing in a step reads them)."""
        if self.together:
            self.events += rows
        else:
            executemany(connection, _INSERT_EVENTS, rows)

    def finish(self, connection: Connection) -> None:
        """Write the events kept, the chain head and the rollup rows the steps changed."""
        executemany(connection, _INSERT_EVENTS, self.events)
        if self.moved and self.head is not None:
            seq, digest = self.head
            execute(connection, _ADVANCE, {"seq": seq, "hash": digest, "head_id": 1})
        rollup.apply_deltas(connection, self.deltas)


class Apart(Exception):
    """Steps run together could not be: a row was not as they expected, or the database refused
    a value. The transaction is rolled back; run it again with every step alone."""


class Grouped:
    """A step that can run with the other steps of its ``group`` in a transaction, in one
    statement for all of them (`run_steps`, `_order`).

    Called, it runs alone. `together` runs ``steps`` (this one first, all of its group) and
    returns their results in order; it raises `Apart` when a step would fail or not write
    what it would write alone.
    """

    group: Hashable | None = None
    run_id: str | None = None  #: the run whose entry it writes

    def __call__(self, connection: Connection, batch: Batch) -> Any:
        raise NotImplementedError

    def together(self, connection: Connection, batch: Batch, steps: Sequence[Any]) -> list[Any]:
        raise NotImplementedError


def run_steps(
    connection: Connection,
    steps: Sequence[Step[Any]],
    stop: Callable[[], bool] | None = None,
    *,
    together: bool = False,
    failed: Callable[[int, Exception], None] | None = None,
) -> list[Any]:
    """Run `steps` in the connection's transaction; their results, in order.

    With `together`, on PostgreSQL, `Grouped` steps run with the others of their group, in the
    order `_order` gives; anything that goes wrong with a group raises `Apart` (a transient
    error of the database is raised as it is, for the transaction to be retried). Otherwise
    each step runs alone, in order. With `stop`, asked whenever the steps run so far are the
    first ones of the list: once it says True, the steps left are not run (their results are
    missing from the end of the list) and the transaction ends with the ones that were.
    `failed(at, error)` is told when ``steps[at]``, run alone, raised `error`, and raises what
    the caller wants raised instead.
    """
    together = together and connection.dialect.name == "postgresql"  # SQLite: no round trips
    batch = Batch(together=together)
    results: list[Any] = [None] * len(steps)
    ran, last = 0, -1  # how many steps ran, and the highest index among them
    for unit in _order(steps) if together else [[at] for at in range(len(steps))]:
        if ran and ran == last + 1 and stop is not None and stop():
            break
        if len(unit) > 1:
            first = steps[unit[0]]
            assert isinstance(first, Grouped)
            group = [steps[at] for at in unit]
            found = _as_group(partial(first.together, connection, batch, group))
            for at, result in zip(unit, found, strict=True):
                results[at] = result
        else:
            results[unit[0]] = _alone(connection, batch, steps[unit[0]], unit[0], failed)
        ran, last = ran + len(unit), max(last, *unit)
    if together:
        _as_group(partial(batch.finish, connection))
    else:
        batch.finish(connection)
    return results[:ran]


def _order(steps: Sequence[Step[Any]]) -> list[list[int]]:
    """The order steps run in together: lists of their indices, one statement's worth each.

    A step that is not `Grouped` runs alone, where it is. The `Grouped` steps between two such
    steps go group by group, each group where its first step was and its steps in their order:
    a batch of opens, usage writes and closes of different runs takes three statements. Steps
    of different runs write different rows, and the chain takes closes in the order they run.
    When one run has two steps there, they keep their order, and only the steps of one group
    that follow each other run together.
    """
    order: list[list[int]] = []
    between: list[int] = []  # consecutive indices of Grouped steps

    def place() -> None:
        runs = {getattr(steps[at], "run_id", None) for at in between}
        if None not in runs and len(runs) == len(between):
            by_group: dict[Hashable, list[int]] = {}
            for at in between:
                by_group.setdefault(getattr(steps[at], "group", None), []).append(at)
            order.extend(by_group.values())
        else:
            for at in between:
                group = getattr(steps[at], "group", None)
                if at != between[0] and group == getattr(steps[at - 1], "group", None):
                    order[-1].append(at)
                else:
                    order.append([at])
        between.clear()

    for at, step in enumerate(steps):
        if getattr(step, "group", None) is None:
            place()
            order.append([at])
        else:
            between.append(at)
    place()
    return order


def _as_group(work: Callable[[], T]) -> T:
    try:
        return work()
    except Apart:
        raise
    except DBAPIError as exc:
        if is_transient(exc):
            raise
        raise Apart(first_line(exc)) from exc  # not the statement's parameters
    except Exception as exc:
        raise Apart(str(exc)) from exc


def _alone(
    connection: Connection,
    batch: Batch,
    step: Step[Any],
    at: int,
    failed: Callable[[int, Exception], None] | None,
) -> Any:
    try:
        return step(connection, batch)
    except Exception as exc:
        if failed is None:
            raise
        failed(at, exc)
        raise


def _arrays(columns: Mapping[str, Column[Any]], *, at: str | None = None) -> Any:
    """Rows from one array parameter per name, each typed as its column; with `at`, each row's
    position in the arrays (from 1) in that column."""
    arrays = (
        bindparam(name, type_=ARRAY(unbounded(column.type))) for name, column in columns.items()
    )
    return (
        func.unnest(*arrays).table_valued(*columns, with_ordinality=at).render_derived(name="rows")
    )


def _columns(rows: Sequence[Mapping[str, Any]]) -> dict[str, list[Any]]:
    """The rows' values, one list per key (every row has the keys of the first)."""
    return {name: [row[name] for row in rows] for name in rows[0]}


# Statements for steps run together, one per set of columns.
_MANY: dict[tuple[str, tuple[str, ...]], Any] = {}


def _open_many(names: tuple[str, ...]) -> Any:
    """Insert many entries unless their run id or idempotency key is taken; the new run ids."""
    statement = _MANY.get(("open", names))
    if statement is None:
        rows = _arrays({name: entries.c[name] for name in names}, at="at")
        chosen = select(*(rows.c[name] for name in names)).order_by(rows.c.at)
        statement = (
            postgresql.insert(entries)
            .from_select(list(names), chosen)
            .on_conflict_do_nothing()
            .returning(entries.c.run_id)
        )
        _MANY["open", names] = statement
    return statement


def _update_many(kind: str, names: tuple[str, ...], answers: Callable[[], tuple[Any, ...]]) -> Any:
    """Update many running entries, each row's `names` to its values, matched by
    ``where_run_id``; returns each updated row's position and `answers`.

    The status the entry must have comes with each row, like its run id, so the only way in is
    the run id's unique index. Compared with one constant, it let the planner start from the
    status index with statistics from when few entries were running: it then compared every
    running entry with every row (1.45 million comparisons, 1.9 s, for 926 closes).
    """
    statement = _MANY.get((kind, names))
    if statement is None:
        columns = {name: entries.c[name] for name in names}
        matched = {"where_run_id": entries.c.run_id, "where_status": entries.c.status}
        rows = _arrays({**columns, **matched}, at="at")
        statement = (
            update(entries)
            .values({name: rows.c[name] for name in names})
            .where(
                entries.c.run_id == rows.c.where_run_id,
                entries.c.status == rows.c.where_status,
            )
            .returning(rows.c.at, *answers())
        )
        _MANY[kind, names] = statement
    return statement


def _updated(
    connection: Connection, statement: Any, rows: list[dict[str, Any]], **more: Any
) -> dict[int, tuple[Any, ...]]:
    """Run an `_update_many` statement for `rows`; its answers by row position (from 0). Raises
    `Apart` unless every row was updated."""
    values = {**_columns(rows), "where_status": ["running"] * len(rows), **more}
    found = execute(connection, statement, values)
    answers = {int(row[0]) - 1: tuple(row[1:]) for row in found}
    if len(answers) != len(rows):
        raise Apart(f"{len(rows) - len(answers)} of {len(rows)} entries were not running")
    return answers


class _Open(Grouped):
    def __init__(self, values: Mapping[str, Any], idempotency_key: str | None) -> None:
        self.values = values
        self.run_id = values["run_id"]
        self.find = {"find_run_id": self.run_id, "find_key": idempotency_key}
        self.group = ("open", tuple(values))

    def __call__(self, connection: Connection, batch: Batch) -> tuple[str, bool]:
        if execute(connection, _INSERT_NEW[connection.dialect.name], self.values).rowcount == 1:
            return self.run_id, True
        return self._found(connection)

    def _found(self, connection: Connection) -> tuple[str, bool]:
        return str(execute(connection, _FIND, self.find).scalar_one()), False

    def together(
        self, connection: Connection, batch: Batch, steps: Sequence[_Open]
    ) -> list[tuple[str, bool]]:
        if len({step.run_id for step in steps}) != len(steps):
            raise Apart("one run id opened twice")  # alone, the second finds the first
        statement = _open_many(tuple(self.values))
        found = execute(connection, statement, _columns([step.values for step in steps]))
        new = {row[0] for row in found}
        return [(s.run_id, True) if s.run_id in new else s._found(connection) for s in steps]


def open_step(values: Mapping[str, Any], idempotency_key: str | None) -> Step[tuple[str, bool]]:
    """Insert a running entry unless its run id or idempotency key is recorded: (run id, new)."""
    return _Open(values, idempotency_key)


class _Usage(Grouped):
    def __init__(self, run_id: str, values: Mapping[str, Any]) -> None:
        self.run_id = run_id
        self.values = values
        self.group = ("usage", tuple(values))

    def __call__(self, connection: Connection, batch: Batch) -> None:
        params = {**self.values, "where_run_id": self.run_id, "where_status": "running"}
        if execute(connection, _UPDATE_RUNNING, params).rowcount == 0:
            raise not_open(connection, self.run_id)

    def together(self, connection: Connection, batch: Batch, steps: Sequence[_Usage]) -> list:
        statement = _update_many("usage", tuple(self.values), tuple)
        _updated(connection, statement, [{**s.values, "where_run_id": s.run_id} for s in steps])
        return [None] * len(steps)


def usage_step(run_id: str, values: Mapping[str, Any]) -> Step[None]:
    """Write a running entry's totals so far (totals, so a retried write is harmless)."""
    return _Usage(run_id, values)


class _Close(Grouped):
    def __init__(
        self,
        run_id: str,
        values: Mapping[str, Any],
        opened: Mapping[str, Any] | None,
        produced: Sequence[Outcome],
        steps: Sequence[Event],
    ) -> None:
        self.run_id, self.values, self.opened = run_id, values, opened
        self.produced, self.steps = produced, steps
        self.attempts: list[str] = []  # the hashes this close computed, one per attempt
        # A close that must read its entry back runs alone.
        self.group = "close" if opened is not None else None

    def _chained(self, batch: Batch, connection: Connection) -> tuple[dict[str, Any], dict]:
        """The closed row, and the parameters of its update: chained after the batch's head."""
        assert self.opened is not None
        seq, previous = batch.chain_head(connection)
        seq += 1
        closed = {**self.opened, **self.values}
        digest = chain.entry_hash(seq, previous, closed)
        params = {name: closed.get(name) for name in _CLOSE_COLUMNS}
        params.update(seq=seq, prev_hash=previous, entry_hash=digest, where_run_id=self.run_id)
        self.attempts.append(digest)
        batch.appended(seq, digest)
        return closed, params

    def __call__(self, connection: Connection, batch: Batch) -> None:
        if self.opened is not None:
            head = batch.head, batch.moved
            closed, params = self._chained(batch, connection)
            params.update(where_status="running", planned=PLANNED)
            found = execute(connection, _CLOSE_RUNNING, params).first()
            if found is None:
                (batch.head, batch.moved), _ = head, self.attempts.pop()  # nothing was chained
                if _closed_by(connection, self.run_id, self.attempts):
                    return  # a previous attempt committed but its answer was lost
                raise not_open(connection, self.run_id)
            had, pos, neg = found
        else:
            closed, (had, pos, neg) = self._read_back(connection, batch)
            if closed is None:
                return
        self._rest(connection, batch, closed, (had, pos, neg))
        for outcome in self.produced:  # unless already added (add_outcome before the close)
            insert_outcome(connection, self.run_id, outcome)

    def _read_back(self, connection: Connection, batch: Batch) -> tuple[Any, tuple[Any, ...]]:
        """The close of an entry this process does not know: read, locked, then written."""
        row = (
            connection.execute(
                select(entries).where(entries.c.run_id == self.run_id).with_for_update()
            )
            .mappings()
            .one_or_none()
        )
        if row is not None and row["entry_hash"] in self.attempts:
            return None, ()  # a previous attempt committed but its answer was lost
        if row is None or row["status"] != "running":
            raise not_open(connection, self.run_id)
        seq, previous = batch.chain_head(connection)
        seq += 1
        closed = {**row, **self.values}
        digest = chain.entry_hash(seq, previous, closed)
        connection.execute(
            update(entries)
            .where(entries.c.run_id == self.run_id)
            .values(**self.values, seq=seq, prev_hash=previous, entry_hash=digest)
        )
        self.attempts.append(digest)
        batch.appended(seq, digest)
        annotations = {"run_id": self.run_id, "planned": PLANNED}
        return closed, tuple(execute(connection, _ANNOTATIONS, annotations).one())

    def _rest(
        self, connection: Connection, batch: Batch, closed: dict[str, Any], found: tuple
    ) -> None:
        """The close's events and its rollup change, once its entry is written."""
        had, pos, neg = found
        batch.add_events(connection, event_rows(self.run_id, self.steps))
        # What it had before this close, or a result this close added.
        has_outcome = bool(had) or any(outcome.kind != PLANNED for outcome in self.produced)
        sums = rollup.entry_sums(closed, has_outcome=has_outcome, pos=int(pos), neg=int(neg))
        rollup.add_delta(batch.deltas, rollup.daily_key(closed), sums)

    def together(self, connection: Connection, batch: Batch, steps: Sequence[_Close]) -> list:
        chained = [step._chained(batch, connection) for step in steps]
        names = tuple(name for name in chained[0][1] if name != "where_run_id")
        statement = _update_many("close", names, lambda: _close_answers(entries.c.run_id))
        rows = [params for _, params in chained]
        answers = _updated(connection, statement, rows, planned=PLANNED)
        made: dict[tuple[str, ...], list[dict[str, Any]]] = {}
        for at, (step, (closed, _)) in enumerate(zip(steps, chained, strict=True)):
            step._rest(connection, batch, closed, answers[at])
            for outcome in step.produced:
                row = outcome.row(step.run_id, now())
                made.setdefault(tuple(row), []).append(row)
        for columns, rows in made.items():  # each unless the run has it (see insert_outcome)
            executemany(connection, _new_outcome(columns), rows)
        return [None] * len(steps)


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
    return _Close(run_id, values, opened, produced, steps)


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
