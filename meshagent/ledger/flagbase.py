"""What the flag rules share: an agent's cells of the period, and dollars in words.

`meshagent.ledger.flagrules.Rules` is made of the rule families (`flagspend`: spend and its
habits; `flagpeople`: what people did with the outputs); this module imports neither them nor
`meshagent.ledger.flags`.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from meshagent.ledger import flagdata as data

__all__ = ["AgentCells", "RuleState", "usd"]

CENT = Decimal("0.01")


def usd(amount: Decimal) -> str:
    """Dollars as a flag writes them: $4.10."""
    return f"${amount.quantize(CENT)}"


@dataclass
class AgentCells:
    """One agent's cells of the period (`flagdata.Cell`), its owners by runs and its tag."""

    name: str
    owners: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    tag: str = ""
    cells: list[data.Cell] = field(default_factory=list)

    @property
    def owner(self) -> str:
        return max(self.owners.items(), key=lambda item: (item[1], item[0]))[0]

    def total(self, name: str) -> Any:
        return sum((getattr(cell, name) for cell in self.cells), 0)


class RuleState:
    """What every rule family reads and calls: the period's state and the helpers that
    `meshagent.ledger.flagrules.Rules` sets and defines."""

    c: Any  # the read connection
    s: Any  # FlagSettings
    value: Any  # ValueSettings
    people: Any  # People
    period: Any  # Period
    since: datetime
    until: datetime
    found: list[Any]  # the flags so far
    agents: dict[str, AgentCells]
    past: dict[str, list[tuple[Any, int, Decimal, int]]]  # (day, runs, cost, tokens) per agent
    min_usd: Decimal
    schedule_check: Any
    add: Any
    material: Any
    habit: Any
    runs: Any
