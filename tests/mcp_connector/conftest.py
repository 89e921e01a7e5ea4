"""A project with a real MCP server written with the SDK (``server.py``): over stdio, started
once per module on the module's own event loop, and over streamable HTTP under uvicorn."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from meshagent.agentfile.loader import parse_agent
from meshagent.config import Config
from meshagent.ledger.store import Ledger
from meshagent.runtime.runner import Runtime

SERVER = Path(__file__).with_name("server.py")
SECRET = "s3cr3t-value-0123456789"


class Project:
    """A project directory, its settings, its environment and where the server records calls."""

    def __init__(self, root: Path, mcp: dict[str, Any], env: dict[str, str]) -> None:
        self.root = root
        self.calls_file = root / "calls.jsonl"
        self.env = env
        self.config = Config(
            root=root,
            agents_dir=root / "agents",
            ledger_url=f"sqlite:///{root / 'ledger.db'}",
            mcp=mcp,
        )

    def calls(self) -> list[tuple[str, dict[str, Any]]]:
        """The tool calls that reached the server, in order."""
        if not self.calls_file.exists():
            return []
        lines = self.calls_file.read_text().splitlines()
        return [tuple(json.loads(line)) for line in lines]  # type: ignore[misc]

    def clear(self) -> None:
        self.calls_file.unlink(missing_ok=True)


def stdio_settings(**more: Any) -> dict[str, Any]:
    return {
        "command": [sys.executable, str(SERVER)],
        "env": ["TEST_MCP_VARIANT", "TEST_MCP_CALLS"],
        "timeout_seconds": 10,
        # A loaded machine (the full suite on 2 cores) takes seconds to import the SDK's server.
        "start_timeout_seconds": 60,
        **more,
    }


def make_project(root: Path, mcp: dict[str, Any]) -> Project:
    (root / "agents").mkdir(exist_ok=True)
    env = {
        "PATH": os.environ.get("PATH", ""),
        "TEST_MCP_VARIANT": "1",
        "TEST_MCP_CALLS": str(root / "calls.jsonl"),
        "NOTES_API_TOKEN": SECRET,  # a secret of the runtime's environment, never passed
    }
    return Project(root, mcp, env)


@pytest.fixture(scope="module")
def runner() -> Iterator[asyncio.Runner]:
    """One event loop for the module: its connections (one per loop) are kept between tests."""
    with asyncio.Runner() as loop:
        yield loop


class Served:
    """A project's runtime and ledger, sharing the module's loop and its MCP connections."""

    def __init__(self, project: Project, runner: asyncio.Runner) -> None:
        from meshagent.mcp.refresh import refresh

        self.project = project
        self.runner = runner
        found = runner.run(refresh(project.config, project.env))
        assert not found.failures, found.failures
        self.ledger = Ledger.open(project.config.ledger_url)
        self.runtime = Runtime(
            project.config, ledger=self.ledger, env=project.env, retry_base_seconds=0.01
        )

    def agent(self, text: str) -> Any:
        return parse_agent(
            textwrap.dedent(text), filename="agent.yaml", registry=self.runtime.registry
        )

    def run(self, spec: Any, model: Any = None, **options: Any) -> Any:
        self.runtime.chat_model = model
        return self.runner.run(self.runtime.run(spec, **options))

    def events(self, result: Any) -> list[tuple[str, str, str]]:
        return [(e.kind, e.name, e.detail or "") for e in self.ledger.events(result.run_id)]

    def close(self) -> None:
        self.runner.run(self.runtime.aclose())
        self.ledger.close()


@pytest.fixture(scope="module")
def stdio(tmp_path_factory: pytest.TempPathFactory, runner: asyncio.Runner) -> Iterator[Served]:
    project = make_project(tmp_path_factory.mktemp("stdio"), {"tools": stdio_settings()})
    served = Served(project, runner)
    yield served
    served.close()


class HttpServer:
    """``server.py``'s tools over streamable HTTP under uvicorn in a thread; requests without
    the bearer token get 401, and every request's headers are kept (``headers``)."""

    def __init__(self, token: str, calls_file: Path) -> None:
        import socket

        import uvicorn

        from tests.mcp_connector.server import build

        self.token = token
        self.headers: list[dict[str, str]] = []
        app = build("1", str(calls_file)).streamable_http_app(json_response=True)

        async def guarded(scope: Any, receive: Any, send: Any) -> None:
            if scope["type"] == "http":
                headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
                self.headers.append(headers)
                if headers.get("authorization") != f"Bearer {token}":
                    await send({"type": "http.response.start", "status": 401, "headers": []})
                    await send({"type": "http.response.body", "body": b"no"})
                    return
            await app(scope, receive, send)

        listening = socket.socket()
        listening.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{listening.getsockname()[1]}/mcp"
        config = uvicorn.Config(guarded, log_level="warning", lifespan="on")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [listening]}, daemon=True
        )
        self.thread.start()
        deadline = time.monotonic() + 60
        while not self.server.started and time.monotonic() < deadline:
            time.sleep(0.01)
        assert self.server.started, "the test's MCP server did not start within 60 s"

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
