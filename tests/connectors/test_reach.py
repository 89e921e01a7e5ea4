"""The reach of each Slack delivery, read at delivery through slack_sdk against the sandbox."""

from __future__ import annotations

import asyncio
from typing import Any

from meshagent.actions import ActionContext, ActionResult, default_registry
from meshagent.sandbox import Sandbox

SEED = {
    "slack": {
        "users": [
            {"id": "U0ALICE01", "name": "alice", "email": "alice@example.com"},
            {"id": "U0BOB0002", "name": "bob", "email": "bob@example.com"},
            {"id": "U0CAROL03", "name": "carol", "email": "carol@example.com"},
        ],
        "channels": [
            {"id": "C0BIGROOM0", "name": "big", "members": ["alice", "bob", "carol"]},
            {"id": "C0ALONE000", "name": "alone", "private": True, "members": ["alice"]},
        ],
    }
}


def deliver(
    box: Sandbox, name: str, args: dict[str, Any], *, owner: str, triggered_by: str | None = None
) -> ActionResult:
    action = default_registry().get(name)
    context = ActionContext(env=box.env(), services={"owner": owner, "triggered_by": triggered_by})
    return asyncio.run(action(context, action.args.model_validate(args), None))


def test_a_public_channel_reaches_its_members():
    with Sandbox(SEED) as box:
        result = deliver(box, "slack.post_message", {"channel": "#big", "text": "hi"}, owner="x")
    (outcome,) = result.outcomes
    assert outcome.audience == "public"
    assert outcome.audience_size == 4  # three people and the bot
    assert outcome.reaches_others is True
    assert outcome.reach_detail == {"channel": "big", "private": False}


def test_a_private_channel_of_the_owner_alone_reaches_nobody_else():
    with Sandbox(SEED) as box:
        result = deliver(
            box,
            "slack.post_message",
            {"channel": "#alone", "text": "hi"},
            owner="alice@example.com",
        )
        calls = list(box.slack.calls)
    (outcome,) = result.outcomes
    assert (outcome.audience, outcome.audience_size, outcome.reaches_others) == (
        "private",
        2,
        False,
    )
    assert "conversations.members" in calls and "users.info" in calls


def test_a_thread_reply_and_the_cache():
    with Sandbox(SEED) as box:
        first = deliver(box, "slack.post_message", {"channel": "#big", "text": "a"}, owner="x")
        ts = first.outcomes[0].reference.split(":")[1]
        reply = deliver(
            box, "slack.reply", {"channel": "#big", "thread_ts": ts, "text": "b"}, owner="x"
        )
        infos = box.slack.calls.count("conversations.info")
    assert reply.outcomes[0].audience == "thread" and reply.outcomes[0].reaches_others
    assert infos == 1  # read once per channel, not per message


def test_a_dm_to_the_triggerer_reaches_nobody_else_and_to_another_does():
    with Sandbox(SEED) as box:
        own = deliver(
            box,
            "slack.dm",
            {"user": "U0BOB0002", "text": "hi"},
            owner="a",
            triggered_by="U0BOB0002",
        )
        other = deliver(
            box, "slack.dm", {"user": "carol@example.com", "text": "hi"}, owner="bob@example.com"
        )
    assert (own.outcomes[0].audience, own.outcomes[0].audience_size) == ("dm", 1)
    assert own.outcomes[0].reaches_others is False
    assert other.outcomes[0].reaches_others is True


def test_reach_unknown_never_fails_the_delivery():
    with Sandbox(SEED) as box:
        box.slack.calls.clear()
        original = box.slack.channels["C0BIGROOM0"]
        # conversations.info refused: the message is still posted, its reach unknown
        from meshagent.sandbox import slack as sandbox_slack

        def refuse(self, args):
            raise sandbox_slack._ApiError("ratelimited")

        saved = sandbox_slack._Api.conversations_info
        sandbox_slack._Api.conversations_info = refuse
        try:
            result = deliver(box, "slack.post_message", {"channel": "#big", "text": "x"}, owner="x")
        finally:
            sandbox_slack._Api.conversations_info = saved
        posted = box.slack.posted_to("#big")
    assert original and posted[-1].text == "x"
    (outcome,) = result.outcomes
    assert outcome.audience is None and outcome.reaches_others is None
    assert outcome.reach_detail == {"unknown": "ratelimited"}
