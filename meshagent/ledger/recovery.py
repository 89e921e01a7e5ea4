"""Start-up recovery: entries left `running` by a process that died are closed as `interrupted`."""

from __future__ import annotations

import os
import socket
from datetime import timedelta
from typing import TYPE_CHECKING

from sqlalchemy import select

from meshagent.ledger import rows
from meshagent.ledger.schema import entries

if TYPE_CHECKING:
    from meshagent.ledger.access import LedgerAccess

__all__ = ["recover"]


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _is_dead(process: str | None) -> bool:
    """Whether the process that opened an entry is known to be gone (only knowable locally)."""
    host, _, rest = (process or "").partition(":")
    pid_text, _, token = rest.partition(":")
    if host != socket.gethostname() or not pid_text.isdigit():
        return False
    if process == rows.process_id():
        return False  # our own open runs are alive
    pid = int(pid_text)
    # Our pid with another token is an earlier life of this pid (a restarted container).
    return pid == os.getpid() or not _pid_alive(pid)


def recover(ledger: LedgerAccess, *, older_than: timedelta | None = None) -> list[str]:
    """Close as interrupted the running entries of dead processes; returns their run ids."""
    query = select(entries.c.run_id, entries.c.process, entries.c.started_at).where(
        entries.c.status == "running"
    )
    found = ledger.read(lambda c: c.execute(query).all(), what="find interrupted runs")
    cutoff = rows.now() - older_than if older_than is not None else None
    recovered = []
    for run_id, process, started_at in found:
        stale = cutoff is not None and started_at < cutoff
        if stale or _is_dead(process):
            ledger.close_run(
                run_id,
                "interrupted",
                error="the process running it stopped before it finished",
                release_reservations=True,  # its calls in flight hold no budget any more
            )
            recovered.append(run_id)
    return recovered
