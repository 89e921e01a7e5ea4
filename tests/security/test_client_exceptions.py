"""Attack corpus: a connector's unexpected exception fails the call, not the run (issue #17,
item 3).

The sandbox answers one request with something the client libraries do not expect (an empty
resource, a list for an object, a message without its timestamp, JSON nested past Python's
recursion limit). The jira client, slack_sdk, httpx or the connector's own reading of the answer
then raise KeyError, TypeError, AttributeError, NotImplementedError or RecursionError. In agent
mode that must come back to the model as a failed tool call with a readable reason, recorded in
the ledger as ``tool_failed``; the run goes on and ends ok.
"""

from __future__ import annotations

from typing import Any

import pytest

from meshagent.models import ScriptedChatModel
from tests.runtime.conftest import agent, make_runtime, run

AGENT = """
    name: prober
    owner: bob@example.com
    team: payments
    model: scripted
    instructions: Use the tool once, then answer.
    tools:
      - {action}: {grant}
    value: {{tag: toil-reduction, minutes_saved: 1}}
"""

PAY = "{projects: [PAY]}"
PAYMENTS = '{channels: ["C0PAYMENTS"]}'

# (server, the fault: what the sandbox answers instead, the action, its grant, its arguments)
CASES: list[tuple[str, dict[str, Any], str, str, dict[str, Any]]] = [
    ("jira", {"body": "{}", "path": "/issue/PAY-3"}, "jira.issue", PAY, {"key": "PAY-3"}),
    ("jira", {"body": '{"x": 1}', "path": "/comment"}, "jira.issue", PAY, {"key": "PAY-3"}),
    ("jira", {"body": "[]", "path": "/search"}, "jira.search", PAY, {"jql": "status = Done"}),
    (
        "jira",
        {"body": '{"transitions": [{"x": 1}]}', "path": "/transitions"},
        "jira.transition",
        PAY,
        {"key": "PAY-5", "transition": "Done"},
    ),
    (
        "jira",
        {"body": "{}", "status": 201, "path": "/comment"},
        "jira.add_comment",
        PAY,
        {"key": "PAY-5", "body": "x"},
    ),
    (
        "slack",
        {"body": '{"ok": true, "messages": [{"text": "no ts"}]}', "path": "history"},
        "slack.history",
        PAYMENTS,
        {"channel": "C0PAYMENTS"},
    ),
    (
        "slack",
        {"body": '{"ok": true, "user": {}}', "path": "users.info"},
        "slack.user",
        "{}",
        {"user": "U0ALICE01"},
    ),
    (
        "slack",
        {"body": '{"ok": true, "channel": {}}', "path": "conversations.open"},
        "slack.dm",
        '{users: ["U0ALICE01"]}',
        {"user": "U0ALICE01", "text": "x"},
    ),
    (
        "slack",
        {"body": '{"ok": true, "channels": [{"id": "C1"}]}', "path": "conversations.list"},
        "slack.post_message",
        '{channels: ["#payments"]}',
        {"channel": "#payments", "text": "x"},
    ),
    (
        "slack",
        {"body": '{"ok": true, "messages": "x"}', "path": "conversations.replies"},
        "slack.thread",
        PAYMENTS,
        {"channel": "C0PAYMENTS", "ts": "1700000000.000100"},
    ),
    (
        "http",
        {"body": "[" * 100_000, "path": "/deep"},
        "http.get",
        "{url_prefixes: [JIRA/]}",
        {"url": "JIRA/deep", "format": "json"},
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[f"{c[2]}-{c[1]['path'].strip('/')}" for c in CASES])
def test_an_unexpected_exception_fails_the_call_not_the_run(sandbox, ledger, case):
    server, fault, action, grant, args = case
    grant = grant.replace("JIRA", sandbox.jira_url)
    args = {k: v.replace("JIRA", sandbox.jira_url) for k, v in args.items()}
    faults = sandbox.slack_faults if server == "slack" else sandbox.jira_faults
    faults.answer_next(**fault)
    tool = action.replace(".", "_")
    model = ScriptedChatModel(
        responses=[{"tool_calls": [{"name": tool, "args": args}]}, "Nothing to report."]
    )
    spec = agent(AGENT.format(action=action, grant=grant))
    result = run(make_runtime(sandbox, ledger, model), spec)
    assert result.status == "ok", result.error
    assert faults.failed == 1, "the fault was not reached"
    [event] = ledger.events(result.run_id)
    assert (event.kind, event.name) == ("tool_failed", action)
    assert "unexpected" in event.detail and action in event.detail, event.detail
    # The model read the failure as the tool's answer, and could go on.
    told = model.calls[1][-1].content
    assert told.startswith("Error:") and action in told, told
    assert ledger.entry(result.run_id)["status"] == "ok"
