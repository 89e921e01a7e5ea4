"""The Jira connector end to end: the jira package over HTTP against the sandbox, on both
deployment types (Server/Data Center with a personal access token, Cloud with email + API token).
"""

from __future__ import annotations

import logging
import re
from datetime import UTC

import pytest

from connectors.jira import DEFAULT_FIELDS, _readable
from meshagent.exceptions import ConnectorError, GrantDenied
from meshagent.sandbox import Sandbox
from tests.connectors.conftest import run_action

PAY = {"projects": ["PAY"]}


@pytest.fixture(params=["Server", "Cloud"])
def box(request):
    with Sandbox(jira_deployment=request.param) as sandbox:
        yield sandbox


def _keys(result):
    return [issue["key"] for issue in result.data]


def _pay_keys(box: Sandbox, status: str | None = None) -> set[str]:
    return {
        key
        for key, issue in box.jira.issues.items()
        if key.startswith("PAY-") and (status is None or _status(box, key) == status)
    }


def _status(box: Sandbox, key: str) -> str:
    return box.jira.status_of(key)


def test_search_is_confined_to_granted_projects(box):
    result = run_action(box, "jira.search", {"jql": "status != Done"}, PAY)
    assert set(_keys(result)) == _pay_keys(box) - _pay_keys(box, "Done")
    assert set(_keys(result)) and all(k.startswith("PAY-") for k in _keys(result))


def test_search_returns_only_the_fields_asked_for_flattened(box):
    result = run_action(
        box,
        "jira.search",
        {"jql": "key = PAY-3", "fields": ["summary", "status", "assignee"]},
        PAY,
    )
    assert result.data == [  # the issues: no echo of the query, no count, no email not asked for
        {
            "key": "PAY-3",
            "summary": "Move card-vault credentials to the new secrets store",
            "status": "Blocked",
            "assignee": "Bob Brown",
        }
    ]


def test_search_gives_a_persons_email_when_asked_for(box):
    result = run_action(
        box,
        "jira.search",
        {"jql": "key = PAY-3", "fields": ["assignee_email", "summary"]},  # so a deliver can DM
        PAY,
    )
    assert result.data == [
        {
            "key": "PAY-3",
            "assignee_email": "bob@example.com",
            "summary": "Move card-vault credentials to the new secrets store",
        }
    ]


def test_search_without_fields_returns_the_documented_default_set(box):
    result = run_action(box, "jira.search", {"jql": "key = PAY-3"}, PAY)
    [issue] = result.data
    assert set(issue) <= {"key", *DEFAULT_FIELDS} and {"key", "summary", "status"} <= set(issue)


def test_dates_come_at_the_precision_a_person_reads(box):
    result = run_action(
        box, "jira.search", {"jql": "key = PAY-3", "fields": ["updated", "created"]}, PAY
    )
    [issue] = result.data
    raw = box.jira.issues["PAY-3"]
    for name in ("updated", "created"):
        assert issue[name] == raw[name].astimezone(UTC).strftime("%Y-%m-%d %H:%M"), name
    due = run_action(
        box, "jira.search", {"jql": "duedate is not EMPTY", "fields": ["duedate"]}, PAY
    )
    assert due.data and all(
        re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", i["duedate"]) for i in due.data
    )
    comments = run_action(box, "jira.issue", {"key": "PAY-2", "fields": ["summary"]}, PAY)
    assert all(
        re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}", c["created"])
        for c in comments.data["comments"]
    )


@pytest.mark.parametrize(
    ("sent", "shown"),
    [
        ("2026-11-30T15:05:59.999+0100", "2026-11-30 14:05"),  # Jira's form, another offset
        ("2026-11-30T14:05:00Z", "2026-11-30 14:05"),
        ("2026-12-01T00:30:00.000-02:00", "2026-12-01 02:30"),
        ("2026-11-30", "2026-11-30"),  # a date stays a date
        ("In Progress", "In Progress"),
        (3, 3),
    ],
)
def test_a_date_time_is_shown_in_utc_to_the_minute(sent, shown):
    assert _readable(sent) == shown


