"""The pytest kit for agent authors (a pytest plugin, registered through ``pytest11``).

Fixtures:

- ``sandbox``: fresh local Slack and Jira APIs for the test (``sandbox.slack.posted_to("#x")``,
  ``sandbox.jira.comments_added``, ``sandbox.jira_faults.fail_next(...)``, ...).
- ``scripted_model``: makes a scripted chat model: ``scripted_model(["answer"])``, with tool
  calls and usage as dicts (see :class:`meshagent.models.ScriptedChatModel`).
- ``ledger``: a temporary SQLite ledger.
- ``run_agent_file``: ``run_agent_file("agents/x.yaml", inputs={...}, model="offline" or a
  scripted model, dry_run=False)`` runs the agent against the sandbox and the ledger and returns
  the :class:`~meshagent.runtime.runner.RunResult`, its ledger entry in ``result.entry``.

During every test, connections to anything but this machine are refused with an error that names
the address and the code that tried (mark a test ``allow_network`` to lift that).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

__all__ = ["NetworkRefused"]


class NetworkRefused(OSError):
    """A test tried to reach a host that is not this machine."""


def _local(host: Any) -> bool:
    if host is None:
        return True
    text = host.decode() if isinstance(host, bytes) else str(host)
    if text in ("localhost", "", "localhost.localdomain") or text.endswith(".localhost"):
        return True
    try:
        address = ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return False
    return address.is_loopback or address.is_unspecified


def _literal(host: Any) -> bool:
    text = host.decode() if isinstance(host, bytes) else str(host)
    try:
        ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return False
    return True


def _caller() -> str:
    """The first frame outside the networking libraries: the code that tried to connect."""
    skip = ("socket", "ssl", "asyncio", "selectors", "http", "urllib", "requests", "httpx",
            "httpcore", "aiohttp", "anyio", "slack_sdk", "jira", "langchain", "openai",
            "anthropic", "meshagent/testing")  # fmt: skip
    for frame in reversed(traceback.extract_stack()[:-3]):
        if not any(f"/{name}" in frame.filename or f"{name}." in frame.filename for name in skip):
            return f"{frame.filename}:{frame.lineno} in {frame.name}"
    return "unknown code"


def _refuse(what: str) -> NetworkRefused:
    return NetworkRefused(
        f"tests must not reach the network: {what} was refused (called from {_caller()}); "
        "point the client at the sandbox, or mark the test allow_network"
    )


@pytest.fixture(autouse=True)
def _no_network(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    if request.node.get_closest_marker("allow_network"):
        return
    connect, connect_ex = socket.socket.connect, socket.socket.connect_ex
    getaddrinfo = socket.getaddrinfo

    def guarded(self: socket.socket, address: Any) -> Any:
        if self.family in (socket.AF_INET, socket.AF_INET6) and not _local(address[0]):
            raise _refuse(f"a connection to {address[0]}:{address[1]}")
        return connect(self, address)

    def guarded_ex(self: socket.socket, address: Any) -> Any:
        if self.family in (socket.AF_INET, socket.AF_INET6) and not _local(address[0]):
            raise _refuse(f"a connection to {address[0]}:{address[1]}")
        return connect_ex(self, address)

    def resolve(host: Any, *args: Any, **kwargs: Any) -> Any:
        if not _local(host) and not _literal(host):  # an address literal needs no lookup
            raise _refuse(f"a DNS lookup of {host!r}")
        return getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket.socket, "connect", guarded)
    monkeypatch.setattr(socket.socket, "connect_ex", guarded_ex)
    monkeypatch.setattr(socket, "getaddrinfo", resolve)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "allow_network: let this test connect to hosts other than this machine"
    )


@pytest.fixture
def sandbox() -> Iterator[Any]:
    """Local Slack and Jira APIs, freshly seeded with the built-in workspace."""
    from meshagent.sandbox import Sandbox

    with Sandbox() as box:
        yield box


@pytest.fixture
def scripted_model() -> Callable[..., Any]:
    """``scripted_model(responses, latency=0.0)``: a chat model that replays ``responses``."""
    from meshagent.models import ScriptedChatModel

    def make(responses: list[Any], *, latency: float = 0.0) -> ScriptedChatModel:
        return ScriptedChatModel(responses=list(responses), latency=latency)

    return make


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Any]:
    """A temporary SQLite ledger."""
    from meshagent.ledger.store import Ledger

    with Ledger.open(f"sqlite:///{tmp_path / 'ledger.db'}") as opened:
        yield opened


@pytest.fixture
def run_agent_file(sandbox: Any, ledger: Any) -> Callable[..., Any]:
    """Run an agent file against the sandbox and the test's ledger; returns the RunResult."""
    from meshagent.agentfile.loader import load_agent
    from meshagent.config import load_config
    from meshagent.mcp.tools import registry_near
    from meshagent.runtime.runner import Runtime

    def run(
        path: str | Path,
        *,
        inputs: dict[str, Any] | None = None,
        model: Any = None,
        dry_run: bool = False,
        trigger: str = "api",
    ) -> Any:
        config = load_config()
        # The sandbox's MCP wiki as [mcp.wiki], unless the project declares its own.
        servers = {**sandbox.mcp_settings(), **config.mcp}
        config = config.model_copy(update={"ledger_url": ledger.url, "mcp": servers})
        registry = registry_near(Path(path), config)  # with the MCP tools of its lock
        spec = load_agent(path, value_tags=config.value_tags, env=sandbox.env(), registry=registry)
        if any(u.action.startswith("wiki.") for u in (*spec.context, *spec.tools, *spec.deliver)):
            sandbox.start_wiki()  # served on demand: the MCP SDK's server takes a while to load
        chat_model = None if model is None or isinstance(model, str) else model
        name = model if isinstance(model, str) else ("scripted" if chat_model else None)
        runtime = Runtime(
            config, ledger=ledger, env=sandbox.env(), chat_model=chat_model,
            retry_base_seconds=0.01, registry=registry,
        )  # fmt: skip
        result = asyncio.run(
            runtime.run(spec, trigger=trigger, inputs=inputs, dry_run=dry_run, model=name)
        )
        result.entry = ledger.entry(result.run_id)
        return result

    return run
