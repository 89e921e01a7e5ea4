"""Chat models: the offline digester, the scripted test model, and resolving model strings."""

from meshagent.models.offline import (
    OfflineChatModel,
    ScriptedChatModel,
    estimate_tokens,
    provider_of,
    resolve_model,
)

__all__ = [
    "OfflineChatModel",
    "ScriptedChatModel",
    "estimate_tokens",
    "provider_of",
    "resolve_model",
]
