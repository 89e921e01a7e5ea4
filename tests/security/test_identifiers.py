"""Attack corpus: no identifier leaves its grant through a URL (issue #17, item 1).

Each crafted identifier goes, through the real jira / slack_sdk / httpx clients, to an action
granted a single Jira project, Slack channel, person or URL prefix. Every one must be refused
before any request reaches the sandbox; for Jira and Slack by the argument's own format (a
message naming the argument and what was expected), before the grant is even looked at.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from pydantic import ValidationError

from meshagent.exceptions import GrantDenied
from meshagent.ledger.store import Ledger
from meshagent.models import ScriptedChatModel
from meshagent.sandbox import Sandbox
from tests.connectors.conftest import run_action
from tests.runtime.conftest import agent, make_runtime, run

PAY = {"projects": ["PAY"]}
PAYMENTS = {"channels": ["#payments"]}
ALICE = {"users": ["U0ALICE01", "alice@example.com"]}
TS = "1700000000.000100"

# Shapes that climb out of a path, add to a query, or only look like an identifier.
KEYS = [
    "PAY-1/../OPS-1",
    "PAY-1/../../2/issue/OPS-1",
    "PAY-1/..%2FOPS-1",
    "PAY-1%2F..%2FOPS-1",
    "PAY-1%2f..%2fOPS-1",
    "PAY-1\\..\\OPS-1",
    "PAY-1/./",
    "PAY-1/",
    "PAY-1/comment",
    "PAY-1?x=1",
    "PAY-1?jql=project=OPS",
    "PAY-1#x",
    "PAY-1&fields=*all",
    "PAY-1;x=1",
    "PAY-1 ",
    " PAY-1",
    "PAY-1\n",
    "PAY-1\r\nX-Injected: 1",
    "PAY-1\t",
    "PAY-1\x00",
    "PAY-1%00",
    "pay-1/../ops-1",
    "pay-1",
    "Pay-1",
    "\uff30\uff21\uff39-1",  # fullwidth PAY
    "PAY\u20101",  # a Unicode hyphen
    "PAY-\uff11",  # a fullwidth digit
    "PAY-\u0663",  # an Arabic-Indic digit
    "PAY-01",
    "PAY-",
    "PAY",
    "-1",
    "",
    "10001",  # a numeric id: its project cannot be checked before a request
    "PAY-1-OPS-1",
    "PAY_-1/../OPS-1",
    "PAY-" + "9" * 5000,
]

# Each Jira action that takes an issue key, with the other arguments it needs.
KEY_ACTIONS = {
    "jira.issue": {},
    "jira.add_comment": {"body": "x"},
    "jira.transition": {"transition": "Done"},
    "jira.assign": {"assignee": "bob"},
}

PROJECTS = [
    "PAY/../OPS",
    "PAY,OPS",
    "PAY OR project = OPS",
    "pay",
    "PAY\n",
    " PAY",
    "PAY-1",
    "P",
    "",
    "\uff30\uff21\uff39",
    "PAY?x=1",
    "1PAY",
]

TRANSITIONS = [
    "\u0663\u0661",  # Arabic-Indic 31: int() reads it as an id
    "1_1",  # int() reads 11
    " 31",
    "31\n",
    "Done\n",
    "Done\x00",
    "",
    "   ",
    "D" * 300,
]

ASSIGNEES = [
    "bob&maxResults=1000",
    "bob/../alice",
    "bob\n",
    " bob",
    "",
    "b" * 300,
    "b\u00f6b\u202e",
    "bob?x=1",
    "bob#x",
]

FIELDS = ["summary&expand=changelog", "summary\n", "summary,comment", "../x", ""]

CHANNELS = [
    "#payments\n",
    "C0PAYMENTS\n",
    "C0PAYMENTS ",
    "#payments&channel=C0GENERAL0",
    "C0PAYMENTS&channel=C0GENERAL0",
    "C0PAYMENTS/../C0GENERAL0",
    "#pay ments",
    "#payments?x=1",
    "#payments#x",
    "#\uff50\uff41\uff59\uff4d\uff45\uff4e\uff54\uff53",  # fullwidth payments
    "#pa\u0443ments",  # a Cyrillic y
    "#\u212aey",  # the Kelvin sign, which lower() turns into k
    "#",
    "",
    "##payments",
    "#" + "a" * 81,
    "C0PAY\u00c9MENTS",
    "@payments",
    "#payments\x00",
]

TIMESTAMPS = [
    "1700000000.000100\n",
    "1700000000.000100&channel=C0GENERAL0",
    "1700000000.000100 ",
    "1700000000",
    "1700000000.0001",
    "abc",
    "",
    "\u0661\u0667\u0660\u0660\u0660\u0660\u0660\u0660\u0660\u0660.\u0660\u0660\u0660\u0661\u0660\u0660",
    "-1700000000.000100",
    "1700000000.000100/../x",
]

USERS = [
    "U0ALICE01\n",
    "U0ALICE01&users=U0BOB0002",
    "U0ALICE01,U0BOB0002",
    "u0alice01",
    " U0ALICE01",
    "@alice",
    "alice@example.com\n",
    "alice@example.com&email=bob@example.com",
    "",
    "U0ALICE01/../U0BOB0002",
    "U0AL\u0130CE01",
    "alice@example.com" + "m" * 300,
]

REACTIONS = ["eyes&channel=C0GENERAL0", "eyes\n", "", ":eyes:", "e" * 200]


@pytest.fixture(scope="module")
def box() -> Iterator[Sandbox]:
    with Sandbox() as sandbox:
        yield sandbox


def _received(box: Sandbox) -> int:
    return len(box.jira.requests) + len(box.slack.calls)


def _refused_by_format(box: Sandbox, action: str, args: dict[str, Any], grant: Any, arg: str):
    """The call is refused by the argument's format, naming it, and no request was made."""
    before = _received(box)
    with pytest.raises(ValidationError) as raised:
        run_action(box, action, args, grant)
    assert _received(box) == before, f"{action} reached the sandbox with {args[arg]!r}"
    [error] = raised.value.errors()
    assert error["loc"][0] == arg
    assert "expected" in error["msg"], error["msg"]
    return error["msg"]


