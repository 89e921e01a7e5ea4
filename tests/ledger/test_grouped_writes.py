"""Outcomes and people links from asyncio tasks go through the group commit: a burst of them is
written in a few transactions, every one of them once, and a failing one fails only its caller."""

from __future__ import annotations

import asyncio
import json
import threading
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, Engine, event, func, select

from meshagent.exceptions import LedgerError
from meshagent.ledger import Ledger, Outcome
from meshagent.ledger.people import alink, names_of, person_of
from meshagent.ledger.schema import daily, identities, outcomes

from .helpers import T0

# What an answer's row says: whose run, what, to whom.
ANSWER = (
    outcomes.c.run_id,
    outcomes.c.kind,
    outcomes.c.ref,
    outcomes.c.audience,
    outcomes.c.audience_size,
    outcomes.c.reaches_others,
    outcomes.c.reach_detail,
)


class WritingCommits:
    """Counts the committed transactions that inserted into `table` (an engine event listener
    on the statements each connection runs, and on its commits and rollbacks)."""

    def __init__(self, engine: Engine, table: str) -> None:
        self.engine = engine
        self.prefix = f"INSERT INTO {table.upper()} "
        self.count = 0
        self.rolled_back = 0
        self._writing: set[Connection] = set()
        self._lock = threading.Lock()
        event.listen(engine, "before_cursor_execute", self._statement)
        event.listen(engine, "commit", self._commit)
        event.listen(engine, "rollback", self._rollback)

    def _statement(self, connection: Connection, _cursor, statement: str, *_: Any) -> None:
        if statement.lstrip().upper().startswith(self.prefix):
            with self._lock:
                self._writing.add(connection)

    def _commit(self, connection: Connection) -> None:
        with self._lock:
            if connection in self._writing:
                self._writing.discard(connection)
                self.count += 1

    def _rollback(self, connection: Connection) -> None:
        with self._lock:
            if connection in self._writing:
                self._writing.discard(connection)
                self.rolled_back += 1

    def remove(self) -> None:
        event.remove(self.engine, "before_cursor_execute", self._statement)
        event.remove(self.engine, "commit", self._commit)
        event.remove(self.engine, "rollback", self._rollback)


def _closed_runs(ledger: Ledger, n: int) -> list[str]:
    run_ids = []
    for _ in range(n):
        run_id = ledger.open_run("ask", owner="alice", team="payments", started_at=T0)
        ledger.close_run(run_id, "ok", finished_at=T0)
        run_ids.append(run_id)
    return run_ids


def _answer(at: int) -> Outcome:
    return Outcome(
        "slack.ephemeral",
        f"C1:U{at:08d}",
        audience="ephemeral",
        audience_size=1,
        reaches_others=at % 2 == 0,
        reach_detail={"user": f"U{at:08d}", "channel": "C1"},
    )


def test_a_burst_of_outcomes_is_written_in_a_few_transactions(ledger, ledger_url):
    n = 120
    run_ids = _closed_runs(ledger, n)
    commits = WritingCommits(ledger.engine, outcomes.name)

    async def burst() -> list[bool]:
        return await asyncio.gather(
            *(ledger.aadd_outcome(run_id, _answer(at)) for at, run_id in enumerate(run_ids))
        )

    try:
        added = asyncio.run(burst())
    finally:
        commits.remove()
    assert added == [True] * n
    assert 1 <= commits.count <= n // 10, commits.count  # one commit each before
    query = select(*ANSWER)
    with Ledger.open(ledger_url) as fresh:  # what another process sees: every one, once
        found = fresh.read(lambda c: c.execute(query).all())
        rolled_up = fresh.read(
            lambda c: c.execute(select(func.sum(daily.c.runs_with_outcome))).scalar()
        )
    expected = {
        (run_id, "slack.ephemeral", f"C1:U{at:08d}", "ephemeral", 1, at % 2 == 0)
        for at, run_id in enumerate(run_ids)
    }
    assert len(found) == n
    assert {tuple(row[:6]) for row in found} == expected
    assert {row[2]: json.loads(row[6]) for row in found} == {
        f"C1:U{at:08d}": {"user": f"U{at:08d}", "channel": "C1"} for at in range(n)
    }
    assert rolled_up == n  # each closed run counted once as having an outcome


