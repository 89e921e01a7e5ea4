"""Socket Mode: the same listeners through Bolt's dispatch, without signatures."""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

import pytest
from slack_bolt.request.async_request import AsyncBoltRequest

from meshagent.exceptions import ConfigError
from tests.slack.conftest import ASK, agents, click, command, event, make_app, response_posts, texts


def dispatch(app, body: dict[str, Any], **headers: str):
    request = AsyncBoltRequest(body=body, mode="socket_mode", headers=headers or None)
    return app.bolt.async_dispatch(request)


def test_a_command_over_socket_mode_acks_then_answers(sandbox, ledger):
    app = make_app(sandbox, ledger, agents(sandbox, ASK))

    async def scenario() -> Any:
        answer = await dispatch(app, command(sandbox, "run ask anything? days=1"))
        assert app.busy == 1  # the run is in the background once acknowledged
        await app.wait_idle(20)
        session = app.bolt.client.session
        assert session is not None and not session.closed  # one session for every call
        await app.stop()
        assert session.closed and app.bolt.client.session is None
        return answer

    answer = asyncio.run(scenario())
    assert answer.status == 200
    assert json.loads(answer.body)["text"] == ":hourglass_flowing_sand: running ask…"
    [result] = response_posts(sandbox)
    assert '"anything?"' in texts(result) and "days: 1" in texts(result)
    assert ledger.count() == 1


def test_refusals_and_feedback_over_socket_mode(sandbox, ledger):
    app = make_app(sandbox, ledger, agents(sandbox, ASK))

    async def scenario() -> tuple[Any, str]:
        refused = await dispatch(app, command(sandbox, "ask hi", user="U0CAROL03"))
        await dispatch(app, command(sandbox, "ask hi"))
        await app.wait_idle(20)
        run_id = response_posts(sandbox)[-1]["blocks"][-1]["elements"][0]["value"]
        for action in ("meshagent_feedback_down", "meshagent_feedback_up"):
            clicked = await dispatch(app, click(sandbox, run_id, action))
            assert clicked.status == 200
        await app.wait_idle(20)
        await app.stop()
        return refused, run_id

    refused, run_id = asyncio.run(scenario())
    assert "may be run only by" in json.loads(refused.body)["text"]
    assert ledger.count() == 1
    assert app.stats["feedback"] == 2
    from tests.slack.test_feedback import votes

    assert votes(ledger, run_id) == {"U0ALICE01": 1}


def test_socket_mode_retries_are_not_processed_twice(sandbox, ledger):
    app = make_app(sandbox, ledger, agents(sandbox))

    async def scenario() -> None:
        await dispatch(app, command(sandbox, "standup"))
        await app.wait_idle(30)
        [posted] = sandbox.slack.posted_to("#payments-standup")
        up = event(
            "reaction_added", user="U0BOB0002", reaction="+1", channel="C0PAYSTAND",
            ts=posted.ts, event_id="EvS1",
        )  # fmt: skip
        for headers in ({}, {"x-slack-retry-num": "1", "x-slack-retry-reason": "timeout"}):
            answer = await dispatch(app, up, **headers)
            assert answer.status == 200
        await app.wait_idle(20)
        await app.stop()

    asyncio.run(scenario())
    assert app.stats["reactions"] == 1 and app.stats["duplicate_events"] == 1


def test_stop_cancels_runs_and_says_so(sandbox, ledger):
    from meshagent.models import ScriptedChatModel

    model = ScriptedChatModel(responses=["late"], latency=30)
    app = make_app(sandbox, ledger, agents(sandbox, ASK), chat_model=model)

    async def scenario() -> None:
        await dispatch(app, command(sandbox, "ask slow"))
        await asyncio.sleep(0.3)
        assert app.busy == 1
        await app.stop(timeout=10)
        assert app.busy == 0

    asyncio.run(scenario())
    [said] = response_posts(sandbox)
    assert "ask was interrupted: MeshAgent is stopping" in said["text"]
    [entry_id] = [row for row in [ledger.entry(r) for r in _run_ids(ledger)]]
    assert entry_id["status"] == "interrupted"


def _run_ids(ledger) -> list[str]:
    from sqlalchemy import select

    from meshagent.ledger.schema import entries

    return list(ledger.read(lambda c: c.execute(select(entries.c.run_id)).scalars().all()))


