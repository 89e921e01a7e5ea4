"""A bounded memory of what arrived lately (signatures, event ids): the fast path in front of the
ledger's nonces, which every replica shares and which alone decides what is new."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable

__all__ = ["Seen"]


class Seen:
    """A bounded LRU set of keys, each forgotten after ``ttl`` seconds (None: never)."""

    def __init__(
        self,
        maxsize: int = 10_000,
        *,
        ttl: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.maxsize = maxsize
        self.ttl = ttl
        self._clock = clock
        self._keys: OrderedDict[str, float] = OrderedDict()

    def add(self, key: str) -> bool:
        """Remember ``key``; True when it is new, False when it was already remembered."""
        now = self._clock()
        self._expire(now)
        if key in self._keys:
            self._keys.move_to_end(key)
            return False
        self._keys[key] = now
        while len(self._keys) > self.maxsize:
            self._keys.popitem(last=False)
        return True

    def discard(self, key: str) -> None:
        self._keys.pop(key, None)

    def __contains__(self, key: object) -> bool:
        self._expire(self._clock())
        return key in self._keys

    def __len__(self) -> int:
        return len(self._keys)

    def _expire(self, now: float) -> None:
        if self.ttl is None:
            return
        while self._keys:
            key, at = next(iter(self._keys.items()))
            if now - at <= self.ttl:
                break
            del self._keys[key]
