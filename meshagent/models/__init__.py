"""Chat models: the offline digester, the scripted test model, and resolving model strings."""

from __future__ import annotations

from meshagent.models.base import estimate_tokens
from meshagent.models.offline import OfflineChatModel
from meshagent.models.resolve import provider_of, resolve_model
from meshagent.models.scripted import ScriptedChatModel

__all__ = [
    "OfflineChatModel",
    "ScriptedChatModel",
    "estimate_tokens",
    "provider_of",
    "resolve_model",
]
