"""Slack's secrets out of log records: tokens, the signing secret, Socket Mode WebSocket URLs.

slack_sdk logs the body of every Web API answer at DEBUG, and apps.connections.open answers
with the Socket Mode URL (``wss://wss-primary.slack.com/link/?ticket=...``), a credential for
as long as it lives; a WebSocket handshake that fails is logged at ERROR with that URL in the
error and its traceback. ``REDACT`` masks, in a record's message, traceback and stack:

- the query of a ``ws://`` or ``wss://`` URL (``wss://wss-primary.slack.com/link/?***``);
- anything shaped like a Slack token (``xoxb-***``, ``xapp-***``) and a URL's password;
- the secrets it was given with ``REDACT.add``: the signing secret has no shape of its own;
  ``meshagent serve`` also gives it the values of the environment's other secrets
  (``SECRET_NAMES``: Jira tokens, model providers' API keys, AWS's secret key).

The Slack app hands slack_bolt and slack_sdk loggers that carry it, so their records are masked
where they are made, whatever handles them; ``meshagent serve`` also puts it on its log handlers,
for the records of every other logger (asyncio's, uvicorn's).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping

from meshagent.masking import (
    MASK,
    SLACK_TOKEN,
    URL_PASSWORD,
    Shape,
    mask_known,
    mask_shapes,
    secrets_of,
)
from meshagent.models.providers import API_KEY_NAMES

__all__ = ["REDACT", "SECRET_NAMES", "Redactor", "guard_handlers", "guarded"]

#: Variables whose values are masked wherever they appear, once ``add_environment`` saw them.
SECRET_NAMES = (
    "SLACK_BOT_TOKEN",
    "SLACK_APP_TOKEN",
    "SLACK_SIGNING_SECRET",
    "JIRA_TOKEN",
    "JIRA_API_TOKEN",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    *API_KEY_NAMES,
)

# ws:// or wss://, also JSON-escaped (wss:\/\/...), up to a quote or a space; then its query,
# if it has one. A URL without a query matches too, and is left as it was: the next search
# starts after it, not at each of its characters (which took time quadratic in its length).
_WS_URL = re.compile(r"""(\bwss?:(?:\\?/){2}[^\s?#'"]*)([?#][^\s'"]*)?""")


def _ws_query(match: re.Match[str]) -> str:
    return match.group(0) if match.group(2) is None else f"{match.group(1)}?{MASK}"


_SHAPES: tuple[Shape, ...] = (SLACK_TOKEN, (_WS_URL, _ws_query), URL_PASSWORD)
_FORMATTER = logging.Formatter()


class Redactor(logging.Filter):
    """A filter that masks Slack's secrets in every record it sees and lets each one through."""

    def __init__(self) -> None:
        super().__init__()
        self._secrets: tuple[str, ...] = ()

    def add(self, *secrets: str) -> None:
        """Mask these values too, wherever they appear (empty and very short ones are skipped)."""
        self._secrets = secrets_of((*self._secrets, *secrets))

    def add_environment(self, env: Mapping[str, str], names: Iterable[str] = ()) -> None:
        """Mask the values of ``env``'s secrets too: ``SECRET_NAMES`` and ``names`` (the
        variables ``meshagent.toml`` renamed, such as ``[jira] token_env``)."""
        self.add(*(env.get(name) or "" for name in (*SECRET_NAMES, *names)))

    def mask(self, text: str) -> str:
        """``text`` masked, all of it, in time linear in its length (``meshagent.masking``)."""
        return mask_shapes(mask_known(text, self._secrets), _SHAPES)

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # arguments that do not fit the format: keep both, masked
            message = f"{record.msg} {record.args!r}"
        masked = self.mask(message)
        if masked != message:
            record.msg, record.args = masked, None
        if record.exc_info:
            trace = record.exc_text or _FORMATTER.formatException(record.exc_info)
            masked = self.mask(trace)
            if masked != trace:
                # Formatters print exc_text as it is; the exception itself (which a handler
                # could format again) holds the secret, so it goes.
                record.exc_text, record.exc_info = masked, None
        elif record.exc_text:
            record.exc_text = self.mask(record.exc_text)
        if record.stack_info:
            record.stack_info = self.mask(record.stack_info)
        return True


REDACT = Redactor()


def guarded(name: str) -> logging.Logger:
    """The logger ``name``, masking what is logged to it (the filter is added once)."""
    logger = logging.getLogger(name)
    logger.addFilter(REDACT)
    return logger


def guard_handlers() -> None:
    """Put ``REDACT`` on every handler configured now (the root's, uvicorn's, ...)."""
    loggers = [logging.getLogger()]
    loggers += [
        each
        for each in logging.root.manager.loggerDict.values()
        if isinstance(each, logging.Logger)
    ]
    for logger in loggers:
        for handler in logger.handlers:
            handler.addFilter(REDACT)