def test_socket_mode_needs_the_app_token(sandbox, ledger):
    app = make_app(sandbox, ledger, agents(sandbox))
    app._app_token = ""
    with pytest.raises(ConfigError, match="SLACK_APP_TOKEN"):
        asyncio.run(app.start_socket_mode())


def _socket_app(sandbox, ledger, *texts_: str, token: str | None = None):
    app = make_app(sandbox, ledger, agents(sandbox, *texts_))
    app._app_token = token if token is not None else sandbox.slack.app_token
    return app


async def _ack(sandbox, envelope_id: str) -> dict[str, Any]:
    return await asyncio.to_thread(sandbox.slack.socket_ack, envelope_id)


def test_socket_mode_end_to_end(sandbox, ledger):
    """A real Socket Mode connection: apps.connections.open, a WebSocket, envelopes, acks."""
    app = _socket_app(sandbox, ledger, ASK)

    async def scenario() -> tuple[dict[str, Any], dict[str, Any]]:
        await app.start_socket_mode()
        assert sandbox.slack.socket_connected
        sent = await asyncio.to_thread(
            sandbox.slack.socket_send, "slash_commands", command(sandbox, "ask hi")
        )
        ack = await _ack(sandbox, sent)
        await app.wait_idle(20)
        run_id = response_posts(sandbox)[-1]["blocks"][-1]["elements"][0]["value"]
        clicked = await asyncio.to_thread(
            sandbox.slack.socket_send,
            "interactive",
            click(sandbox, run_id, "meshagent_feedback_up"),
        )
        click_ack = await _ack(sandbox, clicked)
        await app.wait_idle(20)
        await app.stop()
        return ack, click_ack

    ack, click_ack = asyncio.run(scenario())
    assert ack["text"] == ":hourglass_flowing_sand: running ask…"
    assert click_ack == {}
    assert app.stats["feedback"] == 1
    sandbox.slack.wait_socket(connected=False)  # the sandbox saw the client leave
    assert sandbox.slack.calls.count("apps.connections.open") == 1


def test_a_wrong_app_token_fails_at_once(sandbox, ledger):
    app = _socket_app(sandbox, ledger, token="xapp-1-wrong")
    with pytest.raises(ConfigError, match=r"refused the app-level token in SLACK_APP_TOKEN \(inv"):
        asyncio.run(app.start_socket_mode())


def test_socket_mode_starts_only_once_slack_said_hello(sandbox, ledger):
    """start_socket_mode returns when envelopes can flow, not when the WebSocket opened."""
    app = _socket_app(sandbox, ledger)
    sandbox.slack.socket_hello_delay = 0.5

    async def scenario() -> float:
        loop = asyncio.get_running_loop()
        began = loop.time()
        await app.start_socket_mode()
        took = loop.time() - began
        assert sandbox.slack.socket_connected
        await app.stop()
        return took

    assert asyncio.run(scenario()) >= 0.5
    sandbox.slack.wait_socket(connected=False)  # the sandbox saw the client leave


def test_no_hello_in_time_fails_and_closes_the_client(sandbox, ledger):
    app = _socket_app(sandbox, ledger)
    sandbox.slack.socket_hello_delay = 5

    async def scenario() -> None:
        with pytest.raises(
            ConfigError, match=re.escape("Slack Socket Mode did not open within 0.5s")
        ):
            await app.start_socket_mode(timeout=0.5)
        mine = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        assert mine == []  # nothing of the slack_sdk client is left running

    asyncio.run(scenario())
    assert app._socket is None


def test_socket_mode_reconnects_when_slack_refreshes_the_connection(sandbox, ledger):
    app = _socket_app(sandbox, ledger, ASK)

    async def scenario() -> dict[str, Any]:
        await app.start_socket_mode()
        await asyncio.to_thread(sandbox.slack.socket_refresh)
        await asyncio.to_thread(sandbox.slack.wait_socket, connected=True, opens=2)
        sent = await asyncio.to_thread(
            sandbox.slack.socket_send, "slash_commands", command(sandbox, "ask hi")
        )
        ack = await _ack(sandbox, sent)
        await app.wait_idle(20)
        await app.stop()
        return ack

    ack = asyncio.run(scenario())
    assert ack["text"] == ":hourglass_flowing_sand: running ask…"
    assert sandbox.slack.calls.count("apps.connections.open") == 2  # a new URL for the new socket
    assert ledger.count() == 1
    sandbox.slack.wait_socket(connected=False)
