"""One connection to one MCP server, started on first use and kept, restarted with backoff.

The SDK's ``Client`` must be entered and left by one task (anyio cancel scopes), so each
connection is held open by a task of its own; calls from any task of the same event loop go
through it. A connection that fails to start, or breaks, is started again on a later call, no
sooner than a backoff that doubles with each failure in a row (0.5 s up to a minute). A start
or call that fails names the server, its command or URL, and for a command the last lines it
wrote to stderr. A runtime keeps one connection per server and event loop (``Runtime.clients``),
so ``meshagent serve`` starts each server once.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import tempfile
import time
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import IO, Any

from meshagent.config.mcp import McpServerSettings

__all__ = ["McpConnection", "McpUnavailable", "list_tools"]

log = logging.getLogger(__name__)

BACKOFF_FIRST = 0.5
BACKOFF_MOST = 60.0
STDERR_LINES = 5


class McpUnavailable(Exception):
    """The server could not be started or reached; the message says which and why."""


class McpConnection:
    """The connection to the server ``name``; ``aclose()`` stops it (and its process)."""

    def __init__(
        self,
        name: str,
        settings: McpServerSettings,
        env: Mapping[str, str],
        *,
        cwd: Path | None = None,
    ) -> None:
        self.name = name
        self.settings = settings
        self.env = env
        self.cwd = cwd
        self.starts = 0  # how many times the server was started (tests read it)
        self.failures = 0  # failures in a row
        self.retry_at = 0.0
        self.last_error: str | None = None
        self._client: Any = None
        self._holder: asyncio.Task[None] | None = None
        self._stop: asyncio.Event | None = None
        self._lock = asyncio.Lock()
        self._errlog: IO[str] | None = None
        self._statuses: list[int] = []  # HTTP statuses of failed requests, for messages
        self.closed = False

    @property
    def where(self) -> str:
        return f"MCP server {self.name} ({self.settings.where(self.env)})"

    async def client(self) -> Any:
        """The connected SDK client, started (again) when needed; McpUnavailable when not."""
        if self._alive():
            return self._client
        async with self._lock:
            if self._alive():
                return self._client
            if self.closed:
                raise McpUnavailable(f"{self.where}: the connection is closed")
            wait = self.retry_at - time.monotonic()
            if wait > 0:
                raise McpUnavailable(
                    f"{self.last_error} (failed {self.failures} time(s) in a row; next start "
                    f"in {wait:.1f}s)"
                )
            await self._drop()
            try:
                await self._start()
            except McpUnavailable as exc:
                self.failed(str(exc))
                raise
            self.failures = 0
            return self._client

    def failed(self, reason: str) -> None:
        """Count a failure: the next start waits out the backoff."""
        self.failures += 1
        self.last_error = reason
        self.retry_at = time.monotonic() + min(
            BACKOFF_MOST, BACKOFF_FIRST * 2 ** (self.failures - 1)
        )

    async def broken(self, reason: str) -> None:
        """The connection failed under a call: drop it; a later call starts it again."""
        self.failed(f"{self.where}: {reason}")
        await self._drop()

    def _alive(self) -> bool:
        return self._client is not None and self._holder is not None and not self._holder.done()

    async def _start(self) -> None:
        from mcp import Client

        self.starts += 1
        ready = asyncio.Event()
        self._stop = stop = asyncio.Event()
        failure: list[BaseException] = []
        transport = self._transport()

        async def hold() -> None:
            try:
                async with Client(transport, mode="auto") as client:
                    self._client = client
                    ready.set()
                    await stop.wait()
            except Exception as exc:  # noqa: BLE001 - reported by the caller of _start
                failure.append(exc)
            finally:
                self._client = None
                ready.set()

        # An empty context: the holder outlives the run that started it and keeps none of it.
        self._holder = asyncio.get_running_loop().create_task(
            hold(), name=f"mcp:{self.name}", context=contextvars.Context()
        )
        try:
            async with asyncio.timeout(self.settings.start_timeout_seconds):
                await ready.wait()
        except TimeoutError:
            await self._drop()
            raise McpUnavailable(
                f"{self.where} did not answer within {self.settings.start_timeout_seconds:g}s"
                f"{self.stderr_tail()}"
            ) from None
        if self._client is None:
            await self._drop()
            reason = _reason(failure[0]) if failure else "the connection ended"
            if self._statuses:
                reason += f" (HTTP {self._statuses[-1]})"
            raise McpUnavailable(f"{self.where} did not start: {reason}{self.stderr_tail()}")

    def _transport(self) -> Any:
        settings = self.settings
        if settings.command is not None:
            from mcp import StdioServerParameters
            from mcp.client.stdio import stdio_client

            if self._errlog is None:
                self._errlog = tempfile.TemporaryFile("w+", encoding="utf-8", errors="replace")  # noqa: SIM115 - kept open with the connection, closed by aclose
            params = StdioServerParameters(
                command=settings.command[0],
                args=list(settings.command[1:]),
                env={name: self.env[name] for name in settings.env if name in self.env},
                cwd=self.cwd,
            )
            return stdio_client(params, errlog=self._errlog)
        url = settings.url or self.env.get(settings.url_env or "")
        if not url:
            raise McpUnavailable(f"{self.where}: ${settings.url_env} is not set")
        headers = {header: self.env.get(var, "") for header, var in settings.headers_env.items()}
        return _http(url, headers, self._statuses)

    def stderr_tail(self) -> str:
        """The last lines the server's process wrote to stderr, for an error message."""
        if self._errlog is None:
            return ""
        try:
            self._errlog.flush()
            self._errlog.seek(0)
            lines = [line.rstrip() for line in self._errlog.read()[-8000:].splitlines()]
            self._errlog.seek(0, 2)
        except (OSError, ValueError):
            return ""
        lines = [line for line in lines if line.strip()][-STDERR_LINES:]
        if not lines:
            return "; it wrote nothing to stderr"
        return "; its stderr ended with:\n" + "\n".join(f"  {line[:300]}" for line in lines)

    async def _drop(self) -> None:
        holder, self._holder = self._holder, None
        if self._stop is not None:
            self._stop.set()
        if holder is not None and not holder.done():
            try:
                async with asyncio.timeout(10):
                    await asyncio.shield(holder)
            except (TimeoutError, asyncio.CancelledError):
                holder.cancel()
                with contextlib.suppress(BaseException):
                    await holder
        self._client = None

    async def aclose(self) -> None:
        self.closed = True
        await self._drop()
        if self._errlog is not None:
            self._errlog.close()
            self._errlog = None


@contextlib.asynccontextmanager
async def _http(url: str, headers: dict[str, str], statuses: list[int]) -> AsyncIterator[Any]:
    from mcp.client.streamable_http import streamable_http_client
    from mcp.shared._httpx_utils import create_mcp_http_client

    async def seen(response: Any) -> None:
        if response.status_code >= 400:  # the SDK's own error does not say which
            statuses.append(response.status_code)

    http = create_mcp_http_client(headers=headers or None)
    http.event_hooks = {**http.event_hooks, "response": [seen]}
    async with http, streamable_http_client(url, http_client=http) as streams:
        yield streams


def _reason(exc: BaseException) -> str:
    """An exception in one line; an exception group by its first leaf."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    text = " ".join(str(exc).split())[:300]
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


async def list_tools(connection: McpConnection) -> list[Any]:
    """Every tool the server offers (all pages)."""
    client = await connection.client()
    tools: list[Any] = []
    cursor = None
    for _ in range(100):
        page = await asyncio.wait_for(
            client.list_tools(cursor=cursor, cache_mode="bypass"),
            connection.settings.timeout_seconds,
        )
        tools.extend(page.tools)
        cursor = page.next_cursor
        if not cursor:
            break
    return tools
