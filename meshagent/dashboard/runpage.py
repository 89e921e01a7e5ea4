"""One run's page: its trigger, timeline, tool calls, outcomes (verdict, evidence and reach),
approvals and feedback."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from meshagent.dashboard import queries
from meshagent.dashboard.pagebase import PagesBase, Viewer
from meshagent.ledger.people import directory
from meshagent.ledger.records import PROMPT_SHARE, prompt_share_of
from meshagent.ledger.schema import TOKEN_KINDS
from meshagent.ledger.store import Ledger


class RunPage(PagesBase):
    """One run's page."""

    def run(self, viewer: Viewer, run_id: str) -> dict[str, Any] | None:
        """One run's trigger, timeline, tool calls, outcomes and feedback; None if hidden."""
        found = queries.run_detail(self.ledger, run_id)
        people = directory(self.ledger)
        if found is None or not queries.visible_run(found.entry, viewer.name, self.privacy, people):
            return None
        entry = found.entry
        # The framework's share of the prompts is kept as an event, but it is no step.
        steps = [e for e in found.events if e["kind"] != PROMPT_SHARE]
        shares = [e["detail"] for e in found.events if e["kind"] == PROMPT_SHARE]
        timeline: list[dict[str, Any]] = []
        if entry["scheduled_for"] is not None:
            timeline.append(_step(entry["scheduled_for"], "scheduled", "fire time"))
        timeline.append(_step(entry["started_at"], "started", entry["trigger_kind"]))
        timeline += [_step(e["at"], e["kind"], e["name"], e["detail"]) for e in steps]
        timeline += [_step(o["created_at"], "outcome", o["kind"], o["ref"]) for o in found.outcomes]
        if entry["finished_at"] is not None:
            timeline.append(
                _step(entry["finished_at"], entry["status"], "finished", entry["error"])
            )
        timeline.sort(key=lambda step: step["at"])
        timeline += [
            _step(f["created_at"], "feedback", "+1" if f["vote"] == 1 else "-1", f["person"])
            for f in found.feedback
        ]
        return {
            "viewer": viewer.as_json(),
            "run": _run_entry(entry),
            "timeline": timeline,
            "tool_calls": [
                {"at": e["at"], "kind": e["kind"], "name": e["name"], "detail": e["detail"]}
                for e in steps
            ],
            "framework_prompt": prompt_share_of(shares[0]) if shares else None,
            "outcomes": [_outcome(o) for o in found.outcomes],
            "approvals": _approvals(self.ledger, run_id),
            "feedback": [
                {
                    "person": f["person"],
                    "vote": f["vote"],
                    "comment": f["comment"],
                    "created_at": f["created_at"],
                }
                for f in found.feedback
            ],
        }


def _approvals(ledger: Ledger, run_id: str) -> list[dict[str, Any]]:
    """The writes the run staged for approval, and their decisions."""
    from meshagent.approvals.staged import shown
    from meshagent.ledger.approvals import of_run

    return [shown(approval) for approval in of_run(ledger, run_id)]


def _outcome(o: Mapping[str, Any]) -> dict[str, Any]:
    """An outcome with its verdict, the evidence behind it (who, what, when; counted or why
    not) and its reach (who could see it), as the follow-up pass and the connector recorded."""
    return {
        "kind": o["kind"],
        "ref": o["ref"],
        "url": o["url"],
        "link": _safe_link(o["url"]),
        "created_at": o["created_at"],
        "delivered": o["kind"] != "planned",
        "verdict": o.get("verdict") or "pending",
        "checked_at": o.get("checked_at"),
        "evidence": [
            {
                "who": item.get("who"),
                "what": str(item.get("what") or ""),
                "when": item.get("when"),
                "counted": bool(item.get("counted", True)),
                "why": item.get("why"),
            }
            for item in _json_list(o.get("evidence"))
            if isinstance(item, dict)
        ],
        "reach": {
            "audience": o.get("audience"),
            "audience_size": o.get("audience_size"),
            "reaches_others": o.get("reaches_others"),
            "detail": _json_object(o.get("reach_detail")),
        },
    }


def _json_list(text: str | None) -> list[Any]:
    try:
        value = json.loads(text) if text else []
    except ValueError:
        return []
    return value if isinstance(value, list) else []


def _json_object(text: str | None) -> dict[str, Any]:
    try:
        value = json.loads(text) if text else {}
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _step(at: datetime, kind: str, name: str, detail: str | None = None) -> dict[str, Any]:
    return {"at": at, "kind": kind, "name": name, "detail": detail}


def _safe_link(url: str | None) -> str | None:
    """Only web links become links; anything else (javascript:, data:) stays text."""
    if url and url.lower().startswith(("https://", "http://")):
        return url
    return None


def _run_entry(entry: dict[str, Any]) -> dict[str, Any]:
    return {
        "run_id": entry["run_id"],
        "agent": entry["agent"],
        "agent_version": entry["agent_version"],
        "owner": entry["owner"],
        "team": entry["team"],
        "status": entry["status"],
        "error": entry["error"],
        "trigger": {
            "kind": entry["trigger_kind"],
            "by": entry["triggered_by"],
            "scheduled_for": entry["scheduled_for"],
        },
        "started_at": entry["started_at"],
        "finished_at": entry["finished_at"],
        "provider": entry["provider"],
        "model": entry["model_answered"] or entry["model_requested"],
        "model_calls": entry["model_calls"],
        "tool_calls": entry["tool_calls"],
        "tokens": {kind: entry[kind] for kind in TOKEN_KINDS},
        "usage_estimated": bool(entry["usage_estimated"]),
        "cost_usd": entry["cost_usd"],
        "price_source": entry["price_source"],
        "value_tag": entry["value_tag"],
        "minutes_saved": entry["minutes_saved"],
    }
