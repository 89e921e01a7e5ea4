"""The demo's approvals: the stale-ticket nudger stages its Jira comments, and its owner approves
one (written once, accepted) and rejects another with a reason, through the decision a click or
``meshagent approvals`` makes; the rest wait."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from rich.console import Console

from meshagent.approvals.asks import update_asked
from meshagent.approvals.staged import Decision, decide, describe, identities, is_listed
from meshagent.cli.printer import print_text
from meshagent.ledger.people import directory

__all__ = ["decide_first_requests", "print_decisions"]

REJECTION = "parked on purpose until the January release"


async def decide_first_requests(
    runtime: Any, clock: Any, results: Sequence[Any], agents: Sequence[Any], at: datetime
) -> list[Decision]:
    """The owner decides the first two writes staged by ``results``: approve, then reject."""
    staged = [approval for result in results for approval in result.staged]
    by_name = {spec.name: spec for spec in agents}
    people = directory(runtime.ledger)
    decisions = []
    clock.at = at  # twenty minutes after the runs that staged them: well before they expire
    try:
        for approval, decision in zip(staged, ("approved", "rejected"), strict=False):
            owner = by_name[approval.agent].owner

            async def listed(found: Any, owner: str = owner) -> bool:
                return is_listed(found, identities([owner]), people)

            made = await decide(
                runtime,
                approval.id,
                decision=decision,
                who=owner,
                listed=listed,
                find_spec=by_name.get,
                reason=REJECTION if decision == "rejected" else None,
            )
            if made.done and made.approval is not None:
                await update_asked(runtime, made.approval)  # the DMs that asked show it
            decisions.append(made)
    finally:
        clock.at = None
    return decisions


def print_decisions(console: Console, decisions: Sequence[Decision], waiting: int) -> None:
    """A line per decision: who decided what, and what it did."""
    if not decisions:
        return
    first = decisions[0].approval
    agent = first.agent if first is not None else "?"
    print_text(
        console,
        f"Approvals: {agent} staged its Jira comments for its owner's approval "
        "(asked in Slack, each with the exact payload):",
    )
    for made in decisions:
        approval = made.approval
        if approval is None:
            continue
        headline, _ = describe(approval.action, approval.payload)
        if made.code == "executed":
            said = f"approved by {approval.decided_by}: written once, an accepted outcome"
        elif made.code == "rejected":
            said = f"rejected by {approval.decided_by} ({approval.reason}): a rejected outcome"
        else:
            said = made.message
        print_text(console, f"  {headline}: {said}")
    if waiting:
        print_text(console, f"  {waiting} more wait for a decision (or expire unanswered).")
