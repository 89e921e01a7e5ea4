"""A runtime's http.get client serves every run: a cookie a site set in one run must not be sent
in another (another agent, owner or site would get a session that is not theirs). Within one
fetch, a cookie set by a redirect hop still goes to the next hop, as a fresh client did."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler

import pytest

from meshagent.config import Config
from meshagent.models import ScriptedChatModel
from meshagent.runtime.runner import Runtime
from tests.runtime.conftest import agent
from tests.runtime.http_site import serving


class CookieSite(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    cookies_seen: list[str | None] = []

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:  # noqa: N802 (the stdlib's name)
        CookieSite.cookies_seen.append(self.headers.get("Cookie"))
        if self.path.startswith("/login"):  # sets a session, as a sign-in page would
            self._send(200, {"signed_in": True}, ("Set-Cookie", "session=alice-secret; Path=/"))
        elif self.path.startswith("/hop"):  # sets a cookie and sends the client on
            self._send(302, {}, ("Set-Cookie", "step=1; Path=/"), ("Location", "/whoami"))
        else:
            self._send(200, {"cookie": self.headers.get("Cookie")})

    def _send(self, status: int, data: dict, *headers: tuple[str, str]) -> None:
        body = json.dumps(data).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for name, value in headers:
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def site() -> Iterator[str]:
    CookieSite.cookies_seen = []
    with serving(CookieSite) as url:
        yield url


def fetcher(name: str, url: str) -> str:
    return f"""
        name: {name}
        owner: {name}@example.com
        team: ops
        model: scripted
        instructions: Summarise what the site said.
        context:
          - http.get: {{url: "{url}"}}
        deliver: []
        value: {{tag: toil-reduction, minutes_saved: 1}}
    """


def test_a_cookie_set_in_one_run_is_not_sent_in_the_next(site, ledger):
    model = ScriptedChatModel(responses=[{"content": "ok"}] * 3)
    runtime = Runtime(Config(ledger_url=ledger.url), ledger=ledger, env={}, chat_model=model)

    async def runs() -> None:
        first = await runtime.run(agent(fetcher("alice", f"{site}/login")))
        second = await runtime.run(agent(fetcher("mallory", f"{site}/whoami")))
        third = await runtime.run(agent(fetcher("bob", f"{site}/hop")))
        assert [r.status for r in (first, second, third)] == ["ok"] * 3
        assert runtime.clients.made == 1  # one pooled client served all three runs
        await runtime.aclose()

    asyncio.run(runs())
    # login, whoami (mallory: no alice session), hop, whoami after the hop (its own cookie only)
    assert CookieSite.cookies_seen == [None, None, None, "step=1"]
