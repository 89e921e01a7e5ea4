"""Model resolution: the chat model a model string names (built-in, or a provider's)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from langchain_core.language_models import BaseChatModel

from meshagent.actions import closest
from meshagent.exceptions import ConfigError
from meshagent.models.offline import OfflineChatModel
from meshagent.models.providers import BUILTIN_MODELS, PROVIDERS
from meshagent.models.scripted import ScriptedChatModel

__all__ = ["provider_of", "resolve_model"]


def provider_of(model: str) -> str:
    """The provider part of a model string: ``openai`` for ``openai:gpt-4.1``, or the builtin."""
    if model in BUILTIN_MODELS:
        return model
    provider, sep, name = model.partition(":")
    if not sep or not provider or not name:
        raise ConfigError(
            f"{model!r} is not a model string: use 'provider:model' "
            f"(e.g. openai:gpt-4.1-mini) or one of {', '.join(BUILTIN_MODELS)}"
        )
    return provider


def _suggest(provider: str, known: Iterable[str]) -> str | None:
    known = list(known)
    normal = provider.lower().replace("-", "_")
    if normal in known:
        return normal
    return closest(normal, known)


def resolve_model(
    model: str, *, responses: list[Any] | None = None, **options: Any
) -> BaseChatModel:
    """The chat model a model string names; ``responses`` feed the ``scripted`` model.

    ``options`` go to the provider's chat model (``api_key=...``, ``max_retries=0``).
    """
    provider = provider_of(model)
    if model == "offline":
        return OfflineChatModel()
    if model == "scripted":
        return ScriptedChatModel(responses=list(responses or []))
    if provider in BUILTIN_MODELS:
        raise ConfigError(f"{provider!r} is a built-in model and takes no name: use {provider!r}")
    if provider not in PROVIDERS:
        hint = _suggest(provider, [*PROVIDERS, *BUILTIN_MODELS])
        suggestion = f"; did you mean {hint!r}?" if hint else ""
        raise ConfigError(
            f"unknown model provider {provider!r} in {model!r}{suggestion} "
            f"(known: {', '.join(sorted(PROVIDERS))})"
        )
    from langchain.chat_models import init_chat_model

    try:
        return init_chat_model(model.partition(":")[2], model_provider=provider, **options)
    except ImportError as error:
        raise ConfigError(
            f"model {model!r} needs the {provider} provider package: {PROVIDERS[provider].install}"
        ) from error
