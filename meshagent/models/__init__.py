"""The model: chat models, the providers MeshAgent knows, and what a response cost.

- ``resolve``: a model string (``openai:gpt-4.1-mini``) to a LangChain chat model.
- ``providers``: the providers known by name, the package each needs and the extra installing it.
- ``pricing``: what a response cost in exact USD, from ``meshagent.toml`` overrides or the table.
- ``offline`` and ``scripted``: the free offline digester, and the scripted model tests drive.
- ``base`` and ``context``: what both share: token estimates, tool calls, the context window.

The names below are imported when first used, so that the agent file's checks can read
``providers`` without loading LangChain.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from meshagent.models.base import estimate_tokens
    from meshagent.models.offline import OfflineChatModel
    from meshagent.models.resolve import provider_of, resolve_model
    from meshagent.models.scripted import ScriptedChatModel

#: Each public name and the module it lives in.
_HOMES = {
    "OfflineChatModel": "offline",
    "ScriptedChatModel": "scripted",
    "estimate_tokens": "base",
    "provider_of": "resolve",
    "resolve_model": "resolve",
}

__all__ = [
    "OfflineChatModel",
    "ScriptedChatModel",
    "estimate_tokens",
    "provider_of",
    "resolve_model",
]


def __getattr__(name: str) -> Any:
    if name in _HOMES:
        return getattr(import_module(f"{__name__}.{_HOMES[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
