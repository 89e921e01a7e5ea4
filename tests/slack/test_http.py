"""HTTP mode: the signing-secret check, and nothing acted on without a valid signature."""

from __future__ import annotations

import json
import time

import pytest

from meshagent.exceptions import ConfigError
from tests.slack.conftest import (
    SECRET,
    agents,
    command,
    form,
    make_app,
    response_posts,
    sign,
)


def _nothing_done(sandbox, ledger) -> None:
    assert ledger.count() == 0
    assert response_posts(sandbox) == []
    assert sandbox.slack.calls == []  # not even auth.test: refused before authorization


def test_a_signed_command_is_acknowledged_and_answered(sandbox, ledger, serve):
    served = serve(make_app(sandbox, ledger, agents(sandbox)))
    answer = served.command(sandbox, "help")
    assert answer.status_code == 200
    body = answer.json()
    assert body["response_type"] == "ephemeral"
    assert "/meshagent list" in body["blocks"][0]["text"]["text"]
    assert "`/standup`" in body["blocks"][0]["text"]["text"]


def test_a_command_that_says_payload_is_answered_once_the_app_is_warm(sandbox, ledger, serve):
    """Bolt takes any form body with "payload" in it for interactivity; a slash command whose
    text says it is answered by the app's own route once the workspace is known."""
    served = serve(make_app(sandbox, ledger, agents(sandbox)))
    assert served.command(sandbox, "help").status_code == 200  # the first: through Bolt
    answer = served.command(sandbox, "help payload=full")
    assert answer.status_code == 200
    assert "/meshagent list" in answer.json()["blocks"][0]["text"]["text"]


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({}, id="missing"),
        pytest.param(sign("x", secret="not-the-secret"), id="wrong-secret"),
        pytest.param({"X-Slack-Request-Timestamp": str(int(time.time()))}, id="no-signature"),
    ],
)
def test_an_unsigned_or_badly_signed_request_gets_401(sandbox, ledger, serve, headers):
    served = serve(make_app(sandbox, ledger, agents(sandbox)))
    body = form(command(sandbox, "run standup"))
    if headers.get("X-Slack-Signature"):
        headers = sign(body, secret="not-the-secret")
    answer = served.post(body, headers=headers, signed=False)
    assert answer.status_code == 401
    served.idle()
    _nothing_done(sandbox, ledger)


def test_a_stale_timestamp_gets_401(sandbox, ledger, serve):
    served = serve(make_app(sandbox, ledger, agents(sandbox)))
    body = form(command(sandbox, "run standup"))
    stale = sign(body, timestamp=int(time.time()) - 6 * 60)  # validly signed, 6 minutes old
    assert served.post(body, headers=stale, signed=False).status_code == 401
    future = sign(body, timestamp=int(time.time()) + 6 * 60)
    assert served.post(body, headers=future, signed=False).status_code == 401
    served.idle()
    _nothing_done(sandbox, ledger)


def test_a_tampered_body_gets_401(sandbox, ledger, serve):
    served = serve(make_app(sandbox, ledger, agents(sandbox)))
    payload = command(sandbox, "help")
    headers = sign(form(payload))
    payload["text"] = "run standup"  # changed after signing
    assert served.post(form(payload), headers=headers, signed=False).status_code == 401
    served.idle()
    _nothing_done(sandbox, ledger)


def test_a_replayed_request_gets_401_and_runs_once(sandbox, ledger, serve):
    app = make_app(sandbox, ledger, agents(sandbox))
    served = serve(app)
    body = form(command(sandbox, "run standup"))
    headers = sign(body)
    assert served.post(body, headers=headers, signed=False).status_code == 200
    assert served.post(body, headers=headers, signed=False).status_code == 401
    served.idle()
    assert ledger.count() == 1
    assert app.stats["replays_refused"] == 1


def test_the_signature_covers_the_raw_json_body_of_events(sandbox, ledger, serve):
    served = serve(make_app(sandbox, ledger, agents(sandbox)))
    body = json.dumps({"type": "url_verification", "challenge": "c-123", "token": "t"})
    answer = served.post(body, content_type="application/json")
    assert answer.status_code == 200 and answer.json() == {"challenge": "c-123"}
    tampered = body.replace("c-123", "c-999")
    bad = served.post(tampered, content_type="application/json", headers=sign(body), signed=False)
    assert bad.status_code == 401


def test_http_mode_needs_the_signing_secret(sandbox, ledger):
    app = make_app(sandbox, ledger, agents(sandbox))
    app._signing_secret = ""
    with pytest.raises(ConfigError, match="SLACK_SIGNING_SECRET"):
        app.routes()


def test_the_bot_token_is_required(sandbox, ledger):
    from meshagent.config import Config
    from meshagent.runtime.runner import Runtime
    from meshagent.slack import SlackApp

    config = Config(ledger_url=ledger.url)
    runtime = Runtime(config, ledger=ledger, env={})
    with pytest.raises(ConfigError, match="SLACK_BOT_TOKEN"):
        SlackApp(config, runtime, list, env={"SLACK_SIGNING_SECRET": SECRET})


def test_only_post_is_served(sandbox, ledger, serve):
    import httpx

    served = serve(make_app(sandbox, ledger, agents(sandbox)))
    assert httpx.get(served.url).status_code == 405
