"""The Slack app: `/meshagent` commands, per-agent commands, results with feedback buttons.

``SlackApp`` wraps a slack_bolt ``AsyncApp`` and serves it over HTTP (``/slack/events``, checked
with the signing secret) or Socket Mode (the app-level token). It is imported lazily so that
``meshagent.cli.slack`` (the manifest) does not load slack_bolt.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from meshagent.slack.app import SlackApp

__all__ = ["SlackApp"]


def __getattr__(name: str) -> Any:
    if name == "SlackApp":
        from meshagent.slack.app import SlackApp

        return SlackApp
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
