"""The `meshagent` command: parses arguments, calls the library, renders the result.

The commands live by group: agent files (`meshagent.cli.agents`), the long-running services
and the demo (`meshagent.cli.services`), and the groups of their own packages (ledger, slack,
approvals, mcp), imported when asked for; what they share is `meshagent.cli.common`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from meshagent.cli.agents import (
    WIDE_TABLE,
    agent_table,
    find_agent,
    init,
    list_agents,
    run,
    schema,
    validate,
)
from meshagent.cli.common import collector_paused, command_is_the_process, err, out
from meshagent.cli.printer import print_error
from meshagent.cli.services import dashboard, demo, sandbox, serve
from meshagent.exceptions import ConfigError

__all__ = ["WIDE_TABLE", "agent_table", "app", "err", "find_agent", "main", "out"]


def _ledger() -> typer.Typer:
    from meshagent.cli.followup import follow_up_command
    from meshagent.cli.ledger import app as ledger_app

    ledger_app.command("follow-up")(follow_up_command)
    return ledger_app


def _slack() -> typer.Typer:
    from meshagent.cli.slack import app as slack_app

    return slack_app


def _mcp() -> typer.Typer:
    from meshagent.cli.mcp import app as mcp_app

    return mcp_app


def _approvals() -> typer.Typer:
    from meshagent.cli.approvals import app as approvals_app

    return approvals_app


#: Command groups whose modules are imported when the group is asked for: the ledger's pull in
#: SQLAlchemy, which validate, list, schema and --version do without (start time, issue 20).
_GROUPS: dict[str, Callable[[], typer.Typer]] = {
    "ledger": _ledger,
    "slack": _slack,
    "approvals": _approvals,
    "mcp": _mcp,
}


class _Commands(typer.core.TyperGroup):
    """The top-level commands, with the groups of ``_GROUPS`` added when first asked for."""

    def list_commands(self, ctx: typer.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *_GROUPS})

    def get_command(self, ctx: typer.Context, name: str) -> Any:
        found = super().get_command(ctx, name)
        if found is None and name in _GROUPS:
            holder = typer.Typer()  # built as add_typer would build it, then taken out
            holder.add_typer(_GROUPS[name](), name=name)
            found = typer.main.get_group(holder).commands[name]
            self.add_command(found, name)
        return found


class _App(typer.Typer):
    """The `meshagent` script calls the app itself; other callers in a process of their own
    (tests' CliRunner) call its click command."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        command_is_the_process()
        return super().__call__(*args, **kwargs)


app = _App(
    name="meshagent",
    cls=_Commands,
    help="AI agents in YAML, run on schedules or from Slack, with a ledger of cost and value.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


#: Commands that do one bounded piece of work and exit: the garbage collector waits while they
#: start (see `collector_paused`); the services and the groups keep it as it is.
_QUICK = frozenset({"validate", "schema", "list", "run", "init"})


def _version(value: bool) -> None:
    if value:
        from meshagent import __version__

        typer.echo(f"meshagent {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    ctx: typer.Context,
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            help="Project settings file (default: meshagent.toml found upward, or "
            "$MESHAGENT_CONFIG).",
            show_default=False,
        ),
    ] = None,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print version.")
    ] = False,
) -> None:
    if ctx.invoked_subcommand in _QUICK:
        ctx.with_resource(collector_paused())
    from meshagent.config import load_config

    try:
        settings = load_config(config)
    except ConfigError as exc:
        print_error(err, exc)
        raise typer.Exit(2) from None
    ctx.obj = {
        "config": settings,
        "ledger_url": settings.ledger_url,
        "privacy": settings.privacy,
        "flag_settings": settings.flags,
    }


for command, name in (
    (validate, None),
    (schema, None),
    (init, None),
    (list_agents, "list"),
    (sandbox, None),
    (run, None),
    (dashboard, None),
    (serve, None),
    (demo, None),
):
    app.command(name)(command)
