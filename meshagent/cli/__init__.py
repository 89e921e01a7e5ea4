"""The ``meshagent`` command: parses arguments, calls the library, renders the result.

- ``main``: the command and its groups (``app``), each group imported when asked for.
- ``agents``: validate, schema, init, list and run; ``services``: sandbox, dashboard, serve, demo.
- ``ledger``, ``approvals``, ``followup``, ``slack``, ``mcp``, ``dashboard``: their groups.
- ``demo`` and ``demo_approvals``: ``meshagent demo``, offline, in under a minute.
- ``common``, ``printer``, ``people``, ``invocation``: the consoles and settings of one call,
  plain-text messages, who is at the keyboard, and how to run ``meshagent`` again from here.

``app`` is importable from here too (``meshagent.cli:app``, the entry point of installs made
before the command moved into this folder), imported when first used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from meshagent.cli.main import app

__all__ = ["app"]


def __getattr__(name: str) -> Any:
    if name == "app":
        from meshagent.cli.main import app

        return app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
