"""Small builders shared by the ledger tests."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from meshagent.ledger import Cost, Ledger, Outcome, RunRecord, Usage

T0 = datetime(2025, 3, 3, 9, 0, tzinfo=UTC)  # a Monday


def cost(total: str = "0.0012") -> Cost:
    """A known cost split into input and output halves."""
    half = Decimal(total) / 2
    return Cost(
        input_usd=half,
        cache_usd=Decimal(0),
        output_usd=Decimal(total) - half,
        source="test-prices",
        version="1",
    )


def record(**overrides: Any) -> RunRecord:
    """A finished run of agent `digest` owned by alice in team payments, with one outcome."""
    started = overrides.pop("started_at", T0)
    values: dict[str, Any] = {
        "agent": "digest",
        "agent_version": "v1",
        "owner": "alice",
        "team": "payments",
        "value_tag": "toil",
        "minutes_saved": 15,
        "status": "ok",
        "started_at": started,
        "finished_at": started + timedelta(seconds=3),
        "trigger_kind": "schedule",
        "scheduled_for": started,
        "provider": "openai",
        "model_requested": "openai:gpt-4.1-mini",
        "model_answered": "gpt-4.1-mini",
        "usage": Usage(input_tokens=1000, output_tokens=200, model_calls=1),
        "cost": cost(),
        "input_hash": "h1",
        "outcomes": (Outcome("slack.message", "C1/1.2"),),
    }
    values.update(overrides)
    return RunRecord(**values)


def run_via_api(ledger: Ledger, **overrides: Any) -> str:
    """Open, spend, close one run through the incremental API; returns its run id."""
    run_id = ledger.open_run(
        overrides.pop("agent", "digest"),
        owner=overrides.pop("owner", "alice"),
        team=overrides.pop("team", "payments"),
        value_tag="toil",
        minutes_saved=15,
        started_at=overrides.pop("started_at", T0),
    )
    ledger.record_usage(run_id, Usage(input_tokens=500, output_tokens=100), cost=cost("0.0006"))
    ledger.close_run(run_id, overrides.pop("status", "ok"), **overrides)
    return run_id


def queued_together(group: Any, steps: list[tuple[str, Any]], gate: Any = None) -> list[Any]:
    """Queue `steps` ((what, step) pairs) on a group commit behind one that holds the writer
    until all are queued (until `gate` is set), so that they share a transaction; their futures."""
    gate = gate or threading.Event()
    group.submit(lambda connection, batch: gate.wait(5), what="hold")
    futures = [group.submit(step, what=what) for what, step in steps]
    gate.set()
    return futures
