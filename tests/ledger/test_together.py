"""Steps of one kind in one group-commit transaction run together (one statement on PostgreSQL),
and write exactly what they would have written alone; when one of them cannot, it alone fails."""

from __future__ import annotations

import contextlib
import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import psycopg.sql
import pytest
from sqlalchemy import Integer, event, func, select

from meshagent.exceptions import LedgerError
from meshagent.ledger import Ledger, Outcome, Usage, budget, lifecycle
from meshagent.ledger.lifecycle import open_step
from meshagent.ledger.records import Event
from meshagent.ledger.schema import daily, events, outcomes, reservations

from .helpers import T0, cost, queued_together, record


def _in_one_transaction(ledger: Ledger, steps: list) -> list:
    """Run `steps` through the group commit in one transaction: each one's result or error."""
    found = []
    for future in queued_together(ledger.group_commit(), steps):
        try:
            found.append(future.result(30))
        except Exception as exc:  # noqa: BLE001 - the test reads each caller's answer
            found.append(exc)
    return found


def _opened(ledger: Ledger, count: int, **options) -> list[str]:
    return [
        ledger.open_run("digest", owner="alice", started_at=T0, **options) for _ in range(count)
    ]


def _closes(ledger: Ledger, run_ids: list[str], **options) -> list:
    return [
        (
            "close a run",
            ledger._close_step(
                run_id,
                "ok",
                usage=Usage(input_tokens=10 + at, model_calls=1),
                cost=cost(),
                outcomes=[Outcome("slack.message", f"C1/{at}")],
                events=[Event("tool_call", "slack.post_message", f"call {at}")],
                **options,
            ),
        )
        for at, run_id in enumerate(run_ids)
    ]


@pytest.fixture
def statements_of():
    """A context manager: the (SQL, parameters) a ledger's engine runs inside it."""

    @contextlib.contextmanager
    def watching(ledger: Ledger):
        seen: list[tuple[str, object]] = []

        def before(_conn, _cursor, statement, params, _context, _many) -> None:
            seen.append((statement, params))

        event.listen(ledger.engine, "before_cursor_execute", before)
        try:
            yield seen
        finally:
            event.remove(ledger.engine, "before_cursor_execute", before)

    return watching


def _count(ledger: Ledger, table) -> int:
    return ledger.read(lambda c: c.execute(select(func.count()).select_from(table)).scalar())


def test_closes_together_write_what_closes_alone_write(ledger, statements_of):
    run_ids = _opened(ledger, 30)
    ledger.add_outcome(run_ids[3], "slack.message", "C1/3")  # before its close: once
    with statements_of(ledger) as seen:
        assert _in_one_transaction(ledger, _closes(ledger, run_ids)) == [None] * 30
    if ledger.engine.dialect.name == "postgresql":  # one update for all thirty entries
        assert sum(text.startswith("UPDATE ledger_entries") for text, _ in seen) == 1
    for at, run_id in enumerate(run_ids):
        row = ledger.entry(run_id)
        assert (row["status"], row["input_tokens"], row["cost_usd"]) == (
            "ok",
            10 + at,
            Decimal("0.0012"),
        )
        assert [o.ref for o in ledger.outcomes(run_id)] == [f"C1/{at}"]
    assert _count(ledger, outcomes) == 30 and _count(ledger, events) == 30
    assert ledger.read(lambda c: c.execute(select(daily.c.runs_with_outcome)).scalar()) == 30
    assert ledger.verify().ok and ledger.verify().checked == 30


def _closed_elsewhere(url: str, run_id: str, status: str) -> None:
    """Close `run_id` from another process's ledger (this one still thinks it running)."""
    with Ledger.open(url) as other:
        other.close_run(run_id, status)


def test_a_close_of_a_closed_entry_fails_alone_among_closes_together(ledger, ledger_url):
    run_ids = _opened(ledger, 12)
    closes = _closes(ledger, run_ids)
    _closed_elsewhere(ledger_url, run_ids[5], "failed")
    answers = _in_one_transaction(ledger, closes)
    assert isinstance(answers[5], LedgerError)
    assert str(answers[5]) == (
        f"run {run_ids[5]} is closed (failed): a closed entry is never updated"
    )
    assert answers[:5] + answers[6:] == [None] * 11
    assert ledger.entry(run_ids[5])["status"] == "failed"
    assert [ledger.entry(r)["status"] for r in run_ids if r != run_ids[5]] == ["ok"] * 11
    assert _count(ledger, outcomes) == 11 and _count(ledger, events) == 11
    runs, with_outcome = ledger.read(
        lambda c: c.execute(select(daily.c.runs, daily.c.runs_with_outcome)).one()
    )
    assert (runs, with_outcome) == (12, 11)
    assert ledger.verify().ok and ledger.verify().checked == 12


