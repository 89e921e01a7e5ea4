"""A temporary SQLite ledger, a runtime wired to the sandbox, and agent files from text."""

from __future__ import annotations

import asyncio
import textwrap
from typing import Any

import pytest

from meshagent.config import Config
from meshagent.ledger.store import Ledger
from meshagent.loader import parse_agent
from meshagent.runtime import RunResult, Runtime
from meshagent.spec import AgentSpec


@pytest.fixture
def ledger(tmp_path):
    with Ledger.open(f"sqlite:///{tmp_path / 'ledger.db'}") as opened:
        yield opened


def agent(text: str, **env: str) -> AgentSpec:
    """An agent from YAML text (dedented), validated against the installed connectors."""
    return parse_agent(textwrap.dedent(text), filename="agent.yaml", env=env)


def make_runtime(sandbox, ledger, chat_model=None, **settings: Any) -> Runtime:
    config = Config(ledger_url=ledger.url, **settings)
    return Runtime(
        config, ledger=ledger, env=sandbox.env(), chat_model=chat_model, retry_base_seconds=0.01
    )


def run(runtime: Runtime, spec: AgentSpec, **options: Any) -> RunResult:
    return asyncio.run(runtime.run(spec, **options))
