"""Building entry rows from the API's plain values, and checking those values first."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from meshagent.exceptions import LedgerError
from meshagent.ledger.records import Cost, RunRecord, Usage
from meshagent.ledger.schema import STATUSES, TOKEN_KINDS, TRIGGER_KINDS

__all__ = [
    "RunningTotals",
    "check_closing_status",
    "check_trigger",
    "now",
    "process_id",
    "record_row",
]

_TOKEN = uuid.uuid4().hex[:12]


def now() -> datetime:
    return datetime.now(UTC)


def process_id() -> str:
    """host:pid:token of this process, so `recover()` can tell its own runs from a dead one's."""
    return f"{socket.gethostname()}:{os.getpid()}:{_TOKEN}"


def check_trigger(kind: str) -> str:
    if kind not in TRIGGER_KINDS:
        raise LedgerError(f"trigger kind {kind!r} is not one of {', '.join(TRIGGER_KINDS)}")
    return kind


def check_closing_status(status: str) -> str:
    if status not in STATUSES or status == "running":
        allowed = ", ".join(s for s in STATUSES if s != "running")
        raise LedgerError(f"a run cannot be closed as {status!r}: use one of {allowed}")
    return status


@dataclass
class RunningTotals:
    """Usage and cost of an open run so far; written as totals so a retried write is harmless."""

    usage: Usage = field(default_factory=Usage)
    cost: list[Decimal] = field(default_factory=lambda: [Decimal(0)] * 3)
    cost_unknown: bool = False
    price_source: str | None = None
    price_version: str | None = None

    def add(self, usage: Usage | None, cost: Cost | None) -> None:
        if usage is not None:
            self.usage = self.usage + usage
            spent = sum(getattr(usage, kind) for kind in TOKEN_KINDS)
            if cost is None and spent:
                self.cost_unknown = True  # tokens without a price: the run's cost is unknown
        if cost is not None:
            parts = (cost.input_usd, cost.cache_usd, cost.output_usd)
            self.cost = [
                total + Decimal(part) for total, part in zip(self.cost, parts, strict=True)
            ]
            self.price_source = cost.source or self.price_source
            self.price_version = cost.version or self.price_version

    def columns(self) -> dict[str, Any]:
        known = not self.cost_unknown
        return {
            **self.usage.columns(),
            "cost_input_usd": self.cost[0] if known else None,
            "cost_cache_usd": self.cost[1] if known else None,
            "cost_output_usd": self.cost[2] if known else None,
            "cost_usd": sum(self.cost, Decimal(0)) if known else None,
            "price_source": self.price_source,
            "price_version": self.price_version,
        }

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> RunningTotals:
        usage = Usage.from_columns(row)
        spent = sum(row[kind] for kind in TOKEN_KINDS)
        parts = [row["cost_input_usd"], row["cost_cache_usd"], row["cost_output_usd"]]
        return cls(
            usage=usage,
            cost=[Decimal(p or 0) for p in parts],
            cost_unknown=bool(spent) and row["cost_usd"] is None,
            price_source=row["price_source"],
            price_version=row["price_version"],
        )


def record_row(record: RunRecord, run_id: str) -> dict[str, Any]:
    """Every column of the closed entry a RunRecord describes (chain columns excepted)."""
    check_closing_status(record.status)
    totals = RunningTotals()
    totals.add(record.usage, record.cost)
    return {
        "run_id": run_id,
        "idempotency_key": record.idempotency_key,
        "process": process_id(),
        "agent": record.agent,
        "agent_version": record.agent_version,
        "owner": record.owner,
        "team": record.team,
        "trigger_kind": check_trigger(record.trigger_kind),
        "triggered_by": record.triggered_by,
        "scheduled_for": record.scheduled_for,
        "started_at": record.started_at,
        "finished_at": record.finished_at,
        "status": record.status,
        "provider": record.provider,
        "model_requested": record.model_requested,
        "model_answered": record.model_answered,
        **totals.columns(),
        "value_tag": record.value_tag,
        "minutes_saved": record.minutes_saved,
        "input_hash": record.input_hash,
        "error": record.error,
    }
