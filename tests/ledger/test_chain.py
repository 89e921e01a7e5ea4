"""The hash chain: verify() names the first changed, deleted or misplaced entry."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
from sqlalchemy import delete, insert, select, update

from meshagent.ledger import Ledger
from meshagent.ledger.schema import entries, outcomes

from .helpers import record, run_via_api


@pytest.fixture
def filled(ledger: Ledger) -> Ledger:
    ledger.write_records([record(input_hash=f"h{i}") for i in range(4)])
    run_via_api(ledger)
    assert ledger.verify().ok and ledger.verify().checked == 5
    return ledger


def _run_id(ledger: Ledger, seq: int) -> str:
    with ledger.engine.connect() as connection:
        return connection.execute(select(entries.c.run_id).where(entries.c.seq == seq)).scalar()


def _delete(ledger: Ledger, condition) -> None:
    """Delete entries the way a tamperer would: their outcomes first, for the foreign key."""
    doomed = select(entries.c.run_id).where(condition)
    _sql(ledger, delete(outcomes).where(outcomes.c.run_id.in_(doomed)))
    _sql(ledger, delete(entries).where(condition))


def _sql(ledger: Ledger, statement) -> None:
    with ledger.engine.begin() as connection:
        connection.execute(statement)


@pytest.mark.parametrize("column, value", [("cost_usd", 0), ("output_tokens", 1), ("team", "x")])
def test_an_edit_by_hand_is_detected(filled, column, value):
    run_id = _run_id(filled, 3)
    _sql(filled, update(entries).where(entries.c.seq == 3).values({column: value}))
    result = filled.verify()
    assert not result.ok and (result.seq, result.run_id) == (3, run_id)
    assert result.problem == f"entry #3 (run {run_id}) was changed after it was recorded"


def test_a_deleted_entry_is_named(filled):
    _delete(filled, entries.c.seq == 2)
    assert filled.verify().problem == "entry #2 was deleted (chain jumps to #3)"


def test_deleting_the_newest_entries_is_detected(filled):
    _delete(filled, entries.c.seq >= 4)
    result = filled.verify()
    assert result.problem == "entries after #3 were deleted (the chain head is at #5)"


def test_an_entry_moved_out_of_order_is_named(filled):
    first, second = _run_id(filled, 2), _run_id(filled, 3)
    _sql(filled, update(entries).where(entries.c.seq == 2).values(seq=-2))
    _sql(filled, update(entries).where(entries.c.seq == 3).values(seq=2))
    _sql(filled, update(entries).where(entries.c.seq == -2).values(seq=3))
    result = filled.verify()
    assert (result.seq, result.run_id) == (2, second) and first != second
    assert "does not follow entry #1" in (result.problem or "")


def test_an_entry_inserted_by_hand_is_detected(filled):
    with filled.engine.connect() as connection:
        row = dict(connection.execute(select(entries).where(entries.c.seq == 1)).mappings().one())
    del row["id"]
    row.update(run_id="forged", seq=None, prev_hash=None, entry_hash=None, idempotency_key=None)
    _sql(filled, insert(entries).values(row))
    assert filled.verify().problem == "run forged is closed but outside the chain: inserted by hand"


WRITER = textwrap.dedent(
    """
    import sys
    from meshagent.ledger import Ledger
    from tests.ledger.helpers import record, run_via_api
    ledger = Ledger.open(sys.argv[1])
    for i in range(40):
        run_via_api(ledger, owner=sys.argv[2])
        ledger.write_records([record(owner=sys.argv[2]) for _ in range(3)])
    """
)


def test_two_writer_processes_on_sqlite_keep_one_chain(sqlite_url):
    Ledger.open(sqlite_url).close()
    writers = [
        subprocess.Popen([sys.executable, "-c", WRITER, sqlite_url, owner], cwd=_root())
        for owner in ("alice", "bob")
    ]
    assert [writer.wait(timeout=120) for writer in writers] == [0, 0]
    with Ledger.open(sqlite_url) as ledger:
        result = ledger.verify()
    assert result.ok and result.checked == 2 * 40 * 4


def _root() -> str:
    from pathlib import Path

    return str(Path(__file__).resolve().parents[2])
