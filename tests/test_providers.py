"""The provider table MeshAgent keeps matches LangChain's own."""

from __future__ import annotations

from langchain.chat_models import base

from meshagent.providers import PROVIDERS, install_hint


def test_providers_match_langchains_builtin_table():
    assert set(PROVIDERS) == set(base._BUILTIN_PROVIDERS)
    for name, provider in PROVIDERS.items():
        module = base._BUILTIN_PROVIDERS[name][0]
        assert module.split(".")[0] == provider.package, name


def test_install_hint_names_the_extra_or_the_package():
    assert install_hint("openai") == "pip install 'meshagent[openai]'"
    assert install_hint("bedrock_converse") == "pip install 'meshagent[aws]'"
    assert install_hint("groq") == "pip install langchain-groq"
