"""Secrets out of text: known values wherever they appear, and the shapes of common secrets.

One implementation for what the ledger keeps of a tool call
(``meshagent.runtime.agent_loop.Masker``) and for log records (``meshagent.slack.redact``). Every
pattern takes time linear in the text, whatever the text: no quantifier can rescan a long run of
characters from each of many starts (a URL's scheme is at most 31 characters), so hostile text from
a model or in a log record cannot stall a run or a log handler. Masking a URL's password on 100,000
characters of 'a.' took 24 s with an unbounded scheme.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from typing import TypeAlias

__all__ = [
    "MASK",
    "SHAPES",
    "SHORTEST_SECRET",
    "SLACK_TOKEN",
    "URL_PASSWORD",
    "Shape",
    "mask_known",
    "mask_shapes",
    "secrets_of",
]

MASK = "***"
SHORTEST_SECRET = 8  # a shorter value is masked by its key or shape only: it could be any word

#: A pattern and what a match becomes (a template or a function of the match).
Shape: TypeAlias = tuple[re.Pattern[str], str | Callable[[re.Match[str]], str]]

# xoxb- (bot), xoxp- (user), xoxe.xoxp- (rotating), xapp- (app-level), ...
SLACK_TOKEN: Shape = (re.compile(r"\b((?:xox[a-z]\.)?(?:xox[a-z]|xapp))-[\w-]+"), rf"\1-{MASK}")
# scheme://user:password@: the scheme bounded, the user and password end at a '/', so each
# '://' is tried from at most 31 starts, each reading up to the next '/'.
URL_PASSWORD: Shape = (
    re.compile(r"(\b[a-z][\w+.-]{0,30}://[^\s/@:'\"]+:)[^\s/@'\"]+@"),
    rf"\1{MASK}@",
)
#: Every shape, in the order they are applied.
SHAPES: tuple[Shape, ...] = (
    SLACK_TOKEN,
    (re.compile(r"\b(sk-(?:ant-|proj-)?)[\w-]{12,}"), rf"\1{MASK}"),  # OpenAI, Anthropic
    (re.compile(r"\b(gh[pousr]_)\w{20,}"), rf"\1{MASK}"),  # GitHub
    (re.compile(r"\b(Bearer|Basic|Token) +[\w.~+/=-]{6,}", re.IGNORECASE), rf"\1 {MASK}"),
    URL_PASSWORD,
    (
        re.compile(r"([?&](?:password|passwd|pwd|secret|token|api_?key|sig)=)[^&#\s'\"]*", re.I),
        rf"\1{MASK}",
    ),
)


def secrets_of(values: Iterable[str]) -> tuple[str, ...]:
    """The values worth masking wherever they appear, longest first (so that a secret that
    contains another is masked whole); empty and very short ones are left out."""
    return tuple(sorted({v for v in values if len(v) >= SHORTEST_SECRET}, key=len, reverse=True))


def mask_known(text: str, secrets: Sequence[str]) -> str:
    """``text`` with each of ``secrets`` (from ``secrets_of``) masked wherever it appears."""
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, MASK)
    return text


def mask_shapes(text: str, shapes: Iterable[Shape] = SHAPES) -> str:
    """``text`` with whatever has one of ``shapes`` masked."""
    for pattern, replacement in shapes:
        text = pattern.sub(replacement, text)
    return text
