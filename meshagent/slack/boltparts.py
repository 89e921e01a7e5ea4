"""The parts of the Slack app that fit around Bolt and slack_sdk (see `meshagent.slack.app`):
authorization for the one workspace of the bot token, the middleware that hands every request's
client the app's one HTTP session, Bolt's logger, and the Socket Mode helpers (the app-level
token's check, Slack's hello frame, closing a handler with its tasks).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from slack_bolt.authorization import AuthorizeResult
from slack_bolt.authorization.async_authorize import AsyncAuthorize
from slack_bolt.middleware.async_middleware import AsyncMiddleware
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_bolt.response import BoltResponse
from slack_sdk.web.async_client import AsyncWebClient

from meshagent.exceptions import ConfigError
from meshagent.slack.redact import guarded
from meshagent.slack.respond import SharedSession

__all__ = [
    "APP_TOKENS",
    "REFUSALS",
    "AuthorizeOnce",
    "SharedSessionMiddleware",
    "bolt_logger",
    "check_app_token",
    "close_socket",
    "is_hello",
]

APP_TOKENS = "Basic Information > App-Level Tokens, with the connections:write scope"
# What Slack's refusal of an app-level token (apps.connections.open) means.
REFUSALS = {
    "invalid_auth": "mistyped, revoked or of another app",
    "missing_scope": "it lacks the connections:write scope",
    "token_revoked": "it was revoked",
    "account_inactive": "the app or its workspace is no longer active",
}


class AuthorizeOnce(AsyncAuthorize):
    """Bolt's ``authorize`` for the one workspace of ``client``'s bot token.

    Bolt's own single-workspace authorization asks Slack's auth.test on the first request and
    keeps the answer, but every request that arrives before that answer asks too: a burst of 200
    commands right after start made 200 auth.test calls (a method Slack rate-limits), each on a
    new HTTP session, and held every ack ~300 ms. Here the first request asks, the others wait
    for its answer, and a failed answer is not kept (the next request asks again). An
    ``AsyncAuthorize`` rather than a function: Bolt calls a function through its keyword
    injection (a signature inspection per request, on the path of every ack).
    """

    def __init__(self, client: AsyncWebClient) -> None:
        self.client = client
        self._identity: dict[str, Any] | None = None
        self._asking = asyncio.Lock()

    @property
    def known(self) -> bool:
        """Whether Slack said which workspace and bot the token is (once is enough)."""
        return self._identity is not None

    async def __call__(
        self,
        *,
        context: Any,
        enterprise_id: str | None,
        team_id: str | None,
        user_id: str | None,
        **_actor: Any,
    ) -> AuthorizeResult:
        if self._identity is None:
            async with self._asking:
                if self._identity is None:
                    test = await self.client.auth_test()
                    self._identity = {
                        "enterprise_id": test.get("enterprise_id"),
                        "team_id": test.get("team_id"),
                        "bot_id": test.get("bot_id"),
                        "bot_user_id": test.get("user_id"),
                        "bot_scopes": test.headers.get("x-oauth-scopes"),
                    }
        return AuthorizeResult(**self._identity, bot_token=self.client.token, user_id=user_id)


class SharedSessionMiddleware(AsyncMiddleware):
    """Bolt's clients of each request use the app's one HTTP session. A middleware class, not a
    function: Bolt calls a function through its keyword injection, a signature inspection per
    request on the path of every ack."""

    def __init__(self, client: AsyncWebClient, http: SharedSession) -> None:
        self.client, self.http = client, http

    async def async_process(
        self,
        *,
        req: AsyncBoltRequest,
        resp: BoltResponse,
        next: Callable[[], Awaitable[BoltResponse]],
    ) -> BoltResponse | None:
        self.client.session = self.http.get()
        return await next()


def check_app_token(token: str, env: str) -> None:
    """ConfigError when ``token`` (from the variable ``env``) cannot be an app-level token;
    Slack judges the rest."""
    if not token:
        raise ConfigError(f"set {env} to the app-level token (xapp-...) for Socket Mode")
    if any(char.isspace() for char in token):
        raise ConfigError(f"{env} has a space or a line break in it: set it to the token alone")
    if token.startswith("xox"):
        kind = {"xoxb": "a bot token", "xoxp": "a user token"}.get(token[:4], "an OAuth token")
        raise ConfigError(
            f"{env} holds {kind} ({token[:4]}-...), not the app-level token (xapp-...) that "
            f"Socket Mode needs: create one under {APP_TOKENS}"
        )
    if not token.startswith("xapp-"):
        raise ConfigError(
            f"{env} does not hold an app-level token (those start with xapp-): create one "
            f"under {APP_TOKENS}"
        )


def is_hello(data: object) -> bool:
    """Whether a WebSocket text frame is Slack's ``{"type": "hello", ...}``."""
    if not isinstance(data, str) or "hello" not in data:
        return False
    try:
        parsed = json.loads(data)
    except ValueError:
        return False
    return isinstance(parsed, dict) and parsed.get("type") == "hello"


async def close_socket(socket: Any) -> None:
    """Close a Socket Mode handler and wait for its client's tasks to end.

    slack_sdk's ``close()`` cancels the client's reader, monitor and processor tasks without
    awaiting them; awaited here, so that nothing of the client outlives ``stop()`` (or the
    event loop it ran on).
    """
    client = socket.client
    with contextlib.suppress(Exception):
        await socket.close_async()
    tasks = [
        task
        for task in (
            client.message_receiver,
            client.current_session_monitor,
            client.message_processor,
        )
        if task is not None and not task.done()
    ]
    for task in tasks:
        task.cancel()
    if tasks:
        await asyncio.wait(tasks, timeout=5)


def bolt_logger() -> logging.Logger:
    """Bolt's logger, and the Socket Mode client's: warnings and up (its info lines on refused
    requests show their bodies), secrets masked (a failed WebSocket handshake names its URL)."""
    logger = guarded("meshagent.slack.bolt")
    if logger.level == logging.NOTSET:
        logger.setLevel(logging.WARNING)
    return logger