def test_a_second_burst_of_the_same_outcomes_adds_nothing(ledger):
    run_ids = _closed_runs(ledger, 20)

    async def burst() -> list[bool]:
        return await asyncio.gather(
            *(ledger.aadd_outcome(run_id, _answer(at)) for at, run_id in enumerate(run_ids))
        )

    assert asyncio.run(burst()) == [True] * 20
    assert asyncio.run(burst()) == [False] * 20
    count = ledger.read(lambda c: c.execute(select(func.count()).select_from(outcomes)).scalar())
    assert count == 20
    minutes = ledger.read(lambda c: c.execute(select(func.sum(daily.c.runs_with_outcome))).scalar())
    assert minutes == 20


def test_an_outcome_for_a_missing_run_fails_only_its_caller(ledger):
    run_ids = _closed_runs(ledger, 10)

    async def burst() -> list[Any]:
        good = [ledger.aadd_outcome(run_id, _answer(at)) for at, run_id in enumerate(run_ids)]
        bad = ledger.aadd_outcome("no-such-run", _answer(99))
        return await asyncio.gather(bad, *good, return_exceptions=True)

    bad, *good = asyncio.run(burst())
    assert isinstance(bad, LedgerError)
    assert "no-such-run is not in the ledger" in str(bad)
    assert good == [True] * 10
    refs = ledger.read(lambda c: set(c.execute(select(outcomes.c.ref)).scalars()))
    assert refs == {f"C1:U{at:08d}" for at in range(10)}


def test_an_outcome_read_in_its_transaction_sees_the_people_linked(ledger):
    [run_id] = _closed_runs(ledger, 1)
    asyncio.run(alink(ledger, "U0ALICE01", "Alice@Example.com", source="slack"))

    def answer(connection: Connection) -> Outcome:
        names = names_of(connection, "U0ALICE01")
        assert names == {"U0ALICE01", "alice@example.com"}
        return Outcome("slack.ephemeral", "C1:U0ALICE01", reaches_others="alice" not in names)

    assert asyncio.run(ledger.aadd_outcome(run_id, answer)) is True
    assert ledger.read(lambda c: names_of(c, "U0NOBODY1")) == {"U0NOBODY1"}
    reaches = ledger.read(lambda c: c.execute(select(outcomes.c.reaches_others)).scalar())
    assert reaches is True


def test_a_burst_of_new_people_is_linked_in_a_few_transactions(ledger):
    n = 80
    users = [f"U{at:08d}" for at in range(n)]
    commits = WritingCommits(ledger.engine, identities.name)

    async def burst() -> list[int]:
        return await asyncio.gather(
            *(
                alink(ledger, user, f"user{at}@example.com", source="slack")
                for at, user in enumerate(users)
            )
        )

    try:
        person_ids = asyncio.run(burst())
    finally:
        commits.remove()
    assert 1 <= commits.count <= n // 10, commits.count
    assert len(set(person_ids)) == n
    for at, user in enumerate(users):
        person = person_of(ledger, f"user{at}@example.com")
        assert person is not None and person.id == person_ids[at]
        assert {i.value for i in person.identities} == {user, f"user{at}@example.com"}
        assert person.name == f"user{at}@example.com"


def test_linking_one_person_many_times_at_once_makes_one_person(ledger):
    async def burst() -> list[int]:
        return await asyncio.gather(
            *(alink(ledger, "U0ALICE01", "alice@example.com") for _ in range(30))
        )

    assert len(set(asyncio.run(burst()))) == 1
    assert len(ledger.read(lambda c: names_of(c, "alice@example.com"))) == 2


def test_minutes_of_a_run_reached_by_an_outcome_are_rolled_up_once(ledger):
    run_id = ledger.open_run("ask", owner="alice", team="payments", started_at=T0, minutes_saved=5)
    ledger.close_run(run_id, "ok", finished_at=T0)

    async def twice() -> list[bool]:
        return await asyncio.gather(
            ledger.aadd_outcome(run_id, _answer(1)), ledger.aadd_outcome(run_id, _answer(2))
        )

    assert sorted(asyncio.run(twice())) == [True, True]
    minutes = ledger.read(lambda c: c.execute(select(func.sum(daily.c.minutes_saved))).scalar())
    assert Decimal(minutes) == 5
