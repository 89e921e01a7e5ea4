"""The Slack app inside `meshagent serve`: HTTP on /slack/events, or Socket Mode at start-up."""

from __future__ import annotations

import asyncio
import logging
import os
import re
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import httpx
import pytest

from meshagent.config import Config
from meshagent.exceptions import ConfigError
from meshagent.fleet.server import create_app, metrics_text
from meshagent.runtime.runner import Runtime
from tests.serve.test_cluster import _free_port, _wait_ready
from tests.slack.conftest import ASK, SECRET, command, form, response_posts, sign, texts


def _serve_app(sandbox, ledger, tmp_path, **secrets: str):
    agents = tmp_path / "agents"
    agents.mkdir()
    (agents / "ask.yaml").write_text(textwrap.dedent(ASK), encoding="utf-8")
    env = sandbox.env() | secrets
    config = Config(root=tmp_path, ledger_url=ledger.url)
    runtime = Runtime(config, ledger=ledger, env=env, retry_base_seconds=0)
    return create_app(config, runtime=runtime, agents_dir=agents, dashboard=False)


def test_serve_answers_signed_commands_on_slack_events(sandbox, ledger, tmp_path, serve):
    app = _serve_app(sandbox, ledger, tmp_path, SLACK_SIGNING_SECRET=SECRET)
    served = serve(app.state.slack, app)
    assert httpx.get(f"{served.base}/healthz").text == "ok\n"
    answer = served.command(sandbox, "ask what changed?")
    assert answer.status_code == 200
    assert answer.json()["text"] == ":hourglass_flowing_sand: running ask…"
    served.idle()
    [result] = response_posts(sandbox)
    assert '"what changed?"' in texts(result)
    assert ledger.count() == 1
    assert served.post("text=help", signed=False).status_code == 401
    assert not sandbox.slack.calls.count("apps.connections.open")  # HTTP only
    metrics = httpx.get(f"{served.base}/metrics").text
    assert 'meshagent_slack_total{kind="commands"} 1\n' in metrics
    assert 'meshagent_slack_total{kind="feedback"} 0\n' in metrics


def test_metrics_without_slack_have_no_slack_series(sandbox, ledger, tmp_path):
    app = _serve_app(sandbox, ledger, tmp_path)
    assert "meshagent_slack_total" not in metrics_text(app.state.fleet)


def test_serve_connects_over_socket_mode_with_the_app_token(sandbox, ledger, tmp_path, serve):
    app = _serve_app(sandbox, ledger, tmp_path, SLACK_APP_TOKEN=sandbox.slack.app_token)
    served = serve(app.state.slack, app)
    assert sandbox.slack.socket_connected  # lifespan start-up waits for Slack's hello
    assert httpx.post(served.url, content=b"x").status_code == 404  # no HTTP endpoint
    sent = sandbox.slack.socket_send("slash_commands", command(sandbox, "ask hi"))
    ack = sandbox.slack.socket_ack(sent)
    assert ack["text"] == ":hourglass_flowing_sand: running ask…"
    served.idle()
    assert ledger.count() == 1
    served.stop()
    sandbox.slack.wait_socket(connected=False)  # shutdown closed the connection


def test_serve_without_slack_secrets_has_no_slack(sandbox, ledger, tmp_path):
    app = _serve_app(sandbox, ledger, tmp_path)
    assert app.state.slack is None


def test_serve_refuses_a_wrong_app_token_at_start_up(sandbox, ledger, tmp_path):
    app = _serve_app(sandbox, ledger, tmp_path, SLACK_APP_TOKEN="xapp-1-wrong")

    async def start() -> None:
        async with app.router.lifespan_context(app):
            pass

    with pytest.raises(ConfigError, match="refused the app-level token in SLACK_APP_TOKEN"):
        asyncio.run(start())


def test_a_refused_start_tells_the_server_one_line(sandbox, ledger, tmp_path):
    """Through the ASGI lifespan protocol, as uvicorn drives it: the failure's message is the
    error's one line, not Starlette's traceback."""
    app = _serve_app(sandbox, ledger, tmp_path, SLACK_APP_TOKEN="xapp-1-A0MESH-1-wrong")
    sent: list[dict] = []

    async def start() -> None:
        incoming: asyncio.Queue[dict] = asyncio.Queue()
        incoming.put_nowait({"type": "lifespan.startup"})

        async def send(message: dict) -> None:
            sent.append(message)

        scope = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}
        with pytest.raises(ConfigError):
            await app(scope, incoming.get, send)

    asyncio.run(start())
    [failed] = sent
    assert failed["type"] == "lifespan.startup.failed"
    assert failed["message"] == str(app.state.startup_error)
    assert failed["message"].startswith(
        "Slack refused the app-level token in SLACK_APP_TOKEN (invalid_auth: "
    )
    assert "\n" not in failed["message"] and "Traceback" not in failed["message"]


def test_an_app_token_without_the_bot_token_is_refused(sandbox, ledger, tmp_path):
    env = {"SLACK_APP_TOKEN": sandbox.slack.app_token, "SLACK_BOT_TOKEN": ""}
    with pytest.raises(ConfigError, match=re.escape("set SLACK_BOT_TOKEN to the Slack bot token")):
        _serve_app(sandbox, ledger, tmp_path, **env)


