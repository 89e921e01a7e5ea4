"""The provider table MeshAgent keeps matches LangChain's own."""

from __future__ import annotations

from langchain.chat_models import base

from meshagent.models.providers import PROVIDERS, client_options, install_hint


def test_providers_match_langchains_builtin_table():
    assert set(PROVIDERS) == set(base._BUILTIN_PROVIDERS)
    for name, provider in PROVIDERS.items():
        module = base._BUILTIN_PROVIDERS[name][0]
        assert module.split(".")[0] == provider.package, name


def test_install_hint_names_the_extra_or_the_package():
    assert install_hint("openai") == "pip install 'meshagent[openai]'"
    assert install_hint("bedrock_converse") == "pip install 'meshagent[aws]'"
    assert install_hint("groq") == "pip install langchain-groq"


def test_the_key_a_run_checked_is_the_key_its_client_gets():
    env = {"GOOGLE_API_KEY": "", "GEMINI_API_KEY": "g-key", "COHERE_API_KEY": "c-key"}
    # The first one set; the client's own retries off (the runtime's retry).
    assert client_options("google_genai", env) == {"api_key": "g-key", "max_retries": 0}
    assert client_options("cohere", env) == {"cohere_api_key": "c-key"}  # no api_key alias
    assert client_options("openai", env) == {"max_retries": 0}  # no key: the client looks
    assert client_options("bedrock_converse", env) == {}  # AWS's credential chain, boto's retries
