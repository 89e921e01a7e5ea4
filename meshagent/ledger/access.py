"""What the ledger's parts need of a ledger: the `Ledger`'s interface as a `Protocol`.

The modules that do a part of the ledger's work (annotate, batch, budget, group, people,
recovery, verdicts) take a ledger and use only what is named here. They name this protocol
rather than `meshagent.ledger.store.Ledger`, so that they stand below the store, which imports
them (issue 23: no import circles).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol, TypeVar

if TYPE_CHECKING:
    from sqlalchemy import Connection, Engine

    from meshagent.ledger.lifecycle import Step

__all__ = ["GroupWriter", "LedgerAccess"]

T = TypeVar("T")


class GroupWriter(Protocol):
    """The group commit's writer (`meshagent.ledger.group.GroupCommit`), as its users see it."""

    async def write(self, step: Step[T], *, what: str, durable: bool = True) -> T: ...


class LedgerAccess(Protocol):
    """The part of `meshagent.ledger.store.Ledger` that the ledger's own modules use."""

    engine: Engine
    url: str
    retry_for: float

    def transact(
        self, work: Callable[[Connection], T], *, what: str, durable: bool = True
    ) -> T: ...

    def read(self, work: Callable[[Connection], T], *, what: str = "read") -> T: ...

    def close_run(
        self,
        run_id: str,
        status: str,
        *,
        error: str | None = None,
        release_reservations: bool = False,
    ) -> None: ...

    def group_commit(self) -> GroupWriter: ...
