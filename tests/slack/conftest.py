"""The Slack app against the sandbox: signed requests to the app served by uvicorn, payloads.

``served`` runs ``SlackApp.asgi()`` with uvicorn on an event loop in a thread of its own, so
requests go through HTTP, Starlette, Bolt's adapter and its signature check exactly as Slack's
would; ``served.idle()`` waits for the app's background work on that loop.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import textwrap
import threading
import time
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
import uvicorn

from meshagent.agentfile.loader import load_agent, parse_agent
from meshagent.agentfile.spec import AgentSpec
from meshagent.config import Config
from meshagent.ledger.store import Ledger
from meshagent.runtime.runner import Runtime
from meshagent.slack import SlackApp

SECRET = "test-signing-secret-0123456789abcdef"
APP_TOKEN = "xapp-1-A0MESH-test"
STANDUP = Path(__file__).resolve().parents[2] / "agents" / "standup-digest.yaml"

ASK = """\
name: ask
description: Answers a question about the payments team.
owner: alice@example.com
team: payments
model: offline
instructions: Answer the question.
inputs:
  question: {type: string, description: What to answer}
  days: {type: integer, default: 7}
triggers:
  - slash: ask
    allow:
      users: [U0ALICE01, "@bob"]
      usergroups: ["@oncall"]
value: {tag: toil-reduction, minutes_saved: 5}
"""

SECRET_AGENT = """\
name: payroll
description: Payroll questions, for erin only.
owner: erin@example.com
team: people
model: offline
instructions: Answer.
triggers:
  - slash: payroll
    allow: {users: [erin@example.com]}
value: {tag: toil-reduction}
"""

SCHEDULED_ONLY = """\
name: nightly
owner: ops@example.com
team: platform
model: offline
instructions: Summarise.
triggers:
  - schedule: "0 3 * * *"
value: {tag: toil-reduction}
"""


def sign(body: str, *, secret: str = SECRET, timestamp: int | None = None) -> dict[str, str]:
    """Slack's headers for ``body``: v0 HMAC-SHA256 over ``v0:timestamp:body``."""
    stamp = str(int(time.time()) if timestamp is None else timestamp)
    digest = hmac.new(secret.encode(), f"v0:{stamp}:{body}".encode(), hashlib.sha256).hexdigest()
    return {"X-Slack-Request-Timestamp": stamp, "X-Slack-Signature": f"v0={digest}"}


def command(
    sandbox: Any,
    text: str,
    *,
    name: str = "/meshagent",
    user: str = "U0ALICE01",
    channel: str = "C0PAYMENTS",
) -> dict[str, str]:
    """A slash command payload, with a fresh response_url from the sandbox."""
    known = sandbox.slack.channels.get(channel)
    channel_name = known["name"] if known else "directmessage"
    return {
        "token": "legacy-verification-token",
        "team_id": "T0EXAMPLE",
        "team_domain": "example-corp",
        "channel_id": channel,
        "channel_name": channel_name,
        "user_id": user,
        "user_name": sandbox.slack.users[user]["name"],
        "command": name,
        "text": text,
        "api_app_id": "A0MESH",
        "is_enterprise_install": "false",
        "response_url": sandbox.response_url(channel),
        "trigger_id": "1.2.3",
    }


def form(payload: dict[str, str]) -> str:
    return urlencode(payload)


def click(
    sandbox: Any, run_id: str, action_id: str, *, user: str = "U0ALICE01", url: str | None = None
) -> dict[str, Any]:
    """A block_actions payload for a feedback button on an ephemeral result."""
    return {
        "type": "block_actions",
        "team": {"id": "T0EXAMPLE", "domain": "example-corp"},
        "user": {"id": user, "username": sandbox.slack.users[user]["name"], "team_id": "T0EXAMPLE"},
        "api_app_id": "A0MESH",
        "token": "legacy-verification-token",
        "container": {"type": "message", "is_ephemeral": True, "channel_id": "C0PAYMENTS"},
        "trigger_id": "1.2.4",
        "channel": {"id": "C0PAYMENTS", "name": "payments"},
        "response_url": url or sandbox.response_url("C0PAYMENTS"),
        "actions": [
            {
                "type": "button",
                "block_id": "meshagent_feedback",
                "action_id": action_id,
                "value": run_id,
                "action_ts": f"{time.time():.6f}",
            }
        ],
    }


def interaction(payload: dict[str, Any]) -> str:
    return urlencode({"payload": json.dumps(payload)})


