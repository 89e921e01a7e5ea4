"""A runtime wired to the sandbox and ledger (fixtures of meshagent.testing); agents from text."""

from __future__ import annotations

import asyncio
import textwrap
from typing import Any

from meshagent.agentfile.loader import parse_agent
from meshagent.agentfile.spec import AgentSpec
from meshagent.config import Config
from meshagent.runtime.runner import RunResult, Runtime
from meshagent.testing import ledger as ledger  # re-exported for conftests importing it


def agent(text: str, **env: str) -> AgentSpec:
    """An agent from YAML text (dedented), validated against the installed connectors."""
    return parse_agent(textwrap.dedent(text), filename="agent.yaml", env=env)


def make_runtime(sandbox, ledger_, chat_model=None, **settings: Any) -> Runtime:
    config = Config(ledger_url=ledger_.url, **settings)
    return Runtime(
        config, ledger=ledger_, env=sandbox.env(), chat_model=chat_model, retry_base_seconds=0.01
    )


def run(runtime: Runtime, spec: AgentSpec, **options: Any) -> RunResult:
    return asyncio.run(runtime.run(spec, **options))
