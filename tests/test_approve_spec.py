"""`approve:` in an agent file: validated and located like every other field, and in the schema."""

from __future__ import annotations

import re
import textwrap

import pytest

from meshagent.agentfile.loader import parse_agent
from meshagent.agentfile.schema import agent_schema
from meshagent.exceptions import SpecError

BASE = """\
name: nudge
owner: dave@example.com
team: payments
model: offline
instructions: Nudge.
context:
  - jira.search: {jql: "project = PAY"}
deliver:
  - jira.add_comment: {key: PAY-1}
  - slack.post_message: {channel: "#payments"}
value: {tag: planning}
"""


def _errors(approve: str) -> list[str]:
    with pytest.raises(SpecError) as caught:
        parse_agent(BASE + textwrap.dedent(approve), filename="nudge.yaml")
    return [str(issue) for issue in caught.value.issues]


def test_a_valid_section_and_its_defaults():
    spec = parse_agent(BASE + "approve: {writes: [jira.add_comment]}\n", filename="nudge.yaml")
    assert spec.approve.by == ["owner"] and spec.approve.ask == "dm"
    assert spec.approve.expiry.total_seconds() == 4 * 3600
    assert spec.approve.covers("jira.add_comment") and not spec.approve.covers("slack.post_message")
    every = parse_agent(BASE + "approve: {by: [owner, '@leads', S0LEADS01], ask: '#payments'}\n")
    assert every.approve.writes == "all" and every.approve.covers("slack.post_message")


@pytest.mark.parametrize(
    ("approve", "expected"),
    [
        (
            "approve:\n  writes: [jira.add_coment]\n",
            "nudge.yaml:13:12: approve.writes[0]: unknown write action 'jira.add_coment'; "
            "did you mean 'jira.add_comment'?",
        ),
        (
            "approve:\n  writes: [jira.transition]\n",
            "nudge.yaml:13:12: approve.writes[0]: jira.transition is not a write this agent "
            "makes (its writes: jira.add_comment, slack.post_message)",
        ),
        (
            "approve:\n  writes: [jira.search]\n",
            "nudge.yaml:13:12: approve.writes[0]: unknown write action 'jira.search'",
        ),
        (
            "approve:\n  by: [owner, bob]\n",
            "nudge.yaml:13:15: approve.by[1]: 'bob' is not an approver: use owner, an email, "
            "a Slack @handle, a user id (U...) or a user group (@group or S...)",
        ),
        (
            "approve:\n  by: []\n",
            "nudge.yaml:13:7: approve.by: list should have at least 1 item",
        ),
        (
            "approve:\n  ask: payments\n",
            "nudge.yaml:13:8: approve.ask: 'payments' is not where to ask: use dm (each "
            "approver) or a channel (#name or an id such as C0123ABCD)",
        ),
        (
            "approve:\n  expires_after: 90d\n",
            "nudge.yaml:13:18: approve.expires_after: '90d' is out of range: between 1m and 30d",
        ),
        (
            "approve:\n  expires_after: soon\n",
            "nudge.yaml:13:18: approve.expires_after: 'soon' is not an interval",
        ),
        (
            "approve:\n  writes: [jira.add_comment, jira.add_comment]\n",
            "nudge.yaml:13:11: approve.writes: 'jira.add_comment' is listed twice",
        ),
        (
            "approve:\n  wrtes: all\n",
            "nudge.yaml:13:3: approve.wrtes: unknown field 'wrtes'; did you mean 'writes'?",
        ),
    ],
)
def test_mistakes_are_located(approve, expected):
    [error] = _errors(approve)
    assert error.startswith(expected), error


def test_an_agent_without_writes_has_nothing_to_approve():
    text = re.sub(r"deliver:\n(  - .*\n)+", "", BASE) + "approve: {}\n"
    with pytest.raises(SpecError, match=re.escape(
        "approve: the agent makes no writes (deliver, write tools) to approve"
    )):  # fmt: skip
        parse_agent(text, filename="nudge.yaml")


def test_the_schema_lists_the_write_actions_an_approval_may_name():
    schema = agent_schema()
    approve = schema["$defs"]["Approve"]["properties"]
    listed = next(o for o in approve["writes"]["anyOf"] if o.get("type") == "array")
    assert "jira.add_comment" in listed["items"]["enum"]
    assert "jira.search" not in listed["items"]["enum"]
    assert set(approve) == {"writes", "by", "ask", "expires_after"}
