"""Four scheduled agents whose evidence differs, to check that every report ranks them by value
per dollar (`value.headline`'s figure) and shows it beside the headline.

`used` posts 40 times and people take up one post in four; `also` posts 10 times, one taken
up; `noise` posts 120 times and nobody ever reacts; `fresh` posted 3 times, still pending.
Each costs the same per run; what ranks them is the evidence, weighed by how much there is.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from meshagent.ledger import Cost, Ledger, Outcome, RunRecord, Usage, verdicts
from meshagent.ledger.verdicts import Evidence

HOURS = {"used": range(40), "also": range(10), "noise": range(120), "fresh": range(150, 153)}


def _record(agent: str, at: datetime, **overrides: Any) -> RunRecord:
    values: dict[str, Any] = {
        "agent": agent,
        "agent_version": "v1",
        "owner": f"{agent}-owner@example.com",
        "team": "ranked",
        "value_tag": "toil",
        "minutes_saved": 30,
        "status": "ok",
        "started_at": at,
        "finished_at": at + timedelta(seconds=3),
        "trigger_kind": "schedule",
        "scheduled_for": at,
        "provider": "openai",
        "model_requested": "openai:gpt-4.1-mini",
        "model_answered": "gpt-4.1-mini",
        "usage": Usage(input_tokens=1000, output_tokens=200, model_calls=1),
        "cost": Cost(Decimal("0.01"), Decimal(0), Decimal("0.01"), source="test", version="1"),
        "input_hash": f"{agent}-{at.isoformat()}",
        "outcomes": (Outcome("slack.message", f"C1/{agent}.{at.timestamp()}"),),
    }
    values.update(overrides)
    return RunRecord(**values)


def write_ranked(
    ledger: Ledger, start: datetime, step: timedelta = timedelta(hours=1), **overrides: Any
) -> dict[str, list[str]]:
    """The four agents' runs from `start`, one each `step`, judged as the module docstring
    says; their run ids by agent."""
    ids = {
        agent: ledger.write_records([_record(agent, start + step * h, **overrides) for h in hours])
        for agent, hours in HOURS.items()
    }
    checked = start + timedelta(days=8)
    taken = ids["used"][::4] + ids["also"][:1]
    silent = [r for r in ids["used"] + ids["also"] + ids["noise"] if r not in taken]
    found = verdicts.outcome_ids(ledger, taken + silent)
    verdicts.judge_many(
        ledger,
        {o: [Evidence("reader@example.com", "reply")] for r in taken for o in found[r]},
        checked_at=checked,
    )
    verdicts.judge_many(ledger, {o: [] for r in silent for o in found[r]}, checked_at=checked)
    return ids
