"""What the flag rules share: the `Flag` they raise, each rule's weight (`RULES`), an agent's
cells of the period, and dollars in words.

`meshagent.ledger.flagrules.Rules` is made of the rule families (`flagspend`: spend and its
habits; `flagpeople`: what people did with the outputs); `meshagent.ledger.flags` runs them and
re-exports `Flag` and `RULES`. This module imports none of them.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from meshagent.ledger import flagdata as data
from meshagent.ledger.periods import Period

__all__ = ["RULES", "AgentCells", "Flag", "RuleState", "ScheduleCheck", "usd"]

CENT = Decimal("0.01")
ScheduleCheck = Callable[[str, datetime], bool]
# How much each rule's evidence weighs in the ranking (1: the ledger shows it happened).
RULES = {
    "self_vote": 0.95,
    "unchanged_rerun": 0.9,
    "split_task": 0.85,
    "slash_loop": 0.85,
    "negative_feedback": 0.8,
    "no_outcome": 0.75,
    "unread": 0.7,
    "claimed_value": 0.65,
    "token_outlier": 0.55,
    "burst": 0.5,
    "off_schedule": 0.4,
    "failing": 0.3,
}


@dataclass(frozen=True)
class Flag:
    """One rule's finding about one agent (and person), with what it rests on."""

    rule: str
    subject: str  # the agent
    reason: str  # one line: what happened, in numbers
    run_ids: tuple[str, ...]
    owner: str = ""  # the agent's owner (as a person)
    people: tuple[str, ...] = ()  # who triggered the flagged runs (people)
    accountable: str = ""  # whom the flag is about: the owner, or a looper
    usd: Decimal = Decimal(0)  # dollars at stake in the period
    evidence: tuple[str, ...] = ()
    innocent: str = ""  # the innocent explanation
    fix: str = ""  # what to do, with what it saves
    strength: float = 0.0
    kind: str = "waste"  # or "reliability"
    period: Period | None = field(default=None, compare=False)

    @property
    def score(self) -> Decimal:
        return self.usd * Decimal(str(self.strength))


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