def test_the_bot_token_alone_turns_no_slack_app_on_and_says_so(sandbox, ledger, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="meshagent.fleet.server")
    app = _serve_app(sandbox, ledger, tmp_path)
    assert app.state.slack is None
    assert "Slack app off: set SLACK_APP_TOKEN (Socket Mode) or SLACK_SIGNING_SECRET (HTTP)" in (
        caplog.text
    )


def _serve_process(
    tmp_path: Path, name: str, env: dict[str, str], *options: str
) -> tuple[subprocess.Popen, int, Path]:
    """`meshagent serve` as a process of its own, its output in a file (a pipe could fill)."""
    agents = tmp_path / "agents"
    agents.mkdir(exist_ok=True)
    (agents / "ask.yaml").write_text(textwrap.dedent(ASK), encoding="utf-8")
    port = _free_port()
    log = tmp_path / f"{name}.log"
    argv = [sys.executable, "-m", "meshagent", "serve", "--port", str(port),
            "--agents", str(agents), *options]  # fmt: skip
    ledger = f"sqlite:///{tmp_path / name}.db"
    with log.open("w") as out:
        process = subprocess.Popen(
            argv,
            env={**os.environ, "MESHAGENT_LEDGER_URL": ledger, **env},
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
        )
    return process, port, log


def test_serve_refuses_wrong_slack_tokens_in_one_line_without_a_traceback(sandbox, tmp_path):
    """A wrong app token (Slack says invalid_auth), a bot token given as the app token, an app
    token without the bot token: one line each, saying which variable and what to do; exit 2."""
    wrong = "xapp-1-A0MESH-1-0123456789-wrong"
    cases = {
        "wrong": ({"SLACK_APP_TOKEN": wrong},
                  "Slack refused the app-level token in SLACK_APP_TOKEN (invalid_auth: mistyped, "
                  "revoked or of another app): set SLACK_APP_TOKEN to an app-level token"),
        "bot": ({"SLACK_APP_TOKEN": sandbox.slack_token},
                "error: SLACK_APP_TOKEN holds a bot token (xoxb-...), not the app-level token "
                "(xapp-...) that Socket Mode needs: create one under Basic Information > "
                "App-Level Tokens, with the connections:write scope"),
        "no-bot": ({"SLACK_APP_TOKEN": sandbox.slack.app_token, "SLACK_BOT_TOKEN": ""},
                   "error: set SLACK_BOT_TOKEN to the Slack bot token (xoxb-...)"),
    }  # fmt: skip
    env = sandbox.env()
    started = {
        name: _serve_process(tmp_path, name, env | extra) for name, (extra, _) in cases.items()
    }
    for name, (process, _, log) in started.items():
        try:
            code = process.wait(timeout=60)
        finally:
            if process.poll() is None:
                process.kill()
        output = log.read_text()
        said = cases[name][1]
        assert code == 2, output
        assert "Traceback" not in output and 'File "' not in output, output
        [line] = [line for line in output.splitlines() if "SLACK_" in line]
        assert said in line, output
        for secret in (wrong, sandbox.slack_token, sandbox.slack.app_token):
            assert secret not in output
    assert sandbox.slack.calls.count("apps.connections.open") == 1  # the others: refused before


def test_serve_at_debug_logs_no_socket_mode_url_token_or_secret(sandbox, tmp_path):
    """`meshagent serve --log-level debug` in both modes, through a command each way and a
    reconnect: slack_sdk's lines about the Socket Mode URL are there, masked; no secret is."""
    env = sandbox.env() | {"SLACK_APP_TOKEN": sandbox.slack.app_token,
                           "SLACK_SIGNING_SECRET": SECRET}  # fmt: skip
    process, port, log = _serve_process(tmp_path, "debug", env, "--log-level", "debug")
    try:
        _wait_ready(port, process)
        sandbox.slack.wait_socket(connected=True)
        sent = sandbox.slack.socket_send("slash_commands", command(sandbox, "ask over socket"))
        assert sandbox.slack.socket_ack(sent)["text"] == ":hourglass_flowing_sand: running ask…"
        body = form(command(sandbox, "ask over http"))
        headers = {"Content-Type": "application/x-www-form-urlencoded", **sign(body)}
        url = f"http://127.0.0.1:{port}/slack/events"
        assert httpx.post(url, content=body, headers=headers, timeout=10).status_code == 200
        sandbox.slack.socket_refresh()
        sandbox.slack.wait_socket(connected=True, opens=2, timeout=10)
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    output = log.read_text()
    assert len(sandbox.slack.socket_tickets) == 2
    for secret in (*sandbox.slack.socket_tickets, sandbox.slack.app_token, sandbox.slack_token,
                   SECRET):  # fmt: skip
        assert secret not in output
    assert "?ticket" not in output
    assert output.count(f"'url': 'ws://127.0.0.1:{sandbox.slack_port}/link/?***'") == 2
    assert "Slack Socket Mode connected" in output