@pytest.mark.parametrize("action", sorted(KEY_ACTIONS))
@pytest.mark.parametrize("key", KEYS)
def test_a_crafted_issue_key_is_refused_by_its_format(box, action, key):
    message = _refused_by_format(box, action, {"key": key, **KEY_ACTIONS[action]}, PAY, "key")
    assert "Jira issue key" in message


@pytest.mark.parametrize("project", PROJECTS)
def test_a_crafted_project_key_is_refused_by_its_format(box, project):
    args = {"project": project, "summary": "x"}
    message = _refused_by_format(box, "jira.create_issue", args, PAY, "project")
    assert "Jira project key" in message


@pytest.mark.parametrize("transition", TRANSITIONS)
def test_a_crafted_transition_is_refused_by_its_format(box, transition):
    args = {"key": "PAY-5", "transition": transition}
    _refused_by_format(box, "jira.transition", args, PAY, "transition")


@pytest.mark.parametrize("assignee", ASSIGNEES)
def test_a_crafted_assignee_is_refused_by_its_format(box, assignee):
    args = {"key": "PAY-5", "assignee": assignee}
    _refused_by_format(box, "jira.assign", args, PAY, "assignee")


@pytest.mark.parametrize("field", FIELDS)
def test_a_crafted_field_name_is_refused_by_its_format(box, field):
    args = {"key": "PAY-5", "fields": ["status", field]}
    before = _received(box)
    with pytest.raises(ValidationError, match="expected"):
        run_action(box, "jira.issue", args, PAY)
    assert _received(box) == before


