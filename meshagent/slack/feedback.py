"""Feedback from Slack: button clicks and 👍/👎 reactions become one vote per person per run.

The ledger keeps one vote per person and run (a new one replaces the old), so a second click
changes the vote and never counts twice. Removing a reaction withdraws the vote it gave, unless
the person has since voted the other way.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections import Counter, OrderedDict
from collections.abc import AsyncIterator

from sqlalchemy import Connection, delete, select

from meshagent.ledger import rollup
from meshagent.ledger.schema import entries
from meshagent.ledger.schema import feedback as feedback_table
from meshagent.ledger.store import Ledger

__all__ = ["VoteOrder", "cast_at", "current_vote", "reaction_vote", "withdraw_vote"]

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


def cast_at(value: object) -> float:
    """Slack's ``action_ts`` / ``event_ts`` ("1700000000.123456") as seconds; 0.0 if absent."""
    try:
        return float(str(value))
    except ValueError:
        return 0.0


class VoteOrder:
    """One person's votes on one run, applied one at a time, in the order they were cast.

    Each click or reaction is acknowledged at once and written afterwards, in a task of its
    own; two quick clicks would race to the ledger and the first could land last. Votes of a
    (run, person) wait for each other, and one cast before the last applied one is dropped.
    """

    def __init__(self, maxsize: int = 10_000) -> None:
        self.maxsize = maxsize
        self._locks: dict[tuple[str, str], asyncio.Lock] = {}
        self._waiting: Counter[tuple[str, str]] = Counter()
        self._last: OrderedDict[tuple[str, str], float] = OrderedDict()

    @contextlib.asynccontextmanager
    async def turn(self, run_id: str, person: str, at: float) -> AsyncIterator[bool]:
        """Wait for the person's earlier votes on the run; yields False when this one is stale."""
        key = (run_id, person)
        lock = self._locks.setdefault(key, asyncio.Lock())
        self._waiting[key] += 1
        try:
            async with lock:
                last = self._last.get(key)
                current = last is None or at >= last
                yield current
                if current:
                    self._last[key] = at
                    self._last.move_to_end(key)
                    while len(self._last) > self.maxsize:
                        self._last.popitem(last=False)
        finally:
            self._waiting[key] -= 1
            if self._waiting[key] <= 0:
                del self._waiting[key]
                self._locks.pop(key, None)


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
