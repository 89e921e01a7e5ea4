"""Outcomes and feedback: rows added to an entry, before or after it is closed.

A closed entry's rollup row follows them in the same transaction, so reports count the first
outcome of a run and the current vote of each person exactly once.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING

from sqlalchemy import Connection, and_, bindparam, exists, select, update

from meshagent.exceptions import LedgerError
from meshagent.ledger import rollup, rows
from meshagent.ledger.engine import execute
from meshagent.ledger.lifecycle import Batch, Step, insert_outcome, run_steps
from meshagent.ledger.records import PLANNED, Outcome
from meshagent.ledger.schema import entries, feedback, outcomes

if TYPE_CHECKING:
    from meshagent.ledger.access import LedgerAccess

__all__ = ["add_feedback", "add_outcome", "insert_outcome", "outcome_step"]


# Compiled once per dialect (`engine.execute`): a burst of answers is written by the group
# commit's thread, which takes the interpreter from the event loop acknowledging the next burst
# for as long as Core spends building each statement.
_HAS_RESULT = select(
    exists().where(
        and_(outcomes.c.run_id == bindparam("run_id"), outcomes.c.kind != bindparam("planned"))
    )
)


def has_result(connection: Connection, run_id: str) -> bool:
    """Whether the run has an outcome that is not a plan."""
    found = execute(connection, _HAS_RESULT, {"run_id": run_id, "planned": PLANNED}).scalar()
    return bool(found)


def _locked_entry(connection: Connection, run_id: str) -> dict:
    row = (
        connection.execute(select(entries).where(entries.c.run_id == run_id).with_for_update())
        .mappings()
        .one_or_none()
    )
    if row is None:
        raise LedgerError(f"run {run_id} is not in the ledger: open it with open_run first")
    return dict(row)


def outcome_step(run_id: str, outcome: Outcome | Callable[[Connection], Outcome]) -> Step[bool]:
    """Add `outcome` to the run unless it has it, rolling a closed run up: True when added.

    `outcome` may be a function of the connection, called in the transaction to read what the
    outcome depends on (who a person is). A step of a group commit (`Ledger.aadd_outcome`).
    """

    def step(connection: Connection, batch: Batch) -> bool:
        made = outcome if isinstance(outcome, Outcome) else outcome(connection)
        entry = _locked_entry(connection, run_id)
        had = has_result(connection, run_id)
        inserted = insert_outcome(connection, run_id, made)
        if inserted and made.delivered and entry["status"] != "running" and not had:
            minutes = Decimal(entry["minutes_saved"] or 0)
            sums = {"runs_with_outcome": 1, "minutes_saved": minutes}
            rollup.add_delta(batch.deltas, rollup.daily_key(entry), sums)
        return inserted

    return step


def add_outcome(ledger: LedgerAccess, run_id: str, outcome: Outcome) -> None:
    step = outcome_step(run_id, outcome)
    ledger.transact(lambda c: run_steps(c, [step])[0], what="add an outcome")


def add_feedback(
    ledger: LedgerAccess,
    run_id: str,
    person: str,
    vote: int,
    *,
    comment: str | None = None,
    at: datetime | None = None,
) -> None:
    """Record `person`'s +1/-1 on a run; a new vote from the same person replaces the old.

    Also `Ledger.add_feedback`, with the ledger as `self`."""
    if vote not in (1, -1):
        raise LedgerError(f"feedback vote must be +1 or -1, not {vote!r}")

    def work(connection: Connection) -> None:
        entry = _locked_entry(connection, run_id)
        mine = (feedback.c.run_id == run_id) & (feedback.c.person == person)
        old = connection.execute(select(feedback.c.vote).where(mine)).scalar()
        values = {"vote": vote, "comment": comment, "created_at": at or rows.now()}
        if old is None:
            connection.execute(feedback.insert().values(run_id=run_id, person=person, **values))
        else:
            connection.execute(update(feedback).where(mine).values(values))
        if entry["status"] != "running" and old != vote:
            sums = {"feedback_pos": int(vote == 1), "feedback_neg": int(vote == -1)}
            if old is not None:
                sums["feedback_pos" if old == 1 else "feedback_neg"] -= 1
            deltas: rollup.Deltas = {}
            rollup.add_delta(deltas, rollup.daily_key(entry), sums)
            rollup.apply_deltas(connection, deltas)

    ledger.transact(work, what="add feedback")