CHANNEL_ACTIONS = {
    "slack.history": {},
    "slack.thread": {"ts": TS},
    "slack.post_message": {"text": "x"},
    "slack.reply": {"thread_ts": TS, "text": "x"},
    "slack.add_reaction": {"ts": TS, "name": "eyes"},
}


@pytest.mark.parametrize("action", sorted(CHANNEL_ACTIONS))
@pytest.mark.parametrize("channel", CHANNELS)
def test_a_crafted_channel_is_refused_by_its_format(box, action, channel):
    args = {"channel": channel, **CHANNEL_ACTIONS[action]}
    message = _refused_by_format(box, action, args, PAYMENTS, "channel")
    assert "Slack channel" in message


TS_ACTIONS = {
    ("slack.thread", "ts"): {"channel": "#payments"},
    ("slack.add_reaction", "ts"): {"channel": "#payments", "name": "eyes"},
    ("slack.reply", "thread_ts"): {"channel": "#payments", "text": "x"},
    ("slack.post_message", "thread_ts"): {"channel": "#payments", "text": "x"},
}


@pytest.mark.parametrize("action_arg", sorted(TS_ACTIONS))
@pytest.mark.parametrize("ts", TIMESTAMPS)
def test_a_crafted_timestamp_is_refused_by_its_format(box, action_arg, ts):
    action, arg = action_arg
    args = {arg: ts, **TS_ACTIONS[action_arg]}
    message = _refused_by_format(box, action, args, PAYMENTS, arg)
    assert "Slack message timestamp" in message


@pytest.mark.parametrize("action", ["slack.dm", "slack.user"])
@pytest.mark.parametrize("user", USERS)
def test_a_crafted_user_is_refused_by_its_format(box, action, user):
    args = {"user": user, "text": "x"} if action == "slack.dm" else {"user": user}
    grant = ALICE if action == "slack.dm" else {}
    message = _refused_by_format(box, action, args, grant, "user")
    assert "Slack user" in message


@pytest.mark.parametrize("name", REACTIONS)
def test_a_crafted_reaction_name_is_refused_by_its_format(box, name):
    args = {"channel": "#payments", "ts": TS, "name": name}
    _refused_by_format(box, "slack.add_reaction", args, PAYMENTS, "name")


# http.get: the URL is the identifier; its grant is a prefix of scheme, host, port and path.
# Each of these would leave the prefix on a server that reads the path its own way (Tomcat's
# ';' path parameters, a second percent-decoding, backslashes as separators) or cannot be sent.
URL_TAILS = [
    "..;/issue/OPS-1",
    "x/..;/..;/issue/OPS-1",
    "%252e%252e/issue/OPS-1",
    "%252E%252E%252Fissue",
    "..%5cissue",
    "..\\issue\\OPS-1",
    "%5c..%5c..%5cissue",
    "x\ty",
    "x\ny",
    "x\x00y",
    "x y",
    "\uff0e\uff0e/issue",
    "%c0%ae%c0%ae/issue",
]


@pytest.mark.parametrize("tail", URL_TAILS)
def test_a_crafted_url_is_refused_before_any_request(box, tail):
    prefix = f"{box.jira_url}/rest/api/2/project/"
    before = _received(box)
    with pytest.raises((ValidationError, GrantDenied)):
        run_action(box, "http.get", {"url": prefix + tail}, {"url_prefixes": [prefix]})
    assert _received(box) == before, f"http.get reached the sandbox with {tail!r}"


HEADERS = [
    {"Host": "other.example"},
    {"host": "127.0.0.1:1"},
    {"X-Forwarded-Host": "other.example"},
    {"Forwarded": "host=other.example"},
    {"Authorization": "Bearer ${JIRA_TOKEN}"},  # a secret of the environment, sent by the model
    {"X-Echo": "${SLACK_BOT_TOKEN}"},
    {"X-A": "1\r\nHost: other.example"},
    {"X A": "1"},
]


