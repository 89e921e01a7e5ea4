"""The hash chain over closed entries: canonical serialization, appending, verifying.

Each closed entry gets the next sequence number and SHA-256 over its canonical JSON and the
previous entry's hash. Appends hold the chain head's lock (BEGIN IMMEDIATE on SQLite, a row
lock on PostgreSQL), so concurrent writers queue instead of forking the chain.
"""

from __future__ import annotations

import hashlib
import json
import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, select, update

from meshagent.ledger.schema import CHAIN_FIELDS, chain, entries
from meshagent.ledger.types import ExactDecimal, UTCDateTime, utc

__all__ = [
    "GENESIS",
    "VerifyResult",
    "advance_head",
    "chain_hash",
    "entry_hash",
    "facts_json",
    "lock_head",
    "verify_chain",
]

GENESIS = "0" * 64


def _decimal(scale: int) -> Callable[[Any], str | None]:
    spec = f".{scale}f"  # Decimal formatting rounds half-even, as the column does

    def convert(value: Any) -> str | None:
        if value is None:
            return None
        if type(value) is not Decimal:
            value = Decimal(str(value))  # 0.1 means 0.1, not its binary approximation
        return format(value, spec)

    return convert


def _moment(value: Any) -> Any:
    if isinstance(value, datetime):
        if value.tzinfo is not UTC:
            value = utc(value)
        return value.replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"
    return value


def _as_is(value: Any) -> Any:
    return value


def _converter(name: str) -> Callable[[Any], Any]:
    column_type = entries.c[name].type
    if isinstance(column_type, ExactDecimal):
        return _decimal(column_type.scale)  # as stored: 15 and 15.00 minutes are one fact
    return _moment if isinstance(column_type, UTCDateTime) else _as_is


_CONVERTERS = tuple((name, _converter(name)) for name in CHAIN_FIELDS)
# Only the fields whose values need converting, by position (the rest are hashed as they are).
_CONVERTED = tuple(
    (at, convert) for at, (_, convert) in enumerate(_CONVERTERS) if convert is not _as_is
)
_FACTS = operator.itemgetter(*CHAIN_FIELDS)
_JSON = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)


def facts_json(row: Mapping[str, Any]) -> str:
    """The canonical JSON of an entry's facts (CHAIN_FIELDS, in order), as its hash covers them.

    It depends on the entry alone, so a batch serializes its entries before taking the chain
    head's lock, and only the hashing waits for the sequence number and the previous hash.
    """
    try:
        facts = list(_FACTS(row))
    except KeyError:  # a missing fact is hashed as null
        facts = [row.get(name) for name in CHAIN_FIELDS]
    for at, convert in _CONVERTED:
        facts[at] = convert(facts[at])
    return _JSON.encode(facts)


def chain_hash(seq: int, prev_hash: str, facts: str) -> str:
    """SHA-256 of [seq, prev_hash, facts] in canonical JSON, `facts` given by `facts_json`."""
    text = f"[{int(seq)},{_JSON.encode(prev_hash)},{facts}]"
    return hashlib.sha256(text.encode()).hexdigest()


def entry_hash(seq: int, prev_hash: str, row: Mapping[str, Any]) -> str:
    """SHA-256 of an entry's facts (CHAIN_FIELDS, in order), its position and the previous hash."""
    return chain_hash(seq, prev_hash, facts_json(row))


def lock_head(connection: Connection) -> tuple[int, str]:
    """The last sequence number and hash, locked until the transaction ends."""
    row = connection.execute(
        select(chain.c.seq, chain.c.hash).where(chain.c.id == 1).with_for_update()
    ).one()
    return int(row.seq), str(row.hash)


def advance_head(connection: Connection, seq: int, last_hash: str) -> None:
    connection.execute(update(chain).where(chain.c.id == 1).values(seq=seq, hash=last_hash))


@dataclass(frozen=True)
class VerifyResult:
    """What `verify()` found: `ok`, how many entries it checked, and the first problem."""

    ok: bool
    checked: int
    problem: str | None = None
    seq: int | None = None
    run_id: str | None = None

    def __str__(self) -> str:
        if self.ok:
            return f"chain intact: {self.checked} entries verified"
        return f"chain broken: {self.problem}"


def verify_chain(connection: Connection, *, batch: int = 5000) -> VerifyResult:
    """Walk the chain in sequence order; stop at the first changed, missing or misplaced entry."""
    previous, expected, checked = GENESIS, 1, 0
    rows = connection.execution_options(yield_per=batch).execute(
        select(entries).where(entries.c.seq.is_not(None)).order_by(entries.c.seq)
    )
    try:
        for row in rows.mappings():
            seq, run_id = int(row["seq"]), row["run_id"]
            problem = _check(row, seq, expected, previous)
            if problem is not None:
                return _broken(checked, problem, seq, run_id)
            previous, expected, checked = row["entry_hash"], expected + 1, checked + 1
    finally:
        rows.close()  # a server-side cursor on PostgreSQL
    head_seq, head_hash = connection.execute(select(chain.c.seq, chain.c.hash)).one()
    if head_seq != checked or head_hash != previous:
        problem = f"entries after #{checked} were deleted (the chain head is at #{head_seq})"
        return _broken(checked, problem, checked + 1, None)
    stray = connection.execute(
        select(entries.c.run_id)
        .where(entries.c.seq.is_(None), entries.c.status != "running")
        .limit(1)
    ).scalar()
    if stray is not None:
        problem = f"run {stray} is closed but outside the chain: inserted by hand"
        return _broken(checked, problem, None, stray)
    return VerifyResult(ok=True, checked=checked)


def _check(row: Mapping[str, Any], seq: int, expected: int, previous: str) -> str | None:
    run_id = row["run_id"]
    if seq != expected:
        missing = f"#{expected}" if seq == expected + 1 else f"#{expected}..#{seq - 1}"
        return f"entry {missing} was deleted (chain jumps to #{seq})"
    if row["prev_hash"] != previous:
        return (
            f"entry #{seq} (run {run_id}) does not follow entry #{seq - 1}: "
            "inserted out of order, or its predecessor was replaced"
        )
    if entry_hash(seq, previous, row) != row["entry_hash"]:
        return f"entry #{seq} (run {run_id}) was changed after it was recorded"
    return None


def _broken(checked: int, problem: str, seq: int | None, run_id: str | None) -> VerifyResult:
    return VerifyResult(ok=False, checked=checked, problem=problem, seq=seq, run_id=run_id)
