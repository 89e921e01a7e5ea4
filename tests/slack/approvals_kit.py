"""What the approval tests share: an agent whose Jira comments need approval, the runs that stage
them, and Slack's interaction payloads for the Approve / Reject buttons and the reason modal."""

from __future__ import annotations

import textwrap
import time
from typing import Any

from meshagent.agentfile.loader import parse_agent
from meshagent.agentfile.spec import AgentSpec
from meshagent.approvals.asks import APPROVE, REASON_BLOCK, REASON_INPUT, REJECT, REJECT_VIEW
from meshagent.ledger import approvals as store
from tests.slack.conftest import click

NUDGE = """\
name: nudge
owner: dave@example.com
team: payments
model: offline
instructions: List the stale issues.
context:
  - jira.search: {jql: "project = PAY AND key = PAY-8", fields: [summary]}
deliver:
  - jira.add_comment:
      key: "{{item.key}}"
      body: "Is this still on track?"
    for_each: jira.search
approve:
  writes: [jira.add_comment]
  by: [owner, bob@example.com]
  expires_after: 1h
value: {tag: planning, minutes_saved: 5}
"""


def nudge(sandbox: Any, text: str = NUDGE) -> AgentSpec:
    return parse_agent(textwrap.dedent(text), filename="nudge.yaml", env=sandbox.env())


def stage_one(served: Any, spec: AgentSpec) -> store.Approval:
    """Run ``spec`` on the served app's runtime: the one write it staged, asked for in Slack."""
    result = served.run(served.app.runtime.run(spec, trigger="api"))
    assert result.status == "ok", result.error
    [approval] = result.staged
    assert approval.asked, result.notes
    return approval


def asked_value(sandbox: Any, user: str) -> tuple[str, str, str]:
    """(channel, ts, button value) of the latest request asked of ``user`` in a DM."""
    [*_, message] = sandbox.slack.dms_to(user)
    [buttons] = [b for b in message.blocks if b["type"] == "actions"]
    return message.channel, message.ts, buttons["elements"][0]["value"]


def approval_click(
    sandbox: Any,
    value: str,
    *,
    user: str,
    channel: str,
    ts: str = "1700000000.000100",
    action_id: str = APPROVE,
    action_ts: str | None = None,
) -> dict[str, Any]:
    """A block_actions payload: ``user`` clicked Approve (or Reject) on a request message."""
    payload = click(sandbox, value, action_id, user=user, url=sandbox.response_url(channel))
    payload["container"] = {"type": "message", "message_ts": ts, "channel_id": channel}
    payload["channel"] = {"id": channel, "name": "directmessage"}
    payload["message"] = {"ts": ts, "type": "message"}
    payload["trigger_id"] = f"{time.time():.0f}.1.{user}"
    [action] = payload["actions"]
    action["block_id"] = "meshagent_approval"
    if action_ts is not None:
        action["action_ts"] = action_ts
    return payload


def reject_click(sandbox: Any, value: str, **options: Any) -> dict[str, Any]:
    return approval_click(sandbox, value, action_id=REJECT, **options)


def reason_submission(sandbox: Any, view: dict[str, Any], *, user: str, reason: str) -> dict:
    """A view_submission payload: ``user`` gave ``reason`` in the modal the app opened."""
    assert view["callback_id"] == REJECT_VIEW
    state = {
        "values": {REASON_BLOCK: {REASON_INPUT: {"type": "plain_text_input", "value": reason}}}
    }
    payload = click(sandbox, "", "", user=user)
    for key in ("actions", "container", "channel", "response_url"):
        del payload[key]
    payload["type"] = "view_submission"
    payload["view"] = {**view, "state": state, "hash": "1700000000.abc"}
    return payload