@pytest.mark.parametrize("headers", HEADERS, ids=lambda h: repr(h)[:40])
def test_headers_that_change_the_site_or_carry_a_secret_are_refused(box, headers):
    prefix = f"{box.jira_url}/rest/api/2/project/"
    before = _received(box)
    with pytest.raises((ValidationError, GrantDenied)):
        run_action(box, "http.get", {"url": prefix, "headers": headers}, {"url_prefixes": [prefix]})
    assert _received(box) == before, f"http.get reached the sandbox with {headers!r}"


def test_currently_valid_identifiers_keep_working():
    """Ids, names with or without '#', any case of a name or an email, stay accepted."""
    with Sandbox() as box:
        _currently_valid(box)


def _currently_valid(box: Sandbox) -> None:
    assert run_action(box, "jira.issue", {"key": "PAY-3"}, PAY).data["key"] == "PAY-3"
    for channel in ("#payments", "payments", "C0PAYMENTS", "#Payments"):
        history = run_action(box, "slack.history", {"channel": channel}, PAYMENTS)
        assert isinstance(history.data, list)
    for user in ("U0ALICE01", "alice@example.com", "Alice@Example.com"):
        assert run_action(box, "slack.user", {"user": user}, {}).data["name"] == "alice"
    planned = run_action(
        box, "slack.dm", {"user": "alice@example.com", "text": "hi"}, ALICE, dry_run=True
    )
    assert planned.outcomes[0].planned
    run_action(box, "jira.transition", {"key": "PAY-5", "transition": "Start Progress"}, PAY)
    assert box.jira.status_of("PAY-5") == "In Progress"


AGENT = """
    name: triage
    owner: bob@example.com
    team: payments
    model: scripted
    instructions: Comment on blocked issues and tell the channel.
    tools:
      - jira.add_comment: {projects: [PAY]}
      - jira.transition: {projects: [PAY]}
      - slack.post_message: {channels: ["#payments"]}
      - slack.dm: {users: [U0ALICE01]}
    value: {tag: toil-reduction, minutes_saved: 5}
"""

# Calls a model led by an issue's text might make, in agent mode, through LangChain.
AGENT_CALLS = [
    ("jira_add_comment", {"key": "PAY-1/../OPS-1", "body": "leaked"}, "key"),
    ("jira_add_comment", {"key": "PAY-1%2F..%2FOPS-1", "body": "leaked"}, "key"),
    ("jira_transition", {"key": "pay-1/../ops-3", "transition": "Done"}, "key"),
    ("jira_add_comment", {"key": "PAY-1?x=1", "body": "x"}, "key"),
    ("slack_post_message", {"channel": "C0PAYMENTS\n", "text": "x"}, "channel"),
    ("slack_post_message", {"channel": "#payments", "text": "x", "thread_ts": "1&x"}, "thread_ts"),
    ("slack_dm", {"user": "U0ALICE01,U0BOB0002", "text": "x"}, "user"),
]


@pytest.mark.parametrize("call", AGENT_CALLS, ids=[c[1][c[2]] for c in AGENT_CALLS])
def test_an_agent_calling_with_a_crafted_identifier_is_refused_and_goes_on(call):
    name, args, arg = call
    model = ScriptedChatModel(
        responses=[{"tool_calls": [{"name": name, "args": args}]}, "Nothing to do."]
    )
    with Sandbox() as box, Ledger.open("sqlite://") as ledger:
        result = run(make_runtime(box, ledger, model), agent(AGENT))
        assert result.status == "ok", result.error
        assert box.jira.requests == [] and box.slack.calls == [], "a request was made"
        [event] = ledger.events(result.run_id)
        assert (event.kind, event.name) == ("tool_refused", name.replace("_", ".", 1))
        assert f"{arg}: " in event.detail and "expected" in event.detail, event.detail
        told = model.calls[1][-1].content
        assert told.startswith("Refused:") and arg in told, told
