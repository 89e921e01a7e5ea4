"""Masking takes time linear in the text, whatever the text: 100,000 characters shaped to make a
backtracking pattern rescan them (a URL password's scheme, a WebSocket URL's path, a Slack
token) are masked, whole and correctly, in well under a second, by the log filter and by what
the ledger keeps of a tool call. The bound is generous (2 s) for a loaded 2-core machine: the
patterns they replace took from 5 s to 24 s on these texts."""

from __future__ import annotations

import time

import pytest

from meshagent.masking import MASK
from meshagent.runtime.agent_loop import Masker
from meshagent.slack.redact import Redactor

SIZE = 100_000
BOUND = 2.0  # seconds


def _fill(unit: str, tail: str = "") -> str:
    return (unit * (SIZE // len(unit) + 1))[: SIZE - len(tail)] + tail


HOSTILE = {
    "dotted words": _fill("a."),  # a URL scheme from each word, none followed by ://
    "a long scheme": _fill("a+", "://"),
    "websocket urls": _fill("wss://"),  # a WebSocket URL from each, none with a query
    "escaped websocket urls": _fill("wss:\\/\\/"),
    "slack tokens": _fill("xoxb-"),
    "a user with colons": "a://" + _fill("b:")[4:],  # a password read to the end, no @
    "schemes and users": _fill("ab://c:d"),
}
SECRET = "proxy http://me:hunter22@proxy.internal:3128 url=wss://x.slack.com/link/?ticket=t0"


def _timed(mask, text: str) -> str:
    started = time.perf_counter()
    masked = mask(text)
    elapsed = time.perf_counter() - started
    assert elapsed < BOUND, f"masking {len(text):,} characters took {elapsed:.1f} s"
    return masked


@pytest.mark.parametrize("text", HOSTILE.values(), ids=HOSTILE.keys())
def test_the_log_filter_masks_hostile_text_whole_and_in_linear_time(text):
    masked = _timed(Redactor().mask, f"{text} {SECRET}")
    # Every character is read, the secret after the hostile text included.
    assert masked.endswith(
        " proxy http://me:***@proxy.internal:3128 url=wss://x.slack.com/link/?***"
    )
    if "xoxb-" not in text:  # a token's shape is the whole run: masked as one token
        assert masked.startswith(text[:1000])


@pytest.mark.parametrize("text", HOSTILE.values(), ids=HOSTILE.keys())
def test_a_tool_calls_text_is_masked_in_linear_time(text):
    masker = Masker(["hunter22-the-known-secret"])
    masked = _timed(masker.text, f"hunter22-the-known-secret http://me:hunter22@h {text}")
    assert masked.startswith(f"{MASK} http://me:{MASK}@h ")


def test_the_log_filter_and_the_ledger_mask_the_same_shapes_alike():
    text = "see xoxb-1234-5678-AbCd and http://me:hunter22@proxy.internal/ and xapp-1-A0-1-beef"
    expected = "see xoxb-*** and http://me:***@proxy.internal/ and xapp-***"
    assert Redactor().mask(text) == Masker([]).text(text) == expected


def test_a_given_secret_containing_another_is_masked_whole():
    redactor = Redactor()
    redactor.add("signing-secret", "signing-secret-rotated")
    assert redactor.mask("v0=signing-secret-rotated") == f"v0={MASK}"
