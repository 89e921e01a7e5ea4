"""The `meshagent` command: parses arguments, calls the library, renders the result."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from meshagent import __version__
from meshagent.config import Config, load_config
from meshagent.exceptions import ConfigError, MeshAgentError, SpecError
from meshagent.ledger.cli import app as ledger_app
from meshagent.loader import load_agents, scan_agents
from meshagent.scaffold import write_agent
from meshagent.schema import schema_text
from meshagent.spec import AgentSpec, Budget

app = typer.Typer(
    name="meshagent",
    help="AI agents in YAML, run on schedules or from Slack, with a ledger of cost and value.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(ledger_app, name="ledger")
out = Console()
err = Console(stderr=True)


def _config(ctx: typer.Context) -> Config:
    return ctx.obj["config"]


def _version(value: bool) -> None:
    if value:
        out.print(f"meshagent {__version__}")
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
    try:
        settings = load_config(config)
    except ConfigError as exc:
        err.print(f"[red]error:[/red] {exc}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None
    ctx.obj = {
        "config": settings,
        "ledger_url": settings.ledger_url,
        "privacy": settings.privacy,
        "flag_settings": settings.flags,
    }


def _report(error: SpecError, files: int) -> None:
    for issue in error.issues:
        err.print(str(issue), highlight=False, markup=False, soft_wrap=True)
    bad_files = len({issue.file for issue in error.issues})
    noun = "error" if len(error.issues) == 1 else "errors"
    err.print(
        f"[red]{len(error.issues)} {noun}[/red] in {bad_files} of {files} "
        f"file{'s' if files != 1 else ''}",
        highlight=False,
    )


def _shown(path: Path) -> Path:
    """A path as the user would type it: relative to the working directory when below it."""
    here = Path.cwd()
    return path.relative_to(here) if path.is_absolute() and path.is_relative_to(here) else path


def _paths(config: Config, paths: list[Path] | None) -> list[Path]:
    return list(paths) if paths else [_shown(config.agents_dir)]


@app.command()
def validate(
    ctx: typer.Context,
    paths: Annotated[
        list[Path] | None,
        typer.Argument(help="Agent files or directories (default: the agents directory)."),
    ] = None,
) -> None:
    """Check agent files; print every error with file:line:column, exit 1 if any."""
    config = _config(ctx)
    result = scan_agents(_paths(config, paths), value_tags=config.value_tags)
    if result.issues:
        _report(SpecError(result.issues), result.files)
        raise typer.Exit(1)
    out.print(f"[green]ok[/green]: {len(result.agents)} agents in {result.files} files valid")


@app.command()
def schema(
    ctx: typer.Context,
    output: Annotated[
        Path | None, typer.Option("-o", "--output", help="Write to FILE instead of stdout.")
    ] = None,
) -> None:
    """Print the JSON Schema of an agent file (for editors and CI)."""
    text = schema_text(value_tags=_config(ctx).value_tags)
    if output is None:
        typer.echo(text, nl=False)
    else:
        output.write_text(text, encoding="utf-8")
        err.print(f"wrote {output}")


@app.command()
def init(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Agent name: lowercase letters, digits, dashes.")],
    team: Annotated[str, typer.Option(help="Team the agent reports under.")] = "my-team",
    owner: Annotated[
        str | None, typer.Option(help="Owner's email or handle (default: $USER).")
    ] = None,
) -> None:
    """Write agents/NAME.yaml, a starter agent that passes validate."""
    config = _config(ctx)
    owner = owner or os.environ.get("USER") or "me@example.com"
    try:
        written = write_agent(config, name=name, team=team, owner=owner)
    except MeshAgentError as exc:
        err.print(f"[red]error:[/red] {exc}", highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None
    for path in written:
        out.print(f"wrote {_shown(path)}")
    agent = _shown(written[0])
    out.print(f"next: edit {agent}, then run `meshagent validate {agent}`")


def _budget(budget: Budget) -> str:
    parts = []
    if budget.max_tokens_per_run:
        parts.append(f"{budget.max_tokens_per_run:,} tok/run")
    if budget.max_model_calls:
        calls = "call" if budget.max_model_calls == 1 else "calls"
        parts.append(f"{budget.max_model_calls} {calls}/run")
    if budget.max_usd_per_run:
        parts.append(f"${budget.max_usd_per_run:.2f}/run")
    if budget.max_usd_per_day:
        parts.append(f"${budget.max_usd_per_day:.2f}/day")
    return "\n".join(parts) or "[yellow]no limit[/yellow]"


@app.command("list")
def list_agents(
    ctx: typer.Context,
    paths: Annotated[
        list[Path] | None,
        typer.Argument(help="Agent files or directories (default: the agents directory)."),
    ] = None,
) -> None:
    """Table of agents: team, triggers with the next fire time, model, budget, value."""
    config = _config(ctx)
    try:
        agents = load_agents(_paths(config, paths), value_tags=config.value_tags)
    except SpecError as exc:
        _report(exc, len({i.file for i in exc.issues}))
        raise typer.Exit(1) from None
    # A console made now, not at import, reads the terminal's current width.
    Console().print(agent_table(agents, config=config, now=datetime.now(UTC)))


def agent_table(agents: list[AgentSpec], *, config: Config, now: datetime) -> Table:
    table = Table(title=f"{len(agents)} agents", title_justify="left")
    for column in ("name", "team", "triggers", "model", "budget", "value"):
        table.add_column(column, overflow="fold")
    for spec in sorted(agents, key=lambda s: (s.team, s.name)):
        triggers = "\n".join(t.describe(now) for t in spec.triggers) or "manual only"
        name = spec.name if spec.enabled else f"{spec.name} [dim](disabled)[/dim]"
        value = f"{spec.value.tag}\n{spec.value.minutes_saved:g} min/run"
        model = spec.model or f"{config.default_model} (default)"
        table.add_row(name, spec.team, triggers, model, _budget(spec.budget), value)
    return table
