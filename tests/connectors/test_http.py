"""http.get through the registry against a real local HTTP server, with real httpx."""

from __future__ import annotations

import asyncio
import json
import re
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from meshagent.actions import ActionContext, default_registry
from meshagent.exceptions import ConnectorError, GrantDenied

GET = default_registry().get("http.get")


class Handler(BaseHTTPRequestHandler):
    seen: list[tuple[str, dict[str, str]]] = []

    def log_message(self, *args: object) -> None:  # keep test output clean
        pass

    def _send(self, status: int, body: bytes, content_type: str, **headers: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:  # noqa: N802 (the stdlib's name)
        Handler.seen.append((self.path, dict(self.headers)))
        path = self.path.split("?")[0]
        if path == "/api/status.json":
            body = {"status": "ok", "components": [{"name": "db", "status": "degraded"}]}
            self._send(200, json.dumps(body).encode(), "application/json")
        elif path == "/api/echo":
            body = {"query": self.path.partition("?")[2], "auth": self.headers.get("Authorization")}
            self._send(200, json.dumps(body).encode(), "application/json")
        elif path == "/api/text":
            self._send(200, "plain words, naïve".encode(), "text/plain; charset=utf-8")
        elif path == "/api/big":
            self._send(200, b"x" * 5000, "text/plain")
        elif path == "/api/slow":
            time.sleep(0.5)
            self._send(200, b"late", "text/plain")
        elif path == "/api/broken-json":
            self._send(200, b"{not json", "application/json")
        elif path == "/api/hop":
            self._send(302, b"", "text/plain", Location="/api/status.json")
        elif path == "/api/cross":
            self._send(302, b"", "text/plain", Location="http://localhost:1/x")
        elif path == "/api/away":
            self._send(302, b"", "text/plain", Location="/private/secret")
        else:
            self._send(404, b"no", "text/plain")


@pytest.fixture
def server() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    Handler.seen = []
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()
    thread.join()


def call(url: str, grant: list[str] | None = None, env: dict[str, str] | None = None, **args):
    parsed = GET.args.model_validate({"url": url, **args})
    granted = GET.grant.model_validate({"url_prefixes": grant}) if grant else None
    return asyncio.run(GET(ActionContext(env=env or {}), parsed, granted))


def test_json_is_parsed_and_selected(server):
    result = call(f"{server}/api/status.json", select=["status", "components"])
    assert result.data == {"status": "ok", "components": [{"name": "db", "status": "degraded"}]}
    assert result.outcomes == []
    assert call(f"{server}/api/status.json", select=["status"]).data == {"status": "ok"}


def test_text_is_decoded_with_its_charset(server):
    assert call(f"{server}/api/text").data == "plain words, naïve"


def test_params_and_secret_headers_arrive(server):
    result = call(
        f"{server}/api/echo",
        env={"STATUS_TOKEN": "s3cret"},
        params={"team": "pay", "limit": 5},
        headers={"Authorization": "Bearer ${STATUS_TOKEN}"},
    )
    assert result.data == {"query": "team=pay&limit=5", "auth": "Bearer s3cret"}


def test_missing_environment_variable_is_named_not_valued(server):
    with pytest.raises(ConnectorError, match=re.escape("environment variable NOPE is not set")):
        call(f"{server}/api/echo", headers={"Authorization": "Bearer ${NOPE}"})
    assert Handler.seen == []


def test_size_limit(server):
    message = f"http.get {server}/api/big: response larger than 1000 bytes"
    with pytest.raises(ConnectorError, match=re.escape(message)):
        call(f"{server}/api/big", max_bytes=1000)


def test_timeout(server):
    with pytest.raises(ConnectorError, match=re.escape(": timed out after 0.1s")):
        call(f"{server}/api/slow", timeout_seconds=0.1)


def test_http_error_status_and_bad_json(server):
    with pytest.raises(ConnectorError, match=re.escape(f"http.get {server}/nope: HTTP 404")):
        call(f"{server}/nope")
    with pytest.raises(ConnectorError, match="invalid JSON at line 1"):
        call(f"{server}/api/broken-json")


def test_secret_never_appears_in_errors(server):
    with pytest.raises(ConnectorError) as caught:
        call(f"{server}/nope", env={"T": "s3cret"}, headers={"Authorization": "${T}"})
    assert "s3cret" not in str(caught.value)


@pytest.mark.parametrize(
    "url",
    [
        "{server}/apiv2/status.json",  # not at a segment boundary
        "{server}/api/../private/secret",  # climbing out
        "{server}/api/%2e%2e/private/secret",  # climbing out, encoded
        "http://localhost:1/api/status.json",  # another host
        "https://127.0.0.1/api/status.json",  # another scheme and port
        "http://user@127.0.0.1:1@evil.example.com/api/",  # userinfo trick
    ],
)
def test_calls_outside_the_grant_are_refused_before_any_request(server, url):
    with pytest.raises(GrantDenied, match="outside the granted prefixes"):
        call(url.format(server=server), grant=[f"{server}/api/"])
    assert Handler.seen == []


def test_host_suffix_trick_is_refused():
    with pytest.raises(GrantDenied):
        call("https://api.example.com.evil.com/x", grant=["https://api.example.com/"])


def test_prefix_without_trailing_slash_allows_itself_and_below(server):
    assert call(f"{server}/api/status.json", grant=[f"{server}/api/status.json"]).data
    assert call(f"{server}/api/echo", grant=[f"{server}/api"]).data


def test_redirects_are_checked_hop_by_hop(server):
    assert call(f"{server}/api/hop", grant=[f"{server}/api/"]).data["status"] == "ok"
    with pytest.raises(GrantDenied, match=re.escape(f"redirect to {server}/private/secret")):
        call(f"{server}/api/away", grant=[f"{server}/api/"])
    assert [path for path, _ in Handler.seen] == ["/api/hop", "/api/status.json", "/api/away"]


def test_fixed_call_follows_same_origin_redirects_only(server):
    assert call(f"{server}/api/hop").data["status"] == "ok"
    message = f"redirect from {server}/api/cross to another origin: http://localhost:1/x"
    with pytest.raises(GrantDenied, match=re.escape(message)):
        call(f"{server}/api/cross")
