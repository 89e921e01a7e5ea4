"""The sandbox: local Slack and Jira APIs on 127.0.0.1 for tests, the demo and offline authors.

``Sandbox`` starts both servers on an event loop of their own (a background thread), so that
synchronous code (the jira client) and asynchronous code (slack_sdk) can both call them from
anywhere. ``sandbox.env()`` gives the environment variables that point the connectors at them;
``sandbox.slack`` and ``sandbox.jira`` hold what the APIs were asked to do (``received``: each
request as it arrived); ``fail_next``, ``answer_next`` (a malformed answer) and ``latency``
inject faults.
"""

from __future__ import annotations

import asyncio
import secrets
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from meshagent.sandbox.jira import JiraState, build_jira_app
from meshagent.sandbox.seed import load_seed
from meshagent.sandbox.slack import SlackState, build_slack_app
from meshagent.sandbox.wiki import WikiState

__all__ = ["Faults", "Sandbox"]


@dataclass
class _Fault:
    remaining: int
    status: int
    retry_after: int | None
    body: str | None = None  # answered as is, instead of the server's error body
    content_type: str = "application/json"
    path: str | None = None  # only requests whose path contains this
    headers: dict[str, str] = field(default_factory=dict)


class Faults:
    """Faults of one server: the next N requests fail with a status, or get an answer the client
    does not expect (``answer_next``); every request is delayed by ``latency``."""

    def __init__(self, body: Callable[[int], web.Response]) -> None:
        self._body = body
        self._queue: list[_Fault] = []
        self._lock = threading.Lock()
        self.latency = 0.0
        self.failed = 0

    def fail_next(self, count: int = 1, *, status: int = 429, retry_after: int | None = 0) -> None:
        """Fail the next ``count`` requests with ``status`` (429 carries ``Retry-After``)."""
        with self._lock:
            self._queue.append(_Fault(count, status, retry_after))

    def answer_next(
        self,
        body: str,
        *,
        count: int = 1,
        status: int = 200,
        content_type: str = "application/json",
        path: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        """Answer the next ``count`` requests (whose path contains ``path``) with ``body``: a
        malformed or unexpected answer, to see what the client and the connector make of it."""
        with self._lock:
            fault = _Fault(count, status, None, body, content_type, path, dict(headers or {}))
            self._queue.append(fault)

    def _take(self, path: str = "") -> _Fault | None:
        with self._lock:
            self._queue = [fault for fault in self._queue if fault.remaining > 0]
            for fault in self._queue:
                if fault.path is None or fault.path in path:
                    fault.remaining -= 1
                    return fault
            return None

    @web.middleware
    async def middleware(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        if self.latency:
            await asyncio.sleep(self.latency)
        fault = self._take(request.path)
        if fault is None:
            return await handler(request)
        self.failed += 1
        if fault.body is not None:
            headers = {"Content-Type": fault.content_type, **fault.headers}
            return web.Response(status=fault.status, body=fault.body.encode(), headers=headers)
        response = self._body(fault.status)
        if fault.retry_after is not None and fault.status in (429, 503):
            response.headers["Retry-After"] = str(fault.retry_after)
        return response


def _slack_fault(status: int) -> web.Response:
    if status == 429:
        return web.json_response({"ok": False, "error": "ratelimited"}, status=429)
    return web.Response(status=status, text="An internal error occurred.")


def _jira_fault(status: int) -> web.Response:
    message = "Rate limit exceeded." if status == 429 else "Internal server error."
    return web.json_response({"errorMessages": [message], "errors": {}}, status=status)


class Sandbox:
    """Both APIs, seeded, on free ports of 127.0.0.1. Use as a context manager or start/stop."""

    __test__ = False  # a test double, not a test class

    def __init__(
        self,
        seed: dict[str, Any] | str | Path | None = None,
        *,
        jira_deployment: str = "Server",
        host: str = "127.0.0.1",
        slack_port: int = 0,
        jira_port: int = 0,
    ) -> None:
        data = seed if isinstance(seed, dict) else load_seed(seed)
        self.host = host
        self.slack_token = f"xoxb-sandbox-{secrets.token_hex(12)}"
        self.jira_token = f"sandbox-pat-{secrets.token_hex(12)}"
        self.jira_email = "meshagent-bot@example.com"
        self.jira_api_token = f"sandbox-api-{secrets.token_hex(12)}"
        self.jira_deployment = jira_deployment
        self.slack = SlackState(data.get("slack", {}), token=self.slack_token)
        self.jira = JiraState(
            data.get("jira", {}),
            deployment=jira_deployment,
            token=self.jira_token,
            email=self.jira_email,
            api_token=self.jira_api_token,
        )
        self.wiki = WikiState.seeded(data.get("wiki"))
        self.slack_faults = Faults(_slack_fault)
        self.jira_faults = Faults(_jira_fault)
        self._ports = (slack_port, jira_port)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runners: list[web.AppRunner] = []
        self.slack_port = 0
        self.jira_port = 0
        self.wiki_port = 0
        self._wiki: Any = None  # the wiki's uvicorn server, and its task
        self._wiki_task: asyncio.Task[None] | None = None

    @property
    def slack_url(self) -> str:
        """The Web API base URL, as slack_sdk's ``base_url`` wants it (ending in /api/)."""
        return f"http://{self.host}:{self.slack_port}/api/"

    @property
    def jira_url(self) -> str:
        return f"http://{self.host}:{self.jira_port}"

    @property
    def wiki_url(self) -> str:
        """The team wiki's MCP endpoint (streamable HTTP)."""
        return f"http://{self.host}:{self.wiki_port}/mcp"

    def mcp_settings(self) -> dict[str, Any]:
        """``[mcp.wiki]`` as meshagent.toml would declare the sandbox's wiki: its URL is
        ``WIKI_MCP_URL`` of ``env()`` (once ``start_wiki()`` has run)."""
        from meshagent.config.mcp import McpServerSettings

        return {"wiki": McpServerSettings(url_env="WIKI_MCP_URL")}

    def env(self) -> dict[str, str]:
        """The variables that point the Slack and Jira connectors (and the wiki's MCP client)
        at this sandbox."""
        env = {
            "SLACK_BOT_TOKEN": self.slack_token,
            "SLACK_API_URL": self.slack_url,
            "JIRA_URL": self.jira_url,
        }
        if self.wiki_port:
            env["WIKI_MCP_URL"] = self.wiki_url
        if self.jira_deployment == "Cloud":
            env |= {"JIRA_EMAIL": self.jira_email, "JIRA_API_TOKEN": self.jira_api_token}
        else:
            env["JIRA_TOKEN"] = self.jira_token
        return env

    def response_url(self, channel: str = "") -> str:
        """A fresh Slack response_url served by this sandbox."""
        return self.slack.new_response_url(f"http://{self.host}:{self.slack_port}", channel)

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self) -> Sandbox:
        ready = threading.Event()
        failure: list[BaseException] = []

        def serve() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            try:
                loop.run_until_complete(self._start_servers())
            except BaseException as exc:  # reported to the caller of start()
                failure.append(exc)
                ready.set()
                loop.close()
                return
            ready.set()
            loop.run_forever()
            loop.run_until_complete(self._stop_servers())
            _finish(loop)

        self._thread = threading.Thread(target=serve, name="meshagent-sandbox", daemon=True)
        self._thread.start()
        ready.wait()
        if failure:
            raise failure[0]
        return self

    async def _start_servers(self) -> None:
        apps = [
            build_slack_app(self.slack, middlewares=(self.slack_faults.middleware,)),
            build_jira_app(self.jira, middlewares=(self.jira_faults.middleware,)),
        ]
        ports = []
        for app, port in zip(apps, self._ports, strict=True):
            runner = web.AppRunner(app, access_log=None, handle_signals=False)
            await runner.setup()
            site = web.TCPSite(runner, self.host, port)
            await site.start()
            self._runners.append(runner)
            ports.append(runner.addresses[-1][1])
        self.slack_port, self.jira_port = ports

    def start_wiki(self) -> Sandbox:
        """Serve the team wiki's MCP server too (``meshagent sandbox`` and the demo do; a test
        asks for it: the SDK's server stack takes seconds to import)."""
        if self._loop is None:
            raise RuntimeError("start the sandbox first")
        if self._wiki is None:
            asyncio.run_coroutine_threadsafe(self._start_wiki(), self._loop).result(timeout=60)
        return self

    async def _start_wiki(self) -> None:
        import socket

        import uvicorn

        from meshagent.sandbox.wiki import build_wiki_server

        listening = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listening.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listening.bind((self.host, 0))
        self.wiki_port = listening.getsockname()[1]
        self.wiki.base_url = f"http://{self.host}:{self.wiki_port}"
        app = build_wiki_server(self.wiki).streamable_http_app(json_response=True)
        config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on")
        self._wiki = uvicorn.Server(config)
        self._wiki_task = asyncio.get_running_loop().create_task(
            self._wiki.serve(sockets=[listening])
        )
        while not self._wiki.started and not self._wiki_task.done():
            await asyncio.sleep(0.005)
        if self._wiki_task.done():
            self._wiki_task.result()  # its failure, reported to the caller of start()

    async def _stop_servers(self) -> None:
        if self._wiki is not None and self._wiki_task is not None:
            self._wiki.should_exit = True
            await asyncio.gather(self._wiki_task, return_exceptions=True)
            self._wiki = self._wiki_task = None
        for runner in self._runners:
            await runner.cleanup()
        self._runners.clear()

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)
        self._loop = None
        self._thread = None

    def __enter__(self) -> Sandbox:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _finish(loop: asyncio.AbstractEventLoop) -> None:
    """Close the sandbox's loop as asyncio.run does: cancel what is left (a client that never
    closed its WebSocket), finish async generators, then close. Closing with tasks pending
    would leave them to be collected later, on a closed loop."""
    pending = [task for task in asyncio.all_tasks(loop) if not task.done()]
    for task in pending:
        task.cancel()
    if pending:
        loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
    loop.run_until_complete(loop.shutdown_asyncgens())
    loop.close()
