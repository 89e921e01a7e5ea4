"""The Slack app inside `meshagent serve`: HTTP on /slack/events, or Socket Mode at start-up."""

from __future__ import annotations

import asyncio
import textwrap

import httpx
import pytest

from meshagent.config import Config
from meshagent.exceptions import ConfigError
from meshagent.runtime import Runtime
from meshagent.server import create_app, metrics_text
from tests.slack.conftest import ASK, SECRET, command, response_posts, texts


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
