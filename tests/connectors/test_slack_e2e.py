"""The Slack connector end to end: slack_sdk's AsyncWebClient over HTTP against the sandbox."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.web.async_slack_response import AsyncSlackResponse

from meshagent.exceptions import ConnectorError, GrantDenied
from meshagent.sandbox import Sandbox
from tests.connectors.conftest import run_action

TS = "1700000000.000100"
PAYMENTS = {"channels": ["#payments"]}


def test_history_reads_the_window_with_thread_replies(sandbox):
    result = run_action(
        sandbox, "slack.history", {"channel": "#payments", "hours": 10, "replies": True}, PAYMENTS
    )
    texts = [m["text"] for m in result.data]
    # 20h-old message is outside the 10 hour window; the rest come oldest first.
    assert texts[0].startswith("PAY-3 is blocked")
    assert texts[-1].startswith("Who can pair")
    assert len(texts) == 3
    thread = result.data[-1]["replies"]
    assert [r["text"] for r in thread] == ["I can, after 3pm.", "Me too if needed."]
    assert sandbox.slack.writes() == []
    # What was asked and nothing around it: the messages, no echo of the channel.
    assert isinstance(result.data, list)
    assert all(set(m) <= {"ts", "user", "text", "replies"} for m in result.data)


def test_a_thread_is_found_by_its_timestamp_or_the_form_of_its_link(sandbox):
    first = next(m for m in sandbox.slack.messages["C0INCIDENT"] if m.get("replies"))
    link_form = "p" + first["ts"].replace(".", "")
    grant = {"channels": ["#incidents"]}
    for ts in (first["ts"], link_form):
        result = run_action(sandbox, "slack.thread", {"channel": "#incidents", "ts": ts}, grant)
        assert result.data[0]["ts"] == first["ts"]
        assert isinstance(result.data, list)


def test_history_pages_through_cursors():
    now = time.time()
    messages = [{"user": "alice", "text": f"message {i}", "ago": f"{i + 1}m"} for i in range(450)]
    seed = {
        "slack": {
            "users": [{"id": "U0ALICE01", "name": "alice", "email": "alice@example.com"}],
            "channels": [{"id": "C0BUSY0001", "name": "busy", "messages": messages}],
        }
    }
    with Sandbox(seed) as box:
        result = run_action(box, "slack.history", {"channel": "#busy", "limit": 2000, "hours": 24})
        pages = box.slack.calls.count("conversations.history")
    got = [m["text"] for m in result.data]
    assert len(got) == 450 and len(set(got)) == 450
    assert got[0] == "message 449" and got[-1] == "message 0"  # oldest first
    assert pages == 3  # 200 + 200 + 50
    assert all(float(m["ts"]) <= now for m in result.data)


def test_user_by_id_and_by_email(sandbox):
    by_id = run_action(sandbox, "slack.user", {"user": "U0CAROL03"}).data
    by_email = run_action(sandbox, "slack.user", {"user": "carol@example.com"}).data
    assert by_email == {**by_id, "id": "U0CAROL03"}  # the id is news only to who gave an email
    assert "id" not in by_id
    assert by_id["real_name"] == "Carol Chen" and by_id["title"] == "SRE"


def test_unknown_email_names_action_target_and_code(sandbox):
    with pytest.raises(ConnectorError) as caught:
        run_action(sandbox, "slack.user", {"user": "nobody@example.com"})
    assert str(caught.value) == "slack.user nobody@example.com: users_not_found"


def test_post_message_lands_in_the_channel_with_a_permalink(sandbox):
    blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": "*Digest*"}}]
    result = run_action(
        sandbox,
        "slack.post_message",
        {"channel": "#payments", "text": "Digest", "blocks": blocks},
        PAYMENTS,
    )
    [posted] = sandbox.slack.posted_to("#payments")
    assert posted.text == "Digest" and posted.blocks == blocks
    [outcome] = result.outcomes
    assert outcome.kind == "slack.message" and not outcome.planned
    assert outcome.reference == f"C0PAYMENTS:{posted.ts}"
    assert outcome.url.endswith(f"/archives/C0PAYMENTS/p{posted.ts.replace('.', '')}")


def test_channel_granted_by_id_accepts_its_name_and_the_reverse(sandbox):
    run_action(
        sandbox,
        "slack.post_message",
        {"channel": "#payments", "text": "a"},
        {"channels": ["C0PAYMENTS"]},
    )
    run_action(sandbox, "slack.post_message", {"channel": "C0PAYMENTS", "text": "b"}, PAYMENTS)
    assert [p.text for p in sandbox.slack.posted_to("#payments")] == ["a", "b"]


def test_id_of_another_channel_is_refused_after_resolving_names(sandbox):
    with pytest.raises(GrantDenied, match="channel C0GENERAL0 is not granted"):
        run_action(sandbox, "slack.post_message", {"channel": "C0GENERAL0", "text": "x"}, PAYMENTS)
    assert sandbox.slack.writes() == []


@pytest.mark.parametrize(
    ("name", "args"),
    [
        ("slack.post_message", {"channel": "#general", "text": "leak"}),
        ("slack.reply", {"channel": "#general", "thread_ts": TS, "text": "leak"}),
        ("slack.add_reaction", {"channel": "#general", "ts": TS, "name": "eyes"}),
        ("slack.history", {"channel": "#general"}),
    ],
)
def test_a_channel_outside_the_grant_is_refused_before_any_request(sandbox, name, args):
    with pytest.raises(GrantDenied):
        run_action(sandbox, name, args, PAYMENTS)
    assert sandbox.slack.calls == []


def test_dm_outside_the_grant_is_refused_before_any_request(sandbox):
    with pytest.raises(GrantDenied):
        run_action(
            sandbox,
            "slack.dm",
            {"user": "bob@example.com", "text": "hi"},
            {"users": ["alice@example.com"]},
        )
    assert sandbox.slack.calls == []


def test_api_errors_name_action_channel_and_slack_code(sandbox):
    with pytest.raises(ConnectorError) as not_in:
        run_action(sandbox, "slack.post_message", {"channel": "#random", "text": "x"})
    assert str(not_in.value) == "slack.post_message #random: not_in_channel"
    with pytest.raises(ConnectorError) as missing:
        run_action(sandbox, "slack.post_message", {"channel": "#paymnts", "text": "x"})
    assert str(missing.value) == "slack.post_message #paymnts: channel_not_found"
    with pytest.raises(ConnectorError) as private:
        run_action(sandbox, "slack.history", {"channel": "G0SECURITY"})
    assert str(private.value) == "slack.history G0SECURITY: channel_not_found"


def test_reply_reaction_and_dm(sandbox):
    thread = sandbox.slack.messages["C0PAYMENTS"][-1]["ts"]
    reply = run_action(
        sandbox,
        "slack.reply",
        {"channel": "#payments", "thread_ts": thread, "text": "On it"},
        PAYMENTS,
    )
    assert reply.outcomes[0].kind == "slack.message"
    [posted] = sandbox.slack.posted_to("#payments")
    assert posted.thread_ts == thread

    run_action(
        sandbox,
        "slack.add_reaction",
        {"channel": "#payments", "ts": thread, "name": "eyes"},
        PAYMENTS,
    )
    assert sandbox.slack.reactions == [("C0PAYMENTS", thread, "eyes")]
    with pytest.raises(ConnectorError, match="already_reacted$"):
        run_action(
            sandbox,
            "slack.add_reaction",
            {"channel": "#payments", "ts": thread, "name": "eyes"},
            PAYMENTS,
        )

    dm = run_action(
        sandbox,
        "slack.dm",
        {"user": "bob@example.com", "text": "PAY-5 is stale"},
        {"users": ["bob@example.com"]},
    )
    assert [p.text for p in sandbox.slack.dms_to("bob")] == ["PAY-5 is stale"]
    assert dm.outcomes[0].reference.startswith("D0BOB0002:")


@pytest.mark.parametrize(
    ("name", "args", "grant"),
    [
        ("slack.post_message", {"channel": "#payments", "text": "x"}, PAYMENTS),
        ("slack.reply", {"channel": "#payments", "thread_ts": TS, "text": "x"}, PAYMENTS),
        ("slack.add_reaction", {"channel": "#payments", "ts": TS, "name": "eyes"}, PAYMENTS),
        ("slack.dm", {"user": "bob@example.com", "text": "x"}, {"users": ["bob@example.com"]}),
    ],
)
def test_dry_run_calls_no_write_method_and_plans_the_outcome(sandbox, name, args, grant):
    result = run_action(sandbox, name, args, grant, dry_run=True)
    assert sandbox.slack.writes() == [] and sandbox.slack.posted == []
    [outcome] = result.outcomes
    assert outcome.planned and outcome.kind == "planned"
    assert outcome.reference.startswith(name)
    assert result.data["arguments"] == args | result.data["arguments"]


def test_rate_limit_is_retried_after_retry_after(sandbox):
    sandbox.slack_faults.fail_next(2, status=429, retry_after=0)
    result = run_action(
        sandbox, "slack.post_message", {"channel": "#payments", "text": "hi"}, PAYMENTS
    )
    assert sandbox.slack_faults.failed == 2
    assert result.outcomes and len(sandbox.slack.posted_to("#payments")) == 1


def test_retry_after_is_honoured(sandbox):
    sandbox.slack_faults.fail_next(1, status=429, retry_after=1)
    started = time.monotonic()
    run_action(sandbox, "slack.user", {"user": "U0BOB0002"})
    assert time.monotonic() - started >= 1.0


def test_server_errors_are_retried_then_reported(sandbox):
    sandbox.slack_faults.fail_next(1, status=500)
    assert run_action(sandbox, "slack.user", {"user": "U0BOB0002"}).data["name"] == "bob"
    sandbox.slack_faults.fail_next(10, status=503, retry_after=None)
    with pytest.raises(ConnectorError) as caught:
        run_action(sandbox, "slack.user", {"user": "U0BOB0002"})
    assert str(caught.value) == "slack.user U0BOB0002: HTTP 503"


def test_a_wrong_token_is_refused_and_never_shown(sandbox, caplog):
    caplog.set_level(logging.DEBUG)
    wrong = "xoxb-wrong-0123456789-secret"
    env = sandbox.env() | {"SLACK_BOT_TOKEN": wrong}
    with pytest.raises(ConnectorError) as caught:
        run_action(sandbox, "slack.post_message", {"channel": "C0PAYMENTS", "text": "x"}, env=env)
    assert str(caught.value) == "slack.post_message C0PAYMENTS: invalid_auth"
    assert wrong not in caplog.text and sandbox.slack_token not in caplog.text
    assert sandbox.slack.posted == []


def test_sandbox_answers_parse_as_slack_responses(sandbox):
    async def talk():
        client = AsyncWebClient(token=sandbox.slack_token, base_url=sandbox.slack_url)
        me = await client.auth_test()
        pages = [page["channels"] async for page in await client.conversations_list(limit=2)]
        with pytest.raises(SlackApiError) as caught:
            await client.conversations_history(channel="C0NOTHERE1")
        return me, pages, caught.value

    me, pages, error = asyncio.run(talk())
    assert isinstance(me, AsyncSlackResponse) and me["user_id"] == "U0MESHBOT"
    assert me.status_code == 200 and me.headers["content-type"].startswith("application/json")
    names = [c["name"] for page in pages for c in page]
    assert "payments" in names and "security" not in names  # private, bot not a member
    assert len(pages) >= 3  # limit=2 pages through cursors
    assert error.response["error"] == "channel_not_found"


def test_response_url_allows_five_posts(sandbox):
    import httpx

    url = sandbox.response_url()
    codes = [httpx.post(url, json={"text": f"update {i}"}).status_code for i in range(6)]
    assert codes == [200] * 5 + [404]
