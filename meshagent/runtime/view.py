"""How a finished run looks in a terminal: answer, deliveries, usage table, ledger id."""

from __future__ import annotations

from rich.console import Console, Group
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from meshagent.ledger.render import money, plural
from meshagent.runtime.runner import RunResult

__all__ = ["render_result", "run_line", "usage_table"]

_STATUS_STYLE = {"ok": "green", "skipped_unchanged": "cyan", "over_budget": "yellow"}


def run_line(result: RunResult) -> str:
    """A finished run in one log line: agent, status, tokens, cost, outcomes, run id."""
    usage = result.usage
    outcomes = [outcome.kind for outcome in result.outcomes]
    kinds = f" ({', '.join(sorted(set(outcomes)))})" if outcomes else ""
    reason = f"; {result.error}" if result.error else ""
    return (
        f"run {result.agent} {result.status}: "
        f"{plural(usage.input_tokens + usage.output_tokens, 'token')}, {money(result.cost_usd)}, "
        f"{plural(len(outcomes), 'outcome')}{kinds}{reason} [run {result.run_id}]"
    ).replace("\n", " ")


def usage_table(result: RunResult) -> Table:
    """Model calls, tool calls, tokens by kind and cost of one run."""
    usage = result.usage
    estimated = " (estimated)" if usage.estimated else ""
    table = Table(title=f"usage{estimated}", title_justify="left", show_header=False)
    table.add_column("what")
    table.add_column("amount", justify="right")
    rows = [
        ("model calls", f"{usage.model_calls:,}"),
        ("tool calls", f"{usage.tool_calls:,}"),
        ("input tokens", f"{usage.input_tokens:,}"),
        ("  of which cache read", f"{usage.cache_read_tokens:,}"),
        ("  of which cache write", f"{usage.cache_write_tokens:,}"),
        ("  of which the framework's", _framework_share(result)),
        ("output tokens", f"{usage.output_tokens:,}"),
        ("  of which reasoning", f"{usage.reasoning_tokens:,}"),
        ("cost", money(result.cost_usd)),
    ]
    if result.framework_share:
        rows.insert(rows.index(("output tokens", f"{usage.output_tokens:,}")),
                    ("    from", result.framework_share))  # fmt: skip
    for name, value in rows:
        table.add_row(name, value)
    return table


def _framework_share(result: RunResult) -> str:
    """The prompt tokens the author did not write, estimated, and their share of the input."""
    tokens, sent = result.framework_prompt_tokens, result.usage.input_tokens
    share = f" ({min(100.0, 100 * tokens / sent):.0f}%)" if sent else ""
    return f"~{tokens:,}{share}"


def _delivered(result: RunResult) -> Table | Text:
    if not result.outcomes:
        if result.dry_run:
            return Text("dry run: nothing would be delivered (the agent has no deliver:)")
        return Text("delivered: nothing", style="dim")
    title = "would deliver (dry run)" if result.dry_run else "delivered"
    table = Table(title=title, title_justify="left")
    table.add_column("kind")
    table.add_column("reference", overflow="fold")
    table.add_column("link", overflow="fold")
    for outcome in result.outcomes:
        table.add_row(outcome.kind, outcome.reference, outcome.url or "")
    return table


def render_result(console: Console, result: RunResult) -> None:
    """Print a run's answer, deliveries, refusals, usage and ledger entry."""
    if result.dry_run:
        console.print(
            Text.assemble(("dry run", "bold yellow"), ": read and thought, wrote nothing"),
            highlight=False,
        )
    if result.answer:
        console.print(Panel(Text(result.answer), title=f"{result.agent}: answer", expand=False))
    console.print(_delivered(result))
    for refusal in result.refusals:
        console.print(
            Text.assemble(("refused", "yellow"), f" {refusal.action}: {refusal.reason}"),
            highlight=False,
        )
    console.print(usage_table(result))
    style = _STATUS_STYLE.get(result.status, "red")
    line = Text.assemble(
        ("status ", "bold"),
        (result.status, style),
        (" (dry run)" if result.dry_run else "", "yellow"),
        f"  run {result.run_id}",
        f"  {result.seconds:.1f}s",
    )
    parts: list = [line]
    if result.error:
        parts.append(Text(f"reason: {result.error}", style=style))
    for note in result.notes:
        parts.append(Text(note, style="yellow"))
    console.print(Group(*parts))
