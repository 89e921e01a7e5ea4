"""Socket Mode: the same listeners through Bolt's dispatch, without signatures."""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import Callable
from typing import Any

import pytest
from slack_bolt.request.async_request import AsyncBoltRequest

from meshagent.config import Config
from meshagent.exceptions import ConfigError
from meshagent.runtime.runner import Runtime
from meshagent.slack import SlackApp
from tests.slack.conftest import (
    ASK,
    SECRET,
    agents,
    click,
    command,
    event,
    make_app,
    response_posts,
    texts,
)


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


@pytest.mark.parametrize(
    ("variable", "token", "said"),
    [
        ("SLACK_APP_TOKEN", "xoxb-1-2-bot", "SLACK_APP_TOKEN holds a bot token (xoxb-...), not the "
         "app-level token (xapp-...) that Socket Mode needs: create one under Basic Information"),
        ("SLACK_APP_TOKEN", "xoxp-1-2-user", "SLACK_APP_TOKEN holds a user token (xoxp-...)"),
        ("SLACK_APP_TOKEN", "A0MESH-1-2-abc", "SLACK_APP_TOKEN does not hold an app-level token "
         "(those start with xapp-)"),
        ("SLACK_APP_TOKEN", "xapp-1-A0MESH-1-abc\n", "SLACK_APP_TOKEN has a space or a line break"),
        ("SLACK_BOT_TOKEN", "xapp-1-A0MESH-1-abc", "SLACK_BOT_TOKEN holds an app-level token "
         "(xapp-...): set it to the Bot User OAuth Token (xoxb-...)"),
    ],
)  # fmt: skip
def test_a_token_of_the_wrong_kind_is_refused_before_slack_is_asked(
    sandbox, ledger, variable, token, said
):
    env = sandbox.env() | {"SLACK_APP_TOKEN": sandbox.slack.app_token, variable: token}
    config = Config(ledger_url=ledger.url)
    runtime = Runtime(config, ledger=ledger, env=env)
    with pytest.raises(ConfigError, match=re.escape(said)) as refused:
        SlackApp(config, runtime, list, env=env)
    assert token.strip() not in str(refused.value)
    assert sandbox.slack.calls == []


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


_SANDBOX_SIDE = ("aiohttp.access", "aiohttp.server", "aiohttp.web")  # Slack's end, not ours
_FORMAT = logging.Formatter("%(levelname)s %(name)s: %(message)s")


def _ours(caplog) -> list[tuple[logging.LogRecord, str]]:
    """The records MeshAgent's side logged, each with its text as a log handler writes it."""
    return [
        (record, _FORMAT.format(record))
        for record in caplog.records
        if not record.name.startswith(_SANDBOX_SIDE)
    ]


async def _until(what: Callable[[], bool], timeout: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not what():
        assert loop.time() < deadline, "not within the time"
        await asyncio.sleep(0.02)


def test_logs_never_show_the_socket_mode_url_or_a_secret(sandbox, ledger, caplog):
    """At DEBUG, through a connect, a command, a reconnect and a refused reconnect: slack_sdk's
    records of the Socket Mode URL are there, with its query masked; no token, no secret."""
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="meshagent.slack.bolt")
    app = _socket_app(sandbox, ledger, ASK)

    def refused() -> bool:
        return any("Failed to connect" in text for _, text in _ours(caplog))

    async def scenario() -> None:
        await app.start_socket_mode()
        sent = await asyncio.to_thread(
            sandbox.slack.socket_send, "slash_commands", command(sandbox, "ask hi")
        )
        await _ack(sandbox, sent)
        await app.wait_idle(20)
        await asyncio.to_thread(sandbox.slack.socket_refresh)
        await asyncio.to_thread(sandbox.slack.wait_socket, connected=True, opens=2)
        sandbox.slack.socket_refusals = 1  # the next handshake fails: slack_sdk logs its error
        await asyncio.to_thread(sandbox.slack.socket_refresh)
        await _until(refused)
        await app.stop()

    asyncio.run(scenario())
    # Bolt once set the package's logger ("meshagent", its app's name) to WARNING per request
    assert logging.getLogger("meshagent").level == logging.NOTSET
    tickets = sandbox.slack.socket_tickets
    assert len(tickets) == 3  # connect, reconnect, refused reconnect
    secrets = [*tickets, sandbox.slack.app_token, sandbox.slack_token, SECRET]
    logged = _ours(caplog)
    for _, text in logged:
        assert not [secret for secret in secrets if secret in text], text
        assert "?ticket" not in text and "&app_id" not in text, text
    masked_url = f"ws://127.0.0.1:{sandbox.slack_port}/link/?***"
    answers = [text for _, text in logged if f"'url': '{masked_url}'" in text]
    assert len(answers) == 3  # slack_sdk's DEBUG lines of the apps.connections.open answers
    [(failure, text)] = [(r, t) for r, t in logged if "Failed to connect" in t]
    assert failure.levelno == logging.ERROR and failure.name == "meshagent.slack.bolt"
    assert f"url='{masked_url}'" in text and "Traceback (most recent call last)" in text
