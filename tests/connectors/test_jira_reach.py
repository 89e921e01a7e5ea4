"""The reach of each Jira write: project, reporter, assignee, watchers, read at delivery."""

from __future__ import annotations

import asyncio

import pytest

from meshagent.actions import ActionContext, default_registry
from meshagent.sandbox import Sandbox

PAY = {"projects": ["PAY"]}


@pytest.fixture(params=["Server", "Cloud"])
def box(request):
    with Sandbox(jira_deployment=request.param) as sandbox:
        yield sandbox


def write(box, name, args, *, owner="alice@example.com", triggered_by=None):
    action = default_registry().get(name)
    context = ActionContext(env=box.env(), services={"owner": owner, "triggered_by": triggered_by})
    return asyncio.run(action(context, action.args.model_validate(args), None))


def test_a_comment_on_a_teammate_s_issue_reaches_them(box):
    [outcome] = write(box, "jira.add_comment", {"key": "PAY-5", "body": "Bumped"}).outcomes
    assert (outcome.audience, outcome.audience_size, outcome.reaches_others) == ("jira", 1, True)
    assert outcome.reach_detail["project"] == "PAY"
    assert outcome.reach_detail["assignee"] == outcome.reach_detail["reporter"]  # bob, both
    assert outcome.reach_detail["watchers"] == [outcome.reach_detail["assignee"]]


def test_an_issue_only_the_bot_watches_reaches_nobody(box):
    created = write(box, "jira.create_issue", {"project": "PAY", "summary": "Nobody reads"})
    [outcome] = created.outcomes
    assert outcome.audience == "jira" and outcome.reaches_others is False


def test_the_owner_s_own_issue_reaches_nobody_else(box):
    # PAY-5: reported by bob, assigned to bob, watched by bob: bob's agent reaches nobody else
    args = {"key": "PAY-5", "body": "x"}
    [own] = write(box, "jira.add_comment", args, owner="bob@example.com").outcomes
    assert own.reaches_others is False
    box.jira.watch("PAY-5", "bob", "erin")  # until erin watches it
    [watched] = write(box, "jira.add_comment", args, owner="bob@example.com").outcomes
    assert watched.reaches_others is True and watched.audience_size == 2


def test_reach_unknown_never_fails_the_write(box, monkeypatch):
    from jira import JIRA, JIRAError

    def refuse(self, key):
        raise JIRAError("refused", status_code=403)

    monkeypatch.setattr(JIRA, "watchers", refuse)
    [outcome] = write(box, "jira.add_comment", {"key": "PAY-5", "body": "y"}).outcomes
    assert outcome.kind == "jira.comment" and outcome.audience is None
    assert outcome.reaches_others is None and "unknown" in outcome.reach_detail
    assert box.jira.comments_added[-1] == ("PAY-5", "y")