def test_usage_writes_together_and_one_for_a_closed_entry(ledger, ledger_url):
    run_ids = _opened(ledger, 8)
    steps = [
        ("record usage", ledger._usage_step(run_id, Usage(output_tokens=at + 1)))
        for at, run_id in enumerate(run_ids)
    ]
    _closed_elsewhere(ledger_url, run_ids[0], "ok")
    answers = _in_one_transaction(ledger, steps)
    assert isinstance(answers[0], LedgerError) and "is closed (ok)" in str(answers[0])
    assert answers[1:] == [None] * 7
    assert [ledger.entry(r)["output_tokens"] for r in run_ids[1:]] == list(range(2, 9))


def test_opens_together_keep_run_ids_and_keys_unique(ledger):
    values = [ledger.entry_values("digest", started_at=T0) for _ in range(6)]
    taken = ledger.open_run("digest", idempotency_key="fire-1")
    steps = [("open a run", open_step(v, None)) for v in values]
    steps.append(("open a run", open_step(ledger.entry_values("digest", run_id=taken), None)))
    steps.append(("open a run", open_step(values[0], None)))  # the same run id twice
    keyed = ledger.entry_values("digest", idempotency_key="fire-1")
    steps.append(("open a run", open_step(keyed, "fire-1")))
    answers = _in_one_transaction(ledger, steps)
    assert answers[:6] == [(v["run_id"], True) for v in values]
    assert answers[6:] == [(taken, False), (values[0]["run_id"], False), (taken, False)]
    assert ledger.count() == 7


@pytest.mark.postgres
def test_a_value_postgresql_refuses_fails_only_its_close(pg_schema_url):
    with Ledger.open(pg_schema_url) as ledger:
        run_ids = _opened(ledger, 6)
        steps = _closes(ledger, run_ids)
        steps[2] = (
            "close a run",
            ledger._close_step(run_ids[2], "ok", events=[Event("tool_call", "x" * 5000, "")]),
        )
        answers = _in_one_transaction(ledger, steps)
        assert isinstance(answers[2], LedgerError)
        assert str(answers[2]).startswith(f"could not close a run in ledger {pg_schema_url}")
        assert "value too long" in str(answers[2])
        assert answers[:2] + answers[3:] == [None] * 5
        assert ledger.entry(run_ids[2])["status"] == "running"
        assert ledger.verify().ok and ledger.verify().checked == 5


@pytest.mark.postgres
def test_a_batch_never_stores_text_cut_to_its_column(pg_schema_url):
    """An array parameter cast to VARCHAR(n) would cut longer text silently, and the entry
    would then fail its own hash check: the batch is refused instead."""
    with Ledger.open(pg_schema_url) as ledger:
        with pytest.raises(LedgerError, match="value too long for type character varying"):
            ledger.write_records([record(owner="o" * 300), record(owner="p" * 300)])
        assert ledger.count() == 0


def test_closes_together_release_their_budget_reservations(ledger):
    run_ids = _opened(ledger, 5)
    later = datetime.now(UTC) + timedelta(minutes=10)
    for run_id in run_ids:
        budget.reserve(
            ledger,
            agent="digest",
            day=T0.date(),
            run_id=run_id,
            amount=Decimal("0.01"),
            limit=Decimal("1"),
            now=T0,
            expires_at=later,
        )
    assert _count(ledger, reservations) == 5
    kept = ledger._close_step(run_ids[0], "ok")  # closes without releasing: its call is in flight
    steps = [("close a run", kept)] + _closes(ledger, run_ids[1:], release_reservations=True)
    assert _in_one_transaction(ledger, steps) == [None] * 5
    left = ledger.read(lambda c: c.execute(select(reservations.c.run_id)).scalars().all())
    assert left == [run_ids[0]]
    assert ledger.verify().ok and ledger.verify().checked == 5


def test_a_statement_with_its_own_literals_runs_on_the_fast_path(ledger):
    """`engine.execute` sends a literal's bind with the value the statement gave it (coalesce's
    0, a case's 1), where it went through Core's parameter building on every call."""
    from sqlalchemy import bindparam, case, literal

    from meshagent.ledger.engine import _compiled_for, execute

    statement = select(
        func.coalesce(bindparam("given", type_=Integer), 7),
        case((bindparam("vote", type_=Integer) == -1, literal("against")), else_="for"),
    )
    found = ledger.read(
        lambda c: [
            tuple(execute(c, statement, {"given": given, "vote": vote}).one())
            for given, vote in ((None, -1), (3, 1))
        ]
    )
    assert found == [(7, "against"), (3, "for")]
    compiled = _compiled_for(statement, ledger.engine.dialect, ("given", "vote"))
    assert compiled.plain and set(compiled.fixed.values()) == {7, -1, "against", "for"}


