"""Property: for arbitrary text in an identifier argument, either every request that reaches the
sandbox targets an object inside the grant, or the call is refused before any request.

Each action runs through the real jira / slack_sdk / httpx clients against the sandbox, which
records every request as it arrived (raw path, query and body for Jira; method and arguments for
Slack). The text is drawn from anything at all and from fragments that have broken grants
before: dot segments, encoded slashes, query and fragment characters, whitespace, lookalikes.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from meshagent.exceptions import ConnectorError, GrantDenied
from meshagent.sandbox import Sandbox
from tests.connectors.conftest import run_action

EXAMPLES = settings(
    max_examples=50,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
PAY = {"projects": ["PAY"]}
PAYMENTS = {"channels": ["#payments"]}
ALICE = {"users": ["U0ALICE01", "alice@example.com"]}
TS = "1700000000.000100"

FRAGMENTS = [
    "/", "..", "../", "./", "%2F", "%2f", "%2e", "%252e", "%5C", "\\", "?", "#", "&", "=", ";",
    ",", " ", "\n", "\r\n", "\t", "\x00", "-", "_", ".", "@", ":", "+", "*", "PAY", "OPS", "pay",
    "ops", "1", "3", "01", "\u0663", "\uff30\uff21\uff39", "\u2010", "\u212a", "\u0131",
    "PAY-1", "PAY-3", "OPS-1", "OPS-2", "C0PAYMENTS", "C0GENERAL0", "G0SECURITY", "#payments",
    "#general", "payments", "general", "U0ALICE01", "U0BOB0002", "alice@example.com",
    "bob@example.com", TS, "Done", "Start Progress", "bob", "eyes",
]  # fmt: skip


def crafted(*seeds: str) -> st.SearchStrategy[str]:
    """Anything, fragments glued together, or a plausible value with something after it."""
    pieces = st.sampled_from(FRAGMENTS + list(seeds))
    return st.one_of(
        st.text(max_size=24),
        st.lists(pieces, min_size=1, max_size=6).map("".join),
        st.tuples(st.sampled_from(seeds), st.text(max_size=8), pieces).map("".join),
        st.sampled_from(seeds),
    )


@pytest.fixture(scope="module")
def box() -> Iterator[Sandbox]:
    with Sandbox() as sandbox:
        yield sandbox


def _attempt(box: Sandbox, action: str, args: dict[str, Any], grant: Any) -> list[Any]:
    """Run the call; return what reached the sandbox, for the caller to check it stayed inside
    the grant. A call refused by an argument's format made no request at all; one refused by
    the grant may have listed the workspace's channels to resolve a name, nothing more."""
    jira, slack = len(box.jira.received), len(box.slack.received)
    try:
        result = run_action(box, action, args, grant)
    except ValidationError:
        assert len(box.jira.received) == jira and len(box.slack.received) == slack, (
            f"{action} was refused by its format after a request"
        )
        return []
    except GrantDenied:
        listed = [name for name, _ in box.slack.received[slack:]]
        assert len(box.jira.received) == jira and set(listed) <= {"conversations.list"}, listed
        return []
    except ConnectorError:
        pass  # the service said no (404, channel_not_found): what was asked is checked below
    else:
        found = result.data.get("issues", []) if isinstance(result.data, dict) else []
        assert all(issue["key"].startswith("PAY-") for issue in found), found
    return box.jira.received[jira:] + box.slack.received[slack:]


# -- Jira ----------------------------------------------------------------------------------------

_ISSUE_PATH = re.compile(r"/rest/api/[0-9a-z]+/issue/([^/?]*)")


def _inside_pay(received: list[tuple[str, str, bytes]]) -> None:
    for method, raw, body in received:
        path, _, query = raw.partition("?")
        decoded = unquote(path)
        assert ".." not in decoded.split("/") and "\\" not in decoded, raw
        issue = _ISSUE_PATH.match(decoded)
        if issue and issue.group(1):
            assert re.fullmatch(r"PAY-[0-9]+", issue.group(1)), raw
        if decoded.rstrip("/").endswith("/issue") and method == "POST":
            assert json.loads(body)["fields"]["project"] == {"key": "PAY"}, body
        if re.fullmatch(r"/rest/api/[0-9a-z]+/search(/jql)?", decoded):
            jql = parse_qs(query).get("jql", [None])[0] or json.loads(body or b"{}").get("jql")
            assert re.match(r"project in \(PAY\)( AND \(| ORDER BY |$)", jql), jql


JIRA_CASES = {
    ("jira.issue", "key"): {},
    ("jira.add_comment", "key"): {"body": "x"},
    ("jira.transition", "key"): {"transition": "Done"},
    ("jira.transition", "transition"): {"key": "PAY-5"},
    ("jira.assign", "key"): {"assignee": "bob"},
    ("jira.assign", "assignee"): {"key": "PAY-5"},
    ("jira.create_issue", "project"): {"summary": "x"},
    ("jira.search", "jql"): {},
}
JIRA_SEEDS = ("PAY-3", "PAY-5", "OPS-1", "PAY", "Done", "bob", "status = Done", "project = OPS")


@pytest.mark.parametrize("action_arg", sorted(JIRA_CASES), ids="-".join)
@EXAMPLES
@given(text=crafted(*JIRA_SEEDS))
def test_jira_identifiers_stay_inside_the_granted_project(box, action_arg, text):
    action, arg = action_arg
    received = _attempt(box, action, {arg: text, **JIRA_CASES[action_arg]}, PAY)
    _inside_pay([r for r in received if len(r) == 3])
    assert not [key for key in box.jira.comments_added if not key[0].startswith("PAY-")]