@pytest.mark.parametrize(
    "jql",
    [
        "project = OPS",
        "status = Done OR project = OPS",
        "project = PAY OR project = OPS ORDER BY key",
        'summary ~ "x" OR key = OPS-1',
        "NOT project = PAY",
        "project in (PAY, OPS)",
        "project in (OPS) OR project in (PAY) ORDER BY key DESC",
        "project != PAY || key = OPS-1",
        "! project = PAY",
        'summary ~ "\\"x) OR project = OPS OR (x\\""',
    ],
)
def test_or_and_order_by_cannot_reach_another_project(box, jql):
    result = run_action(box, "jira.search", {"jql": jql, "limit": 200}, PAY)
    assert all(key.startswith("PAY-") for key in _keys(result)), result.data["jql"]


@pytest.mark.parametrize(
    "jql",
    [
        "status = Done) OR (project = OPS",
        "status = Done)) OR ((project = OPS",
        "project = PAY ORDER BY key, (project = OPS)",
        'summary ~ "unclosed',
    ],
)
def test_parenthesis_tricks_are_refused_before_any_request(box, jql):
    with pytest.raises(GrantDenied):
        run_action(box, "jira.search", {"jql": jql}, PAY)
    assert box.jira.requests == []


def test_search_pages_through_every_result_exactly_once():
    issues = [
        {
            "key": f"BIG-{n}",
            "type": "Task",
            "summary": f"Item {n}",
            "status": "To Do",
            "created": f"-{n}h",
        }
        for n in range(1, 251)
    ]
    seed = {
        "jira": {
            "statuses": [{"name": "To Do", "category": "new"}],
            "projects": [{"key": "BIG", "name": "Big", "issue_types": ["Task"]}],
            "issues": issues,
        }
    }
    for deployment in ("Server", "Cloud"):
        with Sandbox(seed, jira_deployment=deployment) as box:
            result = run_action(
                box,
                "jira.search",
                {"jql": "order by created DESC", "limit": 1000},
                {"projects": ["BIG"]},
            )
            searches = [path for _, path in box.jira.requests if "/search" in path]
        keys = _keys(result)
        assert len(keys) == 250 and len(set(keys)) == 250, deployment
        assert keys[:2] == ["BIG-1", "BIG-2"], deployment  # newest first, order kept
        assert len(searches) == 3, (deployment, searches)
        expected = "/search/jql" if deployment == "Cloud" else "/search"
        assert all(path.endswith(expected) for path in searches), searches


def test_limit_stops_paging(box):
    result = run_action(box, "jira.search", {"jql": "order by key", "limit": 3}, PAY)
    assert len(_keys(result)) == 3


def test_issue_with_its_comments(box):
    result = run_action(box, "jira.issue", {"key": "PAY-2", "comments": 5}, PAY)
    assert result.data["key"] == "PAY-2"
    assert result.data["priority"] == "Highest"
    assert result.data["description"].startswith("Partial refunds appear twice")
    assert result.data["comments"] == [
        {
            "author": "Dave Diaz",
            "created": result.data["comments"][0]["created"],
            "body": "Pairing with alice this afternoon.",
        }
    ]


def test_an_issue_outside_the_grant_is_refused_before_any_request(box):
    with pytest.raises(GrantDenied, match="OPS-1 is outside the granted projects PAY"):
        run_action(box, "jira.issue", {"key": "OPS-1"}, PAY)
    for name, args in [
        ("jira.add_comment", {"key": "OPS-2", "body": "x"}),
        ("jira.transition", {"key": "OPS-2", "transition": "Done"}),
        ("jira.assign", {"key": "OPS-2", "assignee": "bob"}),
        ("jira.create_issue", {"project": "OPS", "summary": "x"}),
    ]:
        with pytest.raises(GrantDenied):
            run_action(box, name, args, PAY)
    assert box.jira.requests == []


