"""`meshagent ledger follow-up`: one follow-up pass by hand, with a table of what it read."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from meshagent.cli.printer import print_error
from meshagent.exceptions import LedgerError
from meshagent.fleet.followup import Pass, run_pass
from meshagent.ledger.people import sync_aliases
from meshagent.ledger.render import plural
from meshagent.ledger.store import Ledger

__all__ = ["follow_up_command", "render"]


def follow_up_command(
    ctx: typer.Context,
    max_calls: Annotated[
        int | None,
        typer.Option(
            min=1, help="At most this many API calls (default: \\[followup] max_calls_per_pass)."
        ),
    ] = None,
) -> None:
    """Read each delivered outcome that is due back from Slack and Jira, and judge it."""
    obj = ctx.obj or {}
    config = obj["config"]
    try:
        with Ledger.open(obj.get("ledger_url") or config.ledger_url) as ledger:
            if config.people.aliases:
                sync_aliases(ledger, config.people.aliases)
            done = run_pass(ledger, config, env=os.environ, max_calls=max_calls)
    except LedgerError as exc:
        print_error(Console(stderr=True), exc)
        raise typer.Exit(2) from None
    console = Console()
    render(done, console if console.is_terminal else Console(width=200))


def render(done: Pass, console: Console) -> None:
    """The outcomes a pass checked, each with its verdict and counted evidence."""
    if not done.checked:
        console.print("No outcome was due for a check.")
        return
    table = Table(title=f"Follow-up at {datetime.now(UTC):%Y-%m-%d %H:%M} UTC")
    for column in ("outcome", "agent", "what", "verdict", "evidence"):
        table.add_column(column)
    for item in done.checked:
        counted = [f"{e.what} by {e.who or 'the tool'}" for e in item.evidence]
        table.add_row(
            str(item.outcome.id),
            item.outcome.agent,
            f"{item.outcome.kind} {item.outcome.ref}",
            item.verdict or f"not read: {item.error}",
            "; ".join(counted) or "none",
        )
    console.print(table)
    later = f"; {done.left} left for the next pass (call limit)" if done.left else ""
    checked = plural(len(done.checked), "outcome")
    console.print(f"{checked} checked with {plural(done.calls, 'API call')}{later}.")