@EXAMPLES
@given(fields=st.lists(crafted("summary", "status"), min_size=1, max_size=3))
def test_jira_field_names_stay_inside_the_granted_project(box, fields):
    received = _attempt(box, "jira.issue", {"key": "PAY-3", "fields": fields}, PAY)
    _inside_pay([r for r in received if len(r) == 3])


JQL_FRAGMENTS = [
    "\\", '\\"', "\\'", '"', "'", "(", ")", " ", " OR ", " AND ", " NOT ", "project = OPS",
    "key = OPS-1", "status = Done", "summary ~ x", " ORDER BY key", ",", "=", "!", "||", "&&",
    "\\u0029", "\u00a0", "\uff09", "\n", "issueFunction in x(", "membersOf(", "-1d",
]  # fmt: skip


@EXAMPLES
@given(jql=st.lists(st.sampled_from(JQL_FRAGMENTS), min_size=1, max_size=12).map("".join))
@example(jql='summary ~ \\"x) OR project = OPS OR (summary ~ "y\\"z"')
def test_a_search_returns_only_issues_of_the_granted_project(box, jql):
    """The sandbox lexes JQL as Jira does (backslash escapes outside strings included), so an
    escape from the wrapper shows as an OPS issue in the result."""
    received = _attempt(box, "jira.search", {"jql": jql, "limit": 200}, PAY)
    _inside_pay([r for r in received if len(r) == 3])


# -- Slack ---------------------------------------------------------------------------------------


def _inside_payments(received: list[tuple[str, dict[str, Any]]]) -> None:
    for method, args in received:
        if "channel" in args:
            assert args["channel"] == "C0PAYMENTS", (method, args)
        for name in ("ts", "thread_ts", "timestamp"):
            if name in args:
                assert re.fullmatch(r"[0-9]{10}\.[0-9]{6}", args[name]), (method, args)


SLACK_CASES = {
    ("slack.history", "channel"): {},
    ("slack.thread", "channel"): {"ts": TS},
    ("slack.thread", "ts"): {"channel": "#payments"},
    ("slack.post_message", "channel"): {"text": "x"},
    ("slack.post_message", "thread_ts"): {"channel": "#payments", "text": "x"},
    ("slack.reply", "channel"): {"thread_ts": TS, "text": "x"},
    ("slack.reply", "thread_ts"): {"channel": "C0PAYMENTS", "text": "x"},
    ("slack.add_reaction", "channel"): {"ts": TS, "name": "eyes"},
    ("slack.add_reaction", "ts"): {"channel": "#payments", "name": "eyes"},
    ("slack.add_reaction", "name"): {"channel": "#payments", "ts": TS},
}
SLACK_SEEDS = ("#payments", "C0PAYMENTS", "payments", "#general", "C0GENERAL0", TS, "eyes")


@pytest.mark.parametrize("action_arg", sorted(SLACK_CASES), ids="-".join)
@EXAMPLES
@given(text=crafted(*SLACK_SEEDS))
def test_slack_identifiers_stay_inside_the_granted_channel(box, action_arg, text):
    action, arg = action_arg
    received = _attempt(box, action, {arg: text, **SLACK_CASES[action_arg]}, PAYMENTS)
    _inside_payments([r for r in received if len(r) == 2])


@EXAMPLES
@given(text=crafted("U0ALICE01", "alice@example.com", "U0BOB0002", "bob@example.com"))
def test_a_dm_reaches_only_the_granted_people(box, text):
    received = _attempt(box, "slack.dm", {"user": text, "text": "x"}, ALICE)
    for method, args in [r for r in received if len(r) == 2]:
        if method == "conversations.open":
            assert args["users"] == "U0ALICE01", args
        if method == "users.lookupByEmail":
            assert args["email"] == "alice@example.com", args
        if method == "chat.postMessage":
            assert args["channel"].startswith("D"), args


@EXAMPLES
@given(text=crafted("U0ALICE01", "alice@example.com"))
def test_a_user_lookup_sends_only_a_user_id_or_an_email(box, text):
    received = _attempt(box, "slack.user", {"user": text}, {})
    for _, args in [r for r in received if len(r) == 2]:
        value = args.get("user") or args.get("email")
        assert re.fullmatch(r"[UW][A-Z0-9]{8,20}|[a-z0-9._+-]+@[a-z0-9.-]+", value), args


# -- HTTP ----------------------------------------------------------------------------------------


@EXAMPLES
@given(tail=crafted("issue/OPS-1", "x", "PAY", "..;", "%2e%2e", "@evil"))
def test_a_fetch_stays_under_the_granted_prefix(box, tail):
    prefix = f"{box.jira_url}/rest/api/2/project/"
    received = _attempt(box, "http.get", {"url": prefix + tail}, {"url_prefixes": [prefix]})
    for _, raw, _ in [r for r in received if len(r) == 3]:
        path = urlsplit(raw).path
        decoded = unquote(path)
        assert decoded.startswith("/rest/api/2/project/"), raw
        segments = decoded.split("/")
        assert ".." not in segments and "." not in segments, raw
        assert not any(c in decoded for c in "\\;%"), raw
