"""Acknowledgements first: background work waits while Slack requests keep arriving.

Slack gives every request 3 seconds to be acknowledged. A burst of slash commands reaches one
event loop as a stream of connections, each accepted, read and parsed in turn, and work started
by the first acks (a run, the post of its result) takes loop time from the requests still
arriving: measured on a burst of 200 commands, the runs and their posts took more of the loop
than the acks. Nothing waits on that work but its own user, who already has the ack's "running
<agent>…". So it waits until no request has been answered or arrived for ``quiet`` seconds,
for at most ``max_wait`` seconds, so that a steady stream of requests delays it but never
starves it. The ledger's writes yield to the same gate (``idle``, for its writer thread).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator

__all__ = ["AcksFirst"]


class AcksFirst:
    """A gate that opens once requests have stopped coming for a moment."""

    def __init__(self, quiet: float = 0.02, max_wait: float = 1.0) -> None:
        self.quiet = quiet
        self.max_wait = max_wait
        self.answering = 0
        self._open = asyncio.Event()
        self._open.set()
        #: The same gate for threads (the ledger's group commit, `GroupCommit.yield_to`): set
        #: while no request is being answered.
        self.idle = threading.Event()
        self.idle.set()
        self._timer: asyncio.TimerHandle | None = None

    @contextlib.contextmanager
    def answering_one(self) -> Iterator[None]:
        """Around the handling of one request, up to its acknowledgement."""
        self.answering += 1
        if self._open.is_set():
            self._open.clear()
            self.idle.clear()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        try:
            yield
        finally:
            self.answering -= 1
            if not self.answering:
                loop = asyncio.get_running_loop()
                self._timer = loop.call_later(self.quiet, self._opened)

    def _opened(self) -> None:
        self._open.set()
        self.idle.set()

    async def settled(self) -> None:
        """Return once requests stopped for ``quiet`` seconds, or after ``max_wait`` seconds."""
        if not self._open.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.max_wait):
                    await self._open.wait()
