"""Feedback from Slack: button clicks and 👍/👎 reactions become one vote per person per run.

The ledger keeps one vote per person and run (a new one replaces the old), so a second click
changes the vote and never counts twice. Removing a reaction withdraws the vote it gave, unless
the person has since voted the other way.
"""

from __future__ import annotations

import re

from sqlalchemy import Connection, delete, select

from meshagent.ledger import rollup
from meshagent.ledger.schema import entries
from meshagent.ledger.schema import feedback as feedback_table
from meshagent.ledger.store import Ledger

__all__ = ["current_vote", "reaction_vote", "withdraw_vote"]

_UP = {"+1", "thumbsup", "thumbs_up"}
_DOWN = {"-1", "thumbsdown", "thumbs_down"}
_SKIN_TONE = re.compile(r"::skin-tone-\d$")


def reaction_vote(reaction: str) -> int | None:
    """+1 for 👍, -1 for 👎 (any skin tone), None for any other emoji."""
    name = _SKIN_TONE.sub("", reaction.strip(":"))
    if name in _UP:
        return 1
    if name in _DOWN:
        return -1
    return None


def current_vote(ledger: Ledger, run_id: str, person: str) -> int | None:
    """The person's vote on the run, or None."""
    query = select(feedback_table.c.vote).where(
        feedback_table.c.run_id == run_id, feedback_table.c.person == person
    )
    return ledger.read(lambda c: c.execute(query).scalar(), what="read a vote")


def withdraw_vote(ledger: Ledger, run_id: str, person: str, vote: int) -> bool:
    """Remove the person's vote on the run if it is ``vote``; True when one was removed.

    The run's daily rollup follows in the same transaction, as for a new vote.
    """
    remover = getattr(ledger, "remove_feedback", None)
    if remover is not None:  # the ledger's own, once it has one
        return bool(remover(run_id, person, vote=vote))

    def work(connection: Connection) -> bool:
        mine = (feedback_table.c.run_id == run_id) & (feedback_table.c.person == person)
        old = connection.execute(select(feedback_table.c.vote).where(mine)).scalar()
        if old is None or old != vote:
            return False
        entry = (
            connection.execute(select(entries).where(entries.c.run_id == run_id)).mappings().one()
        )
        connection.execute(delete(feedback_table).where(mine))
        if entry["status"] != "running":
            column = "feedback_pos" if old == 1 else "feedback_neg"
            deltas: rollup.Deltas = {}
            rollup.add_delta(deltas, rollup.daily_key(entry), {column: -1})
            rollup.apply_deltas(connection, deltas)
        return True

    return ledger.transact(work, what="withdraw feedback")
