"""Model providers MeshAgent knows by name, the package each needs, and the extra that installs it.

LangChain's ``init_chat_model`` resolves ``provider:model`` strings. Importing LangChain to learn
its provider names costs seconds, too much for ``meshagent validate``, so the names are kept here
and a test checks them against LangChain's own table.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = [
    "API_KEY_NAMES",
    "BUILTIN_MODELS",
    "PROVIDERS",
    "Provider",
    "client_options",
    "api_key_env",
    "install_hint",
]


@dataclass(frozen=True)
class Provider:
    name: str
    package: str
    extra: str | None = None

    @property
    def install(self) -> str:
        """The pip command that makes this provider usable."""
        if self.extra:
            return f"pip install 'meshagent[{self.extra}]'"
        return f"pip install {self.package.replace('_', '-')}"


_EXTRAS = {
    "langchain_openai": "openai",
    "langchain_anthropic": "anthropic",
    "langchain_aws": "aws",
    "langchain_ollama": "ollama",
}

_PACKAGES = {
    "anthropic": "langchain_anthropic",
    "anthropic_bedrock": "langchain_aws",
    "azure_ai": "langchain_azure_ai",
    "azure_openai": "langchain_openai",
    "baseten": "langchain_baseten",
    "bedrock": "langchain_aws",
    "bedrock_converse": "langchain_aws",
    "bedrock_mantle_anthropic": "langchain_aws",
    "bedrock_mantle_openai": "langchain_aws",
    "cohere": "langchain_cohere",
    "deepseek": "langchain_deepseek",
    "fireworks": "langchain_fireworks",
    "google_anthropic_vertex": "langchain_google_vertexai",
    "google_genai": "langchain_google_genai",
    "google_vertexai": "langchain_google_vertexai",
    "groq": "langchain_groq",
    "huggingface": "langchain_huggingface",
    "ibm": "langchain_ibm",
    "langsmith": "langchain_openai",
    "litellm": "langchain_litellm",
    "meta": "langchain_meta",
    "mistralai": "langchain_mistralai",
    "nvidia": "langchain_nvidia_ai_endpoints",
    "ollama": "langchain_ollama",
    "openai": "langchain_openai",
    "openrouter": "langchain_openrouter",
    "perplexity": "langchain_perplexity",
    "together": "langchain_together",
    "upstage": "langchain_upstage",
    "xai": "langchain_xai",
}

PROVIDERS: dict[str, Provider] = {
    name: Provider(name, package, _EXTRAS.get(package)) for name, package in _PACKAGES.items()
}

#: Model strings that need no provider: the embedded offline model and the test model.
BUILTIN_MODELS = ("offline", "scripted")


#: The environment variables that hold each provider's API key (any one of them will do).
#: Providers that authenticate otherwise (AWS's credential chain, a local Ollama) are absent.
_API_KEYS = {
    "anthropic": ("ANTHROPIC_API_KEY",),
    "azure_openai": ("AZURE_OPENAI_API_KEY",),
    "cohere": ("COHERE_API_KEY",),
    "deepseek": ("DEEPSEEK_API_KEY",),
    "fireworks": ("FIREWORKS_API_KEY",),
    "google_genai": ("GOOGLE_API_KEY", "GEMINI_API_KEY"),
    "groq": ("GROQ_API_KEY",),
    "mistralai": ("MISTRAL_API_KEY",),
    "openai": ("OPENAI_API_KEY",),
    "openrouter": ("OPENROUTER_API_KEY",),
    "perplexity": ("PPLX_API_KEY", "PERPLEXITY_API_KEY"),
    "together": ("TOGETHER_API_KEY",),
    "xai": ("XAI_API_KEY",),
}


#: Every variable above: the secrets a log line must never show.
API_KEY_NAMES = tuple(sorted({name for names in _API_KEYS.values() for name in names}))


def api_key_env(provider: str) -> tuple[str, ...]:
    """The variables that may hold ``provider``'s API key; () when it needs none of ours."""
    return _API_KEYS.get(provider, ())


#: The argument of each provider's LangChain chat model that takes the key (``api_key`` is an
#: alias of the field in the partner packages; langchain-cohere's field has no such alias).
_KEY_ARGUMENTS = {"cohere": "cohere_api_key"}

#: Providers whose chat model retries failed requests itself, by its ``max_retries`` field. The
#: runtime retries 429s, 5xx and timeouts with its own backoff (logged, within the run's time
#: limit); the client's retries would multiply them (3 x 3 requests) and hide them.
_CLIENT_RETRIES = frozenset(
    {"anthropic", "azure_openai", "deepseek", "fireworks", "google_genai", "groq", "mistralai",
     "openai", "perplexity", "together", "xai"}
)  # fmt: skip


def client_options(provider: str, env: Mapping[str, str]) -> dict[str, Any]:
    """The keyword arguments MeshAgent gives ``provider``'s chat model.

    - The API key from ``env``: the runtime's environment may not be the process's
      (``run_agent(env=...)``), and the key it checked is the key the client must use.
    - ``max_retries=0`` where the client would retry too: the runtime's retries are the only ones.
    """
    options: dict[str, Any] = {}
    for name in api_key_env(provider):
        if env.get(name):
            options[_KEY_ARGUMENTS.get(provider, "api_key")] = env[name]
            break
    if provider in _CLIENT_RETRIES:
        options["max_retries"] = 0
    return options


def install_hint(provider: str) -> str:
    """What to run so that ``provider`` can be used."""
    return PROVIDERS[provider].install
