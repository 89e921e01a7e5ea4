"""What an HTTP request must be before Bolt sees it: a body within the size limit, counted as
it arrives; one timestamp and one signature, each in the exact form Slack sends; a timestamp
within five minutes of now; and Slack's v0 HMAC-SHA256 over the raw body with the signing
secret.

Plain functions over bytes and strings, apart from `read_body` (an ASGI request's stream).
Anything else is refused (`Refused`, an HTTP 401), never raised as something else: the
headers are parsed by patterns, not by ``int()``, which takes ``+1``, ``1_0``, ``٠١`` and
spaces, and raises on the rest.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import AsyncIterable, Sequence
from dataclasses import dataclass

__all__ = ["Refused", "Signed", "TooLarge", "read_body", "verify"]

#: How far a request's timestamp may be from now, either way (Slack's own rule).
WINDOW_SECONDS = 5 * 60
# Seconds since the epoch, as Slack writes them: ASCII digits, no sign, no leading zero.
_TIMESTAMP = re.compile(r"[1-9][0-9]{0,11}")
_SIGNATURE = re.compile(r"v0=[0-9a-f]{64}")


class Refused(Exception):
    """The request is not one Slack signed just now; the reason is for the log, not the
    sender."""


class TooLarge(Exception):
    """The body went over the limit; what was left of it was not read."""


@dataclass(frozen=True)
class Signed:
    """A request that passed: its timestamp and its signature."""

    timestamp: int
    signature: str


async def read_body(
    chunks: AsyncIterable[bytes], *, limit: int, declared: str | None = None
) -> bytes:
    """The body, read up to ``limit`` bytes; `TooLarge` as soon as it goes over, whatever the
    Content-Length header said (a chunked body has none). A ``declared`` length over the limit
    is refused before anything is read."""
    if declared and declared.isascii() and declared.isdigit() and int(declared) > limit:
        raise TooLarge(f"the body is declared over {limit} bytes")
    parts: list[bytes] = []
    size = 0
    async for chunk in chunks:
        size += len(chunk)
        if size > limit:
            raise TooLarge(f"the body is over {limit} bytes")
        parts.append(chunk)
    return b"".join(parts)


def verify(
    secret: str,
    body: bytes,
    *,
    timestamps: Sequence[str],
    signatures: Sequence[str],
    now: float,
) -> Signed:
    """Check a request's signing headers (every value each header had) against ``body``."""
    if len(timestamps) != 1:
        raise Refused(f"{len(timestamps)} X-Slack-Request-Timestamp headers, not 1")
    if len(signatures) != 1:
        raise Refused(f"{len(signatures)} X-Slack-Signature headers, not 1")
    stamp, signature = timestamps[0], signatures[0]
    if not _TIMESTAMP.fullmatch(stamp):
        raise Refused("X-Slack-Request-Timestamp is not a whole number of seconds")
    if not _SIGNATURE.fullmatch(signature):
        raise Refused("X-Slack-Signature is not v0= and 64 lowercase hex digits")
    timestamp = int(stamp)
    if abs(now - timestamp) > WINDOW_SECONDS:
        raise Refused(f"the timestamp is {now - timestamp:+.0f} s from now")
    mac = hmac.new(secret.encode(), b"v0:" + stamp.encode() + b":", hashlib.sha256)
    mac.update(body)
    if not hmac.compare_digest(mac.hexdigest(), signature[3:]):
        raise Refused("the signature does not match the body")
    return Signed(timestamp, signature)
