"""Ledgers kept open for the process, one per URL, for callers that run one task at a time.

``meshagent.runtime.runner.run_agent`` runs one task per call; opening the ledger on every call (an
engine, a connection, the schema's check) cost more CPU than the task's own work. It asks here
instead: the first call for a URL opens and migrates the ledger, later ones get the same one.
A SQLite file that was deleted or replaced since (a test's fresh ledger, a reset) is noticed by
its identity on disk, and opened and migrated again. Every kept ledger is closed when the
process exits (its queued writes committed first); a ledger's writes are durable when they
return, kept or not.
"""

from __future__ import annotations

import atexit
import functools
import os
import threading
from typing import TYPE_CHECKING, Any

from meshagent.config import default_ledger_url

if TYPE_CHECKING:
    from meshagent.ledger.store import Ledger

__all__ = ["close_shared", "shared_ledger"]

_MAX = 8  # URLs kept at once; the least recently asked is closed beyond that
_kept: dict[str, tuple[Ledger, Any]] = {}
_lock = threading.Lock()
_registered = False


def shared_ledger(url: str | None = None) -> Ledger:
    """The ledger at ``url`` (default: the user's SQLite ledger), opened once per process."""
    url = url or default_ledger_url()
    stamp = _file_stamp(url)
    stale: Ledger | None = None
    with _lock:
        found = _kept.pop(url, None)
        if found is not None and stamp is not None and found[1] == stamp:
            _kept[url] = found  # most recently asked last
            return found[0]
        if found is not None:  # its file is gone or another one: open the new one
            stale = found[0]
        from meshagent.ledger.store import Ledger

        ledger = Ledger.open(url)
        _kept[url] = (ledger, _file_stamp(url))
        evicted = [_kept.pop(next(iter(_kept)))[0] for _ in range(len(_kept) - _MAX)]
        global _registered
        if not _registered:
            atexit.register(close_shared)
            _registered = True
    for old in (stale, *evicted):
        if old is not None:
            old.close()  # its writes so far are committed; a late writer reconnects
    return ledger


def close_shared() -> None:
    """Close every kept ledger (at exit, or for a caller that wants them let go now)."""
    with _lock:
        kept = [ledger for ledger, _ in _kept.values()]
        _kept.clear()
    for ledger in kept:
        ledger.close()


@functools.lru_cache(maxsize=64)
def _file_of(url: str) -> str | None:
    """The path of a SQLite ledger's file, None for a database that is not a file."""
    if not url.startswith("sqlite"):
        return None
    from sqlalchemy.engine import make_url

    path = make_url(url).database
    if not path or path == ":memory:" or path.startswith("file:"):
        return None
    return os.path.expanduser(path)


def _file_stamp(url: str) -> Any:
    """What identifies a SQLite ledger's file on disk, None when it is missing; a constant for
    a database that is not a file (its server keeps it)."""
    path = _file_of(url)
    if path is None:
        return ()
    try:
        found = os.stat(path)
    except OSError:
        return None
    return found.st_dev, found.st_ino
