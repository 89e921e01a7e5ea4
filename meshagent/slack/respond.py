"""Where a command's later messages go: its response_url, within Slack's budget, else fallbacks.

Slack lets a response_url be used five times within 30 minutes. A command plans its messages:
"running <agent>…" goes in the acknowledgement itself (no use), the result takes one use (more
only for an answer too long for one message), and a feedback click answers through the click's
own response_url. When the budget is spent, the URL has expired or Slack refuses it, the message
goes as an ephemeral message in the channel, and failing that as a direct message.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import aiohttp
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.webhook.async_client import AsyncWebhookClient

__all__ = [
    "RESPONSE_URL_SECONDS",
    "RESPONSE_URL_USES",
    "Reply",
    "ResponseUrl",
    "ResponseUrls",
    "SharedSession",
]

log = logging.getLogger(__name__)

RESPONSE_URL_USES = 5
RESPONSE_URL_SECONDS = 30 * 60
_MARGIN_SECONDS = 30  # do not start a post this close to the URL's expiry


class SharedSession:
    """One aiohttp session for the app's outgoing calls (Web API and response_urls).

    slack_sdk opens a session per call when given none: a new connection pool and cookie jar
    each time, which under a burst of commands costs more CPU than the call itself. The
    session belongs to the event loop it was opened on; on another loop a new one is opened.
    It keeps no cookies, as the per-call sessions kept none between calls.
    """

    def __init__(self) -> None:
        self._session: aiohttp.ClientSession | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def get(self) -> aiohttp.ClientSession:
        loop = asyncio.get_running_loop()
        if self._session is None or self._session.closed or self._loop is not loop:
            self._session = aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar())
            self._loop = loop
        return self._session

    async def close(self) -> None:
        session, self._session = self._session, None
        if session is not None and self._loop is asyncio.get_running_loop():
            await session.close()


class ResponseUrl:
    """One response_url and what is left of its budget (uses and time)."""

    def __init__(
        self,
        url: str,
        *,
        uses: int = RESPONSE_URL_USES,
        seconds: float = RESPONSE_URL_SECONDS,
        clock: Callable[[], float] = time.monotonic,
        session: SharedSession | None = None,
    ) -> None:
        self.url = url
        self.session = session
        self.limit = uses
        self.used = 0
        self._clock = clock
        self._until = clock() + seconds - _MARGIN_SECONDS

    def __repr__(self) -> str:  # the URL is a credential: never shown
        return f"ResponseUrl(used={self.used}/{self.limit})"

    @property
    def left(self) -> int:
        """Posts still allowed now: 0 once used up or expired."""
        if self._clock() >= self._until:
            return 0
        return max(0, self.limit - self.used)

    async def send(self, message: dict[str, Any]) -> bool:
        """Post ``message``; False when the budget is spent or Slack refused it."""
        if self.left <= 0:
            return False
        self.used += 1
        try:
            shared = self.session.get() if self.session is not None else None
            answer = await AsyncWebhookClient(self.url, timeout=15, session=shared).send_dict(
                message
            )
        except (aiohttp.ClientError, SlackClientError, OSError, TimeoutError) as exc:
            log.warning("response_url post failed: %s", type(exc).__name__)
            return False
        if answer.status_code != 200:
            log.warning("response_url refused a post: HTTP %s %s", answer.status_code, answer.body)
            if answer.status_code == 404:  # used up or expired on Slack's side
                self.used = self.limit
            return False
        return True


class ResponseUrls:
    """The response_urls seen lately (one per message with buttons), so clicks share a budget."""

    def __init__(self, maxsize: int = 2_000, *, session: SharedSession | None = None) -> None:
        self.maxsize = maxsize
        self.session = session
        self._urls: OrderedDict[str, ResponseUrl] = OrderedDict()

    def get(self, url: str) -> ResponseUrl:
        found = self._urls.get(url)
        if found is None:
            found = self._urls[url] = ResponseUrl(url, session=self.session)
            while len(self._urls) > self.maxsize:
                self._urls.popitem(last=False)
        else:
            self._urls.move_to_end(url)
        return found


class Reply:
    """The way back to the person behind one command: response_url, else ephemeral, else DM."""

    def __init__(
        self,
        client: AsyncWebClient,
        response_url: ResponseUrl | None,
        *,
        channel: str,
        user: str,
    ) -> None:
        self.client = client
        self.response_url = response_url
        self.channel = channel
        self.user = user
        self.fallbacks = 0

    @property
    def left(self) -> int:
        """Messages the response_url still takes (at least 1: the fallbacks take the rest)."""
        return max(1, self.response_url.left if self.response_url is not None else 0)

    async def send(self, message: dict[str, Any]) -> bool:
        """Deliver one message to the person; False when no way reached them."""
        if self.response_url is not None and await self.response_url.send(message):
            return True
        self.fallbacks += 1
        text, blocks = message.get("text") or " ", message.get("blocks")
        try:
            await self.client.chat_postEphemeral(
                channel=self.channel, user=self.user, text=text, blocks=blocks
            )
            return True
        except (SlackApiError, SlackClientError, aiohttp.ClientError, OSError) as exc:
            log.info("ephemeral reply failed (%s): sending a direct message", _code(exc))
        try:
            opened = await self.client.conversations_open(users=self.user)
            dm = opened["channel"]["id"]
            await self.client.chat_postMessage(channel=dm, text=text, blocks=blocks)
            return True
        except (SlackApiError, SlackClientError, aiohttp.ClientError, OSError) as exc:
            log.warning("could not reply to %s: %s", self.user, _code(exc))
            return False


def _code(exc: BaseException) -> str:
    if isinstance(exc, SlackApiError):
        data = exc.response.data
        return str(data.get("error") if isinstance(data, dict) else exc.response.status_code)
    return type(exc).__name__
