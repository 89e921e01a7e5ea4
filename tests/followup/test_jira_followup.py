"""The follow-up pass reads Jira issues and comments back through the jira client."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from meshagent.config import Config
from meshagent.fleet.followup import follow_up
from meshagent.ledger import Outcome
from meshagent.sandbox import Sandbox
from tests.connectors.conftest import run_action
from tests.ledger.helpers import record

CREATE = {"projects": ["PAY"], "issue_types": ["Bug", "Task"]}


@pytest.fixture(params=["Server", "Cloud"])
def box(request):
    with Sandbox(jira_deployment=request.param) as sandbox:
        yield sandbox


def delivered(box, ledger, kind: str = "issue") -> tuple[str, str]:
    created = run_action(
        box, "jira.create_issue", {"project": "PAY", "summary": "Refund bug"}, CREATE
    )
    key = created.data["key"]
    ref = key
    if kind == "comment":
        comment = run_action(
            box, "jira.add_comment", {"key": key, "body": "Seen"}, {"projects": ["PAY"]}
        )
        ref = comment.outcomes[0].reference
    now = datetime.now(UTC) - timedelta(seconds=10)  # recorded at its finish, 3 s later
    outcome = Outcome(f"jira.{kind}", ref)
    ledger.write_records([record(owner="alice@example.com", started_at=now, outcomes=(outcome,))])
    return key, ref


def check(box, ledger, days: float = 1.01):
    now = datetime.now(UTC) + timedelta(days=days)
    config = Config(ledger_url=ledger.url)
    done = asyncio.run(follow_up(ledger, config, env=box.env(), now=now))
    [checked] = done.checked
    assert checked.error is None
    return checked


def test_a_transition_and_a_comment_by_others_accept_an_issue(box, ledger):
    key, _ = delivered(box, ledger)
    box.jira.transition_by(key, "In Progress", "bob")
    box.jira.comment_by(key, "carol", "On it")
    checked = check(box, ledger)
    assert checked.verdict == "accepted"
    whats = sorted(e.what for e in checked.evidence)
    assert whats == ["jira.comment", "jira.transition:In Progress"]


def test_won_t_do_rejects_however_done_the_status(box, ledger):
    key, _ = delivered(box, ledger)
    box.jira.transition_by(key, "Done", "bob", resolution="Won't Do")
    assert check(box, ledger).verdict == "rejected"


def test_the_owner_s_own_transition_does_not_count(box, ledger):
    key, _ = delivered(box, ledger)
    box.jira.transition_by(key, "In Progress", "alice")  # the owner, alice@example.com
    assert check(box, ledger, days=7.01).verdict == "ignored"


def test_a_deleted_issue_and_a_deleted_comment_are_rejected(box, ledger):
    key, _ = delivered(box, ledger)
    box.jira.delete_issue(key)
    checked = check(box, ledger)
    assert (checked.verdict, [e.what for e in checked.evidence]) == ("rejected", ["jira.deleted"])


def test_a_comment_still_there_and_answered(box, ledger):
    key, ref = delivered(box, ledger, "comment")
    box.jira.comment_by(key, "dave", "Thanks")
    assert check(box, ledger).verdict == "accepted"
    box.jira.delete_comment(key, ref.partition("#")[2])
    assert check(box, ledger, days=7.01).verdict == "rejected"


def test_jira_429_is_retried_after_its_retry_after(box, ledger):
    key, _ = delivered(box, ledger)
    box.jira.comment_by(key, "carol", "On it")
    box.jira_faults.fail_next(1, status=429, retry_after=0)
    assert check(box, ledger).verdict == "accepted"
    assert box.jira_faults.failed == 1


def test_the_agents_own_later_comment_is_a_bot_s(box, ledger):
    key, _ = delivered(box, ledger)
    run_action(box, "jira.add_comment", {"key": key, "body": "Still open"}, {"projects": ["PAY"]})
    checked = check(box, ledger, days=7.01)
    assert checked.verdict == "ignored"
    assert [(e.what, e.bot) for e in checked.evidence] == [("jira.comment", True)]
