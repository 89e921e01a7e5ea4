"""``meshagent mcp ...``: lock the tools of the MCP servers of meshagent.toml."""

from __future__ import annotations

import asyncio
import os
from typing import Annotated

import typer

__all__ = ["app"]

app = typer.Typer(
    help="MCP servers: lock their tools so that agents validate without starting them.",
    no_args_is_help=True,
)


@app.callback()
def main() -> None:
    """The MCP servers of meshagent.toml."""


@app.command()
def refresh(
    ctx: typer.Context,
    check: Annotated[
        bool,
        typer.Option("--check", help="Write nothing; exit 1 when the lock is not current (CI)."),
    ] = False,
) -> None:
    """Ask each [mcp.NAME] server for its tools and write mcp.lock.json beside the agents,
    saying what changed."""
    from rich.console import Console

    from meshagent.cli.printer import print_error, print_note
    from meshagent.exceptions import ConfigError
    from meshagent.mcp.refresh import refresh as run_refresh

    def print_text(console: Console, text: str) -> None:  # one line each: paths stay whole
        console.print(text, soft_wrap=True, highlight=False, markup=False)

    out, err = Console(), Console(stderr=True)
    config = ctx.find_root().obj["config"]
    try:
        found = asyncio.run(run_refresh(config, os.environ, write=not check))
    except ConfigError as exc:
        print_error(err, exc)
        raise typer.Exit(2) from None
    for note in found.notes:
        print_note(err, "note", note)
    for failure in found.failures:
        print_error(err, failure)
    for line in found.changes:
        print_text(out, line)
    tools = sum(len(t) for t in found.lock.servers.values())
    if found.failures:
        print_text(err, f"{found.path} not written: {len(found.failures)} server(s) failed")
        raise typer.Exit(2)
    if check:
        if found.changes:
            print_text(err, f"{found.path} is not current: run `meshagent mcp refresh`")
            raise typer.Exit(1)
        print_text(out, f"{found.path} is current ({tools} tools)")
        return
    what = "no changes" if not found.changes else f"{len(found.changes)} change(s)"
    print_text(
        out, f"wrote {found.path}: {len(found.lock.servers)} server(s), {tools} tools, {what}"
    )
