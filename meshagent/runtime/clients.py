"""Clients that connectors keep between calls: one per connector, runtime and event loop.

A client such as ``httpx.AsyncClient`` is costly to build (an HTTPS one loads the CA bundle) and
pools its connections, but those connections belong to the event loop that opened them: used from
another loop they fail, and left open when their loop ends they leak. A runtime serves several
loops in turn (``asyncio.run`` per CLI run or test, a server's loop, a thread's loop), so it keeps
one client per connector for each running loop, and closes it on that loop:

- when the runtime closes (``Runtime.aclose``), for the loop it closes on, and by a task sent to
  each other loop still running;
- otherwise when its loop ends: each client waits in an async generator, which the loop closes in
  ``shutdown_asyncgens`` (``asyncio.run`` and ``asyncio.Runner`` call it, so uvicorn does), and
  the generator's ``finally`` closes the client.

Thread-safe: loops in different threads each get their own clients.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Protocol, TypeVar

__all__ = ["Clients", "Closable"]


class Closable(Protocol):
    """A client closed by ``await client.aclose()`` (httpx) or ``await client.close()``
    (aiohttp)."""

    def close(self) -> Awaitable[None]: ...


C = TypeVar("C")


class _Kept:
    """One client on one loop, and the generator that closes it."""

    def __init__(self, client: Any, keeper: AsyncIterator[None]) -> None:
        self.client = client
        self.keeper = keeper


class Clients:
    """The clients of one runtime's connectors, by connector name and event loop."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._kept: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, _Kept]] = (
            weakref.WeakKeyDictionary()
        )
        self.made = 0  # clients built so far (tests and benchmarks read it)
        self.closed = False

    async def get(self, name: str, make: Callable[[], C]) -> C:
        """The client of connector ``name`` on the running loop, built by ``make`` when there
        is none yet (or the runtime is closed: then the caller gets one of its own, which it
        must close)."""
        if self.closed:
            raise RuntimeError("the runtime's clients are closed")
        loop = asyncio.get_running_loop()
        with self._lock:
            found = self._kept.get(loop, {}).get(name)
        if found is not None:
            return found.client  # type: ignore[no-any-return]
        client = make()
        keeper = _keep(client)
        await keeper.__anext__()  # started: the loop now closes it when it shuts down
        with self._lock:
            mine = self._kept.setdefault(loop, {})
            if name in mine:  # another task of this loop made one meanwhile: use that one
                raced = True
            else:
                raced = False
                mine[name] = _Kept(client, keeper)
                self.made += 1
        if raced:
            await keeper.aclose()
            return await self.get(name, make)
        return client

    async def aclose(self) -> None:
        """Close every client: this loop's now, each other running loop's by a task on it."""
        self.closed = True
        here = asyncio.get_running_loop()
        with self._lock:
            kept = list(self._kept.items())
            self._kept.clear()
        for loop, clients in kept:
            for each in clients.values():
                if loop is here:
                    await each.keeper.aclose()
                elif loop.is_running():
                    asyncio.run_coroutine_threadsafe(_close(each.keeper), loop)
                # A loop that is not running closes its generators when it shuts down.

    def count(self) -> int:
        """Clients open now, over all loops."""
        with self._lock:
            return sum(len(clients) for clients in self._kept.values())


async def _keep(client: Any) -> AsyncIterator[None]:
    try:
        yield
    finally:
        close = getattr(client, "aclose", None) or client.close  # aiohttp's sessions: close()
        await close()


async def _close(keeper: AsyncIterator[None]) -> None:
    with contextlib.suppress(Exception):
        await keeper.aclose()  # type: ignore[attr-defined]