@pytest.mark.postgres
def test_closes_together_find_their_entries_by_run_id_whatever_the_statistics_say(
    pg_schema_url, statements_of
):
    """The planner's statistics may date from when no entry was running. With the status as a
    constant, its generic plan started from the status index and compared every running entry
    with every row of the batch (1.45 million comparisons, 1.9 s, for 926 closes)."""
    with Ledger.open(pg_schema_url) as ledger:
        ledger.write_records([record() for _ in range(200)])  # closed runs
        ledger.read(lambda c: c.exec_driver_sql("ANALYZE ledger_entries"))  # none running
        run_ids = _opened(ledger, 300)
        with statements_of(ledger) as seen:
            _in_one_transaction(ledger, _closes(ledger, run_ids[:100]))
        [(sql, params)] = [(s, p) for s, p in seen if s.startswith("UPDATE ledger_entries")]
        plan = _generic_plan(ledger, sql, params)
        assert "ix_ledger_entries_status" not in plan and "Join Filter" not in plan, plan


def _generic_plan(ledger: Ledger, sql: str, params: dict) -> str:
    """The plan PostgreSQL keeps for `sql` once prepared (a generic plan), as text."""
    names = list(dict.fromkeys(re.findall(r"%\((\w+)\)s", sql)))
    numbered = re.sub(r"%\((\w+)\)s", lambda m: f"${names.index(m.group(1)) + 1}", sql)
    with ledger.engine.connect() as connection:
        raw = connection.connection.driver_connection
        raw.execute("SET plan_cache_mode = force_generic_plan")
        raw.execute(f"PREPARE grouped AS {numbered}")
        arguments = psycopg.sql.SQL(", ").join(psycopg.sql.Literal(params[n]) for n in names)
        rows = raw.execute(psycopg.sql.SQL("EXPLAIN EXECUTE grouped({})").format(arguments))
        plan = "\n".join(row[0] for row in rows)
        raw.execute("DEALLOCATE grouped")
        raw.execute("RESET plan_cache_mode")
        raw.rollback()
    return plan


def test_opens_usage_writes_and_closes_of_different_runs_take_a_statement_each(
    ledger, statements_of
):
    closing = _opened(ledger, 10)
    writing = _opened(ledger, 10)
    steps: list = []
    for at in range(10):  # interleaved, as a fleet's writes arrive
        steps.append(("open a run", open_step(ledger.entry_values("digest", started_at=T0), None)))
        steps.append(("record usage", ledger._usage_step(writing[at], Usage(input_tokens=at))))
        steps += _closes(ledger, [closing[at]])
    with statements_of(ledger) as seen:
        answers = _in_one_transaction(ledger, steps)
    assert all(isinstance(answers[at], tuple) and answers[at][1] for at in range(0, 30, 3))
    assert answers[1::3] == [None] * 10 and answers[2::3] == [None] * 10
    if ledger.engine.dialect.name == "postgresql":
        writes = [s.split(" SET ")[0].split(" (")[0] for s, _ in seen]
        assert writes.count("UPDATE ledger_entries") == 2  # the usage writes, the closes
        assert writes.count("INSERT INTO ledger_entries") == 1
    assert [ledger.entry(r)["input_tokens"] for r in writing] == list(range(10))
    assert [ledger.entry(r)["status"] for r in closing] == ["ok"] * 10
    assert ledger.count() == 30 and ledger.verify().ok and ledger.verify().checked == 10


def test_two_writes_of_one_run_in_one_transaction_keep_their_order(ledger):
    run_ids = _opened(ledger, 3)
    usage = ledger._usage_step(run_ids[1], Usage(input_tokens=40))
    close = ledger._close_step(run_ids[1], "ok")  # after the usage: it must find it running
    others = [ledger._usage_step(r, Usage(input_tokens=1)) for r in (run_ids[0], run_ids[2])]
    steps = [("record usage", usage), ("record usage", others[0])]
    steps += [("close a run", close), ("record usage", others[1])]
    assert _in_one_transaction(ledger, steps) == [None] * 4
    entry = ledger.entry(run_ids[1])
    assert (entry["status"], entry["input_tokens"]) == ("ok", 40)


@pytest.mark.postgres
def test_steps_run_together_stop_only_where_the_ones_run_come_first(pg_schema_url):
    """A transaction that yields (run_steps' stop) ends after a prefix of its steps, whatever
    order the groups ran in: its callers are answered in order, the rest carried."""
    with Ledger.open(pg_schema_url) as ledger:
        run_ids = _opened(ledger, 2)
        steps = [
            open_step(ledger.entry_values("digest"), None),
            ledger._usage_step(run_ids[0], Usage(input_tokens=3)),
            open_step(ledger.entry_values("digest"), None),
            ledger._usage_step(run_ids[1], Usage(input_tokens=4)),
        ]
        asked: list[int] = []

        def stop() -> bool:
            asked.append(1)
            return True

        results = ledger.transact(
            lambda c: lifecycle.run_steps(c, steps, stop, together=True), what="steps"
        )
        assert len(results) == 4 and asked == []  # the opens ran first: no prefix until the end
        alone = ledger.transact(lambda c: lifecycle.run_steps(c, steps[1:], stop), what="steps")
        assert alone == [None] and len(asked) == 1  # each step alone: a prefix after each