def event(kind: str, *, user: str, reaction: str, channel: str, ts: str, event_id: str) -> dict:
    """An Events API envelope for a reaction_added / reaction_removed event."""
    return {
        "token": "legacy-verification-token",
        "team_id": "T0EXAMPLE",
        "api_app_id": "A0MESH",
        "event": {
            "type": kind,
            "user": user,
            "reaction": reaction,
            "item": {"type": "message", "channel": channel, "ts": ts},
            "item_user": "U0MESHBOT",
            "event_ts": f"{time.time():.6f}",
        },
        "type": "event_callback",
        "event_id": event_id,
        "event_time": int(time.time()),
        "authorizations": [{"team_id": "T0EXAMPLE", "user_id": "U0MESHBOT", "is_bot": True}],
    }


def agents(sandbox: Any, *texts: str) -> list[AgentSpec]:
    """The standup digest from agents/, and agents from YAML texts."""
    env = sandbox.env()
    found = [load_agent(STANDUP, env=env)]
    found += [parse_agent(textwrap.dedent(t), filename="a.yaml", env=env) for t in texts]
    return found


def make_app(
    sandbox: Any,
    ledger: Ledger,
    specs: list[AgentSpec],
    *,
    chat_model: Any = None,
    **settings: Any,
) -> SlackApp:
    env = sandbox.env() | {"SLACK_SIGNING_SECRET": SECRET, "SLACK_APP_TOKEN": APP_TOKEN}
    config = Config(ledger_url=ledger.url, **settings)
    runtime = Runtime(config, ledger=ledger, env=env, chat_model=chat_model, retry_base_seconds=0)
    return SlackApp(config, runtime, lambda: list(specs), env=env)


class Served:
    """``app.asgi()`` (or ``asgi``, an app that holds it) under uvicorn on 127.0.0.1, on a loop
    in its own thread."""

    def __init__(self, app: SlackApp, asgi: Any = None) -> None:
        self.app = app
        self.loop = asyncio.new_event_loop()
        config = uvicorn.Config(
            asgi if asgi is not None else app.asgi(),
            host="127.0.0.1",
            port=0,
            log_level="warning",
            ws="none",
            http="h11",
            lifespan="on",
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(
            target=self.loop.run_until_complete, args=(self.server.serve(),), daemon=True
        )

    def start(self) -> Served:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.01)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        self.base = f"http://127.0.0.1:{port}"
        self.url = f"{self.base}/slack/events"
        return self

    def post(
        self,
        body: str,
        *,
        content_type: str = "application/x-www-form-urlencoded",
        headers: dict[str, str] | None = None,
        signed: bool = True,
    ) -> httpx.Response:
        sent = {"Content-Type": content_type, **(sign(body) if signed else {}), **(headers or {})}
        return httpx.post(self.url, content=body.encode(), headers=sent, timeout=10)

    def command(self, sandbox: Any, text: str, **options: Any) -> httpx.Response:
        return self.post(form(command(sandbox, text, **options)))

    def run(self, work: Coroutine[Any, Any, Any], timeout: float = 30) -> Any:
        return asyncio.run_coroutine_threadsafe(work, self.loop).result(timeout)

    def idle(self, timeout: float = 20) -> None:
        self.run(self.app.wait_idle(timeout), timeout + 5)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(15)
        if not self.thread.is_alive() and not self.loop.is_closed():
            self.loop.run_until_complete(self.loop.shutdown_asyncgens())
            self.loop.close()


@pytest.fixture
def serve() -> Iterator[Any]:
    """serve(app[, asgi]) starts the app under uvicorn; every served app is stopped afterwards."""
    started: list[Served] = []

    def start(app: SlackApp, asgi: Any = None) -> Served:
        served = Served(app, asgi).start()
        started.append(served)
        return served

    yield start
    for served in started:
        served.stop()


def response_posts(sandbox: Any) -> list[dict[str, Any]]:
    return sandbox.slack.posted_via_response_urls()


def texts(message: dict[str, Any]) -> str:
    """Every text of a message: its fallback and its blocks' texts, joined."""
    parts = [message.get("text") or ""]
    for block in message.get("blocks") or []:
        if "text" in block:
            parts.append(block["text"]["text"])
        for element in block.get("elements") or []:
            text = element.get("text")
            parts.append(text["text"] if isinstance(text, dict) else str(text or ""))
    return "\n".join(parts)
