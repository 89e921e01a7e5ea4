"""Daily rollups: per (day, agent, owner, team, tag, model, person) sums of closed entries.

They change in the same transaction as the entries, outcomes and feedback they sum, so a report
over a million entries reads a few thousand rollup rows and never disagrees with the entries.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.sql.dml import Insert

from meshagent.ledger.engine import executemany
from meshagent.ledger.schema import DAILY_KEYS, DAILY_SUMS, TOKEN_KINDS, daily
from meshagent.ledger.types import utc

__all__ = ["Deltas", "add_delta", "apply_deltas", "daily_key", "entry_sums", "person_of"]

DailyKey = tuple[Any, ...]
Deltas = dict[DailyKey, dict[str, Any]]


def person_of(row: Mapping[str, Any]) -> str:
    """Whose run it is: who triggered it by hand, else the agent's owner."""
    return row.get("triggered_by") or row.get("owner") or ""


def daily_key(row: Mapping[str, Any]) -> DailyKey:
    """The rollup row an entry counts in; missing values are '' so the key stays unique."""
    model = row.get("model_answered") or row.get("model_requested") or ""
    return (
        utc(row["started_at"]).date(),
        row["agent"],
        row.get("owner") or "",
        row.get("team") or "",
        row.get("value_tag") or "",
        model,
        person_of(row),
    )


def entry_sums(row: Mapping[str, Any], *, has_outcome: bool, pos: int, neg: int) -> dict[str, Any]:
    """What one closed entry adds to its rollup row."""
    minutes = Decimal(row.get("minutes_saved") or 0) if has_outcome else Decimal(0)
    cost = row.get("cost_usd")
    return {
        "runs": 1,
        "runs_with_outcome": int(has_outcome),
        **{kind: int(row.get(kind) or 0) for kind in TOKEN_KINDS},
        "cost_usd": Decimal(cost) if cost is not None else Decimal(0),
        "runs_cost_unknown": int(cost is None),
        "minutes_saved": minutes,
        "feedback_pos": pos,
        "feedback_neg": neg,
    }


def add_delta(deltas: Deltas, key: DailyKey, sums: Mapping[str, Any]) -> None:
    """Fold `sums` into the pending change of rollup row `key`."""
    current = deltas.setdefault(key, {})
    for name, value in sums.items():
        current[name] = current.get(name, 0) + value


def _upsert(dialect_name: str) -> Insert:
    """INSERT of rollup rows that adds to the row of the same key when there is one."""
    if dialect_name not in _UPSERTS:
        insert = (postgresql if dialect_name == "postgresql" else sqlite).insert(daily)
        _UPSERTS[dialect_name] = insert.on_conflict_do_update(
            index_elements=list(DAILY_KEYS),
            set_={name: daily.c[name] + insert.excluded[name] for name in DAILY_SUMS},
        )
    return _UPSERTS[dialect_name]


_UPSERTS: dict[str, Insert] = {}


def apply_deltas(connection: Connection, deltas: Deltas) -> None:
    """Add the pending changes to their rollup rows, creating rows as needed (keys sorted)."""
    if not deltas:
        return
    rows = []
    for key in sorted(deltas):
        sums = deltas[key]
        rows.append(
            {**dict(zip(DAILY_KEYS, key, strict=True)), **{n: sums.get(n, 0) for n in DAILY_SUMS}}
        )
    executemany(connection, _upsert(connection.dialect.name), rows)
