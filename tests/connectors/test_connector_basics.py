"""Slack and Jira actions: grants refuse before any request, credentials are named, never shown."""

from __future__ import annotations

import asyncio
import re

import httpx
import pytest

from meshagent.actions import (
    Action,
    ActionArgs,
    ActionContext,
    ActionGrant,
    ActionResult,
    default_registry,
)
from meshagent.exceptions import BudgetExceeded, ConnectorError, GrantDenied
from meshagent.runtime.model_calls import Stop

REGISTRY = default_registry()


def call(name: str, args: dict, grant: dict | None = None, env: dict | None = None, **context):
    action = REGISTRY.get(name)
    parsed = action.args.model_validate(args)
    granted = action.grant.model_validate(grant) if grant is not None else None
    return asyncio.run(action(ActionContext(env=env or {}, **context), parsed, granted))


@pytest.mark.parametrize(
    ("name", "args", "grant", "message"),
    [
        (
            "slack.post_message",
            {"channel": "#general", "text": "hi"},
            {"channels": ["#payments"]},
            "slack.post_message refused: channel #general is not granted (allowed: #payments)",
        ),
        (
            "slack.history",
            {"channel": "general"},
            {"channels": ["#payments", "#payments-standup"]},
            "slack.history refused: channel #general is not granted",
        ),
        (
            "slack.dm",
            {"user": "eve@example.com", "text": "hi"},
            {"users": ["alice@example.com"]},
            "slack.dm refused: user eve@example.com is not granted (allowed: alice@example.com)",
        ),
        (
            "jira.add_comment",
            {"key": "SEC-1", "body": "x"},
            {"projects": ["PAY"]},
            "jira.add_comment refused: SEC-1 is outside the granted projects PAY",
        ),
        (
            "jira.create_issue",
            {"project": "PAY", "summary": "x", "issue_type": "Epic"},
            {"projects": ["PAY"], "issue_types": ["Task", "Bug"]},
            "jira.create_issue refused: issue type Epic is not granted (Task, Bug)",
        ),
        (
            "jira.transition",
            {"key": "PAY-1", "transition": "Delete"},
            {"projects": ["PAY"], "transitions": ["Done"]},
            "jira.transition refused: transition Delete is not granted (Done)",
        ),
        (
            "jira.search",
            {"jql": "status = Open) OR (project = SEC"},
            {"projects": ["PAY"]},
            "jira.search refused: the search cannot be confined to PAY: unbalanced ')'",
        ),
    ],
)
def test_calls_outside_the_grant_are_refused_before_credentials_or_requests(
    name, args, grant, message
):
    # No credentials in the environment: reaching a client would fail differently.
    with pytest.raises(GrantDenied, match="^" + re.escape(message)):
        call(name, args, grant)


@pytest.mark.parametrize(
    ("name", "args", "env", "message"),
    [
        (
            "slack.post_message",
            {"channel": "#payments", "text": "hi"},
            {},
            "slack.post_message: set SLACK_BOT_TOKEN to the Slack bot token (xoxb-...)",
        ),
        ("jira.search", {"jql": "a = 1"}, {}, "jira.search: set JIRA_URL to the Jira base URL"),
        (
            "jira.search",
            {"jql": "a = 1"},
            {"JIRA_URL": "http://127.0.0.1:1", "JIRA_EMAIL": "me@example.com"},
            "jira.search http://127.0.0.1:1: set JIRA_EMAIL and JIRA_API_TOKEN (Jira Cloud) or "
            "JIRA_TOKEN (Server/Data Center)",
        ),
    ],
)
def test_missing_credentials_name_the_variable(name, args, env, message):
    with pytest.raises(ConnectorError, match="^" + re.escape(message) + "$"):
        call(name, args, env=env)


def test_renamed_variables_from_settings_are_the_ones_named():
    with pytest.raises(ConnectorError, match=re.escape("set MY_SLACK to the Slack bot token")):
        call(
            "slack.user",
            {"user": "U0123ABCD"},
            settings={"token_env": "MY_SLACK"},
            env={"SLACK_BOT_TOKEN": "xoxb-ignored"},
        )


def test_post_message_needs_text_or_blocks():
    action = REGISTRY.get("slack.post_message")
    with pytest.raises(ValueError, match="a message needs text or blocks"):
        action.args.model_validate({"channel": "#x"})


def _raising(exc: BaseException) -> Action:
    async def handler(context: ActionContext, args: ActionArgs, grant: object) -> ActionResult:
        raise exc

    return Action("toy.raise", "read", "Raises.", ActionArgs, ActionGrant, handler)


@pytest.mark.parametrize(
    ("raised", "message"),
    [
        (KeyError("comments"), "toy.raise: unexpected KeyError: 'comments'"),
        (RecursionError("too deep"), "toy.raise: unexpected RecursionError: too deep"),
        (httpx.InvalidURL("bad\nurl"), "toy.raise: unexpected InvalidURL from httpx: bad url"),
        (ValueError(""), "toy.raise: unexpected ValueError"),
    ],
)
def test_a_library_exception_becomes_a_connector_error_naming_the_action(raised, message):
    with pytest.raises(ConnectorError, match="^" + re.escape(message) + "$") as caught:
        asyncio.run(_raising(raised)(ActionContext(), ActionArgs()))
    assert caught.value.__cause__ is raised  # the traceback is kept for the log


@pytest.mark.parametrize(
    "raised",
    [
        GrantDenied("toy.raise", "outside"),
        BudgetExceeded("max_tokens_per_run", allowed=1, seen=2),
        ConnectorError("toy.raise", "x", "HTTP 500"),
        Stop("over_budget", "max_usd_per_run reached"),
        asyncio.CancelledError(),
    ],
    ids=lambda exc: type(exc).__name__,
)
def test_meshagents_own_exceptions_keep_their_meaning(raised):
    with pytest.raises(type(raised)) as caught:
        asyncio.run(_raising(raised)(ActionContext(), ActionArgs()))
    assert caught.value is raised
