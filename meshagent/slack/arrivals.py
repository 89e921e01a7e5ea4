"""Once only, on whichever replica it lands: a signed request sent again is refused (401), an
event delivered again is acknowledged and not processed.

Both are nonces in the ledger database (`meshagent.ledger.nonces`), claimed by the replica
that sees them first, in one round trip per request however many keys it has: a signature
until its own timestamp plus Slack's five-minute window (plus a margin for the replicas'
clocks), so that it is remembered as long as it could be accepted; an event id for an hour
(Slack's retries come within minutes). In front sits a memory of the keys this process saw
lately: a key in it is refused without asking the database; a key not in it is asked, so
forgetting early is harmless. When the database cannot be asked within two seconds, the
request gets 503 (Slack retries events; a user sees the command failed): nothing is let
through unchecked.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from slack_bolt.middleware.async_middleware import AsyncMiddleware
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_bolt.response import BoltResponse

from meshagent.ledger.nonces import NonceClaims, nonce_key
from meshagent.slack.inbound import WINDOW_SECONDS, Signed
from meshagent.slack.seen import Seen

__all__ = ["SIGNED", "Arrivals"]

log = logging.getLogger(__name__)

#: The context key under which the HTTP route leaves a request's checked `Signed` headers.
SIGNED = "meshagent_signed"
#: How far two replicas' clocks may disagree: a signature is kept this much past its window.
CLOCK_MARGIN_SECONDS = 60
EVENT_MEMORY_SECONDS = 60 * 60
PURGE_EVERY_SECONDS = 5 * 60
_TIMED_OUT = ("http_timeout", "timeout")  # HTTP and Socket Mode names of a slow ack
_REFUSED = {"error": "invalid request"}


class Arrivals(AsyncMiddleware):
    """Bolt middleware (before authorization) that lets each request and event through once.

    ``purge(now)`` is called every few minutes, to delete the expired nonces in the background.
    """

    def __init__(
        self,
        claims: NonceClaims,
        stats: Counter[str],
        *,
        clock: Callable[[], float],
        purge: Callable[[datetime], None],
    ) -> None:
        self.claims = claims
        self.stats = stats
        self.clock = clock
        self.recent = Seen(20_000, ttl=WINDOW_SECONDS, clock=clock)
        self._purge = purge
        self._next_purge = clock() + PURGE_EVERY_SECONDS

    async def async_process(
        self,
        *,
        req: AsyncBoltRequest,
        resp: BoltResponse,
        next: Callable[[], Awaitable[BoltResponse]],
    ) -> BoltResponse | None:
        signed = None
        if req.mode == "http":
            signed = req.context.get(SIGNED)
            if not isinstance(signed, Signed):  # not through the route that checks signatures
                return BoltResponse(status=401, body=_REFUSED)
        refused = await self.check(signed, req.body, req.headers)
        return refused if refused is not None else await next()

    async def check(
        self,
        signed: Signed | None,
        body: Mapping[str, Any],
        headers: Mapping[str, Sequence[str]],
    ) -> BoltResponse | None:
        """The answer to a request seen before (or that cannot be checked now); None for a
        first arrival, now claimed. ``signed``: the checked headers of an HTTP request (None
        over Socket Mode); ``headers`` by lowercase name, as Bolt gives them."""
        now = self.clock()
        keys: dict[str, datetime] = {}
        signature = event = None
        if signed is not None:
            signature = nonce_key("slack-signature", signed.signature)
            if signature in self.recent:
                return self._replayed()
            keys[signature] = _at(signed.timestamp + WINDOW_SECONDS + CLOCK_MARGIN_SECONDS)
        if body.get("type") == "event_callback" and body.get("event_id"):
            event = nonce_key("slack-event", str(body["event_id"]))
            if event in self.recent:
                return self._duplicate()
            keys[event] = _at(now + EVENT_MEMORY_SECONDS)
        if not keys:
            return None
        try:
            claimed = await self.claims.claim(keys, now=_at(now))
        except Exception as exc:  # the ledger's error names the masked URL
            self.stats["replay_checks_failed"] += 1
            log.warning("could not check a Slack request for replay, refused it: %s", exc)
            return BoltResponse(status=503, body={"error": "try again"})
        for key in keys:
            self.recent.add(key)
        if now >= self._next_purge:
            self._next_purge = now + PURGE_EVERY_SECONDS
            self._purge(_at(now))
        if signature is not None and signature not in claimed:
            return self._replayed()
        if event is not None:
            retry = (headers.get("x-slack-retry-num") or [""])[0]
            reason = (headers.get("x-slack-retry-reason") or [""])[0]
            # A retry after a timeout: the first delivery reached an app, which acts on it.
            if event not in claimed or (retry and reason in _TIMED_OUT):
                return self._duplicate()
        return None

    def _replayed(self) -> BoltResponse:
        self.stats["replays_refused"] += 1
        log.warning("refused a replayed Slack request: its signature was seen before")
        return BoltResponse(status=401, body=_REFUSED)

    def _duplicate(self) -> BoltResponse:
        self.stats["duplicate_events"] += 1
        return BoltResponse(status=200, body="")


def _at(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)