def test_create_comment_transition_assign(box):
    created = run_action(
        box,
        "jira.create_issue",
        {
            "project": "PAY",
            "summary": "Follow up on the 502s",
            "description": "From the digest",
            "issue_type": "Bug",
            "labels": ["incident"],
        },
        {"projects": ["PAY"], "issue_types": ["Bug", "Task"]},
    )
    key = created.data["key"]
    assert key == "PAY-9" and box.jira.created == [key]
    assert created.outcomes[0].url == f"{box.jira_url}/browse/{key}"
    found = run_action(box, "jira.search", {"jql": 'summary ~ "502s"'}, PAY)
    assert _keys(found) == [key]

    comment = run_action(box, "jira.add_comment", {"key": key, "body": "Looking"}, PAY)
    assert box.jira.comments_added == [(key, "Looking")]
    assert comment.outcomes[0].url.startswith(f"{box.jira_url}/browse/{key}?focusedCommentId=")

    run_action(
        box,
        "jira.transition",
        {"key": key, "transition": "start progress"},
        {"projects": ["PAY"], "transitions": ["Start Progress"]},
    )
    assert _status(box, key) == "In Progress"

    account = "bob" if box.jira_deployment == "Server" else "5f0000000000000000b0b002"
    run_action(box, "jira.assign", {"key": key, "assignee": "bob@example.com"}, PAY)
    assert box.jira.assignments == [(key, account)]
    assert any(
        method == "PUT" and path.endswith(f"/issue/{key}/assignee")
        for method, path in box.jira.requests
    )


def test_api_errors_carry_the_api_message(box):
    with pytest.raises(ConnectorError) as missing:
        run_action(box, "jira.issue", {"key": "PAY-404"}, PAY)
    assert str(missing.value) == (
        "jira.issue PAY-404: HTTP 404: Issue does not exist or you do not have permission "
        "to see it."
    )
    with pytest.raises(ConnectorError) as bad_type:
        run_action(
            box,
            "jira.create_issue",
            {"project": "PAY", "summary": "x", "issue_type": "Incident"},
            PAY,
        )
    assert str(bad_type.value) == (
        "jira.create_issue PAY: HTTP 400: issuetype: valid issue type is required"
    )
    with pytest.raises(ConnectorError, match=r"^jira.transition PAY-1: "):
        run_action(box, "jira.transition", {"key": "PAY-1", "transition": "Block"}, PAY)
    with pytest.raises(ConnectorError, match=r"^jira.search .*HTTP 400: .*JQL"):
        run_action(box, "jira.search", {"jql": "status === Done"}, PAY)


@pytest.mark.parametrize("status", [429, 500, 503])
def test_rate_limits_and_server_errors_are_retried(box, status):
    box.jira_faults.fail_next(2, status=status, retry_after=0)
    result = run_action(box, "jira.issue", {"key": "PAY-1", "comments": 0}, PAY)
    assert result.data["key"] == "PAY-1" and box.jira_faults.failed == 2


def test_persistent_failure_becomes_a_connector_error(box):
    box.jira_faults.fail_next(50, status=500)
    with pytest.raises(ConnectorError) as caught:
        run_action(box, "jira.issue", {"key": "PAY-1"}, PAY)
    assert str(caught.value) == "jira.issue PAY-1: HTTP 500: Internal server error."


def test_dry_run_calls_no_write_endpoint(box):
    for name, args in [
        ("jira.create_issue", {"project": "PAY", "summary": "x"}),
        ("jira.add_comment", {"key": "PAY-1", "body": "x"}),
        ("jira.transition", {"key": "PAY-1", "transition": "Reopen"}),
        ("jira.assign", {"key": "PAY-1", "assignee": "bob"}),
    ]:
        result = run_action(box, name, args, PAY, dry_run=True)
        assert result.outcomes[0].planned
    assert box.jira.writes() == []


def test_wrong_credentials_are_refused_and_never_shown(box, caplog):
    caplog.set_level(logging.DEBUG)
    secret = "wrong-secret-0123456789"
    env = box.env() | {"JIRA_TOKEN": secret, "JIRA_API_TOKEN": secret}
    with pytest.raises(ConnectorError) as caught:
        run_action(box, "jira.issue", {"key": "PAY-1"}, PAY, env=env)
    assert "HTTP 401" in str(caught.value)
    for text in (str(caught.value), caplog.text):
        assert secret not in text
        assert box.jira_token not in text and box.jira_api_token not in text
