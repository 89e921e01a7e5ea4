"""The `meshagent` commands about agent files: validate, schema, init, list and run."""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from meshagent.cli.common import (
    agent_paths,
    err,
    exits_on_error,
    out,
    project_registry,
    report_issues,
    resume_collector,
    settings,
    shown,
)
from meshagent.cli.invocation import shell_line
from meshagent.cli.people import current_person
from meshagent.cli.printer import print_command
from meshagent.exceptions import ConfigError, SpecError
from meshagent.figures import money, plural

if TYPE_CHECKING:
    from rich.table import Table

    from meshagent.agentfile.loader import LoadResult
    from meshagent.agentfile.spec import AgentSpec, Budget
    from meshagent.config import Config

__all__ = [
    "WIDE_TABLE",
    "agent_table",
    "find_agent",
    "init",
    "list_agents",
    "run",
    "schema",
    "validate",
]

#: The agent files and directories a command reads.
AgentPaths = Annotated[
    list[Path] | None,
    typer.Argument(help="Agent files or directories (default: the agents directory)."),
]


def validate(
    ctx: typer.Context,
    paths: AgentPaths = None,
) -> None:
    """Check agent files; print every error with file:line:column, exit 1 if any."""
    from meshagent.agentfile.loader import scan_agents

    config = settings(ctx)
    with exits_on_error():
        registry = project_registry(config)
    resume_collector()
    result = scan_agents(
        agent_paths(config, paths),
        registry=registry,
        value_tags=config.value_tags,
        min_interval_seconds=config.serve.min_interval_seconds,
    )
    if result.issues:
        report_issues(SpecError(result.issues), result.files)
        raise typer.Exit(1)
    agents, files = plural(len(result.agents), "agent"), plural(result.files, "file")
    out.print(f"[green]ok[/green]: {agents} in {files} valid")


def schema(
    ctx: typer.Context,
    output: Annotated[
        Path | None, typer.Option("-o", "--output", help="Write to FILE instead of stdout.")
    ] = None,
) -> None:
    """Print the JSON Schema of an agent file (for editors and CI)."""
    from meshagent.agentfile.schema import schema_text

    with exits_on_error():
        registry = project_registry(settings(ctx))
    resume_collector()
    text = schema_text(registry, value_tags=settings(ctx).value_tags)
    if output is None:
        typer.echo(text, nl=False)
    else:
        output.write_text(text, encoding="utf-8")
        err.print(f"wrote {output}")


def init(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Agent name: lowercase letters, digits, dashes.")],
    team: Annotated[str, typer.Option(help="Team the agent reports under.")] = "my-team",
    owner: Annotated[
        str | None,
        typer.Option(
            help="Owner's email or handle (default: \\[people] me, git's user.email, $USER; "
            "else asked).",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Write agents/NAME.yaml, a starter agent that passes validate."""
    from rich.text import Text

    from meshagent.agentfile.scaffold import write_agent

    config = settings(ctx)
    if owner is None:
        person = current_person(config)
        if person is None:
            owner = typer.prompt("Who owns this agent (email or Slack handle)?").strip()
        else:
            owner = person.name
            err.print(Text(f"owner: {person}; --owner sets another"), highlight=False)
    with exits_on_error(1):
        written = write_agent(config, name=name, team=team, owner=owner)
    for path in written:
        out.print(Text(f"wrote {shown(path)}"), highlight=False)
    agent = shown(written[0])
    out.print("next: edit it, then check it and try it (a dry run writes nothing):")
    print_command(out, shell_line("validate", agent))
    print_command(out, shell_line("run", agent, "--dry-run"))


def _budget(budget: Budget) -> str:
    parts = []
    if budget.max_tokens_per_run:
        parts.append(f"{budget.max_tokens_per_run:,} tok/run")
    if budget.max_model_calls:
        calls = "call" if budget.max_model_calls == 1 else "calls"
        parts.append(f"{budget.max_model_calls} {calls}/run")
    if budget.max_usd_per_run:
        parts.append(f"{money(Decimal(str(budget.max_usd_per_run)))}/run")
    if budget.max_usd_per_day:
        parts.append(f"{money(Decimal(str(budget.max_usd_per_day)))}/day")
    return "\n".join(parts) or "no limit"


def list_agents(
    ctx: typer.Context,
    paths: AgentPaths = None,
) -> None:
    """Table of agents: team, triggers with the next fire time, model, budget, value."""
    from meshagent.agentfile.loader import load_agents

    config = settings(ctx)
    try:
        agents = load_agents(
            agent_paths(config, paths),
            value_tags=config.value_tags,
            min_interval_seconds=config.serve.min_interval_seconds,
        )
    except SpecError as exc:
        report_issues(exc, len({i.file for i in exc.issues}))
        raise typer.Exit(1) from None
    from rich.console import Console

    # A console made now, not at import, reads the terminal's current width.
    console = Console()
    console.print(agent_table(agents, config=config, now=datetime.now(UTC), width=console.width))


#: Below this many columns the agents table stacks each agent's details in two columns.
WIDE_TABLE = 110


def agent_table(
    agents: list[AgentSpec], *, config: Config, now: datetime, width: int = WIDE_TABLE
) -> Table:
    """The agents as a table; names and teams are never broken mid-word, at any width."""
    from rich.table import Table
    from rich.text import Text

    wide = width >= WIDE_TABLE
    table = Table(title=plural(len(agents), "agent"), title_justify="left", show_lines=not wide)
    columns = ("name", "team", "triggers", "model", "budget", "value")
    for column in columns if wide else ("agent", "triggers, budget, value"):
        named = column in ("name", "team", "agent")
        table.add_column(column, no_wrap=named, overflow="ellipsis" if named else "fold")
    for spec in sorted(agents, key=lambda s: (s.team, s.name)):
        triggers = "\n".join(t.describe(now) for t in spec.triggers) or "manual only"
        name = Text(spec.name)
        if not spec.enabled:
            name.append(" (disabled)", style="dim")
        value = f"{spec.value.tag}, {spec.value.minutes_saved:g} min/run"
        model = spec.model or f"{config.default_model} (default)"
        if wide:
            table.add_row(name, Text(spec.team), Text(triggers), Text(model),
                          _budget(spec.budget), Text(value.replace(", ", "\n")))  # fmt: skip
        else:
            budget = _budget(spec.budget).replace("\n", ", ")
            table.add_row(
                Text.assemble(name, f"\n{spec.team}\n{model}"),
                Text("\n".join([triggers, budget, value])),
            )
    return table


def find_agent(config: Config, agent: str) -> AgentSpec:
    """An agent by file path, or by name among the agents directory's files."""
    from meshagent.actions import closest
    from meshagent.agentfile.loader import files_for_agent, load_agents, scan_agents
    from meshagent.agentfile.spec import SlashTrigger
    from meshagent.mcp.tools import registry_near

    path = Path(agent)
    if path.suffix in (".yaml", ".yml") or path.exists():
        return load_agents(
            [path],
            registry=registry_near(path, config),
            value_tags=config.value_tags,
            min_interval_seconds=config.serve.min_interval_seconds,
        )[0]
    registry = project_registry(config)

    def scan(files: list[Path]) -> LoadResult:
        return scan_agents(
            files,
            registry=registry,
            value_tags=config.value_tags,
            min_interval_seconds=config.serve.min_interval_seconds,
        )

    def named(files: list[Path]) -> AgentSpec | None:
        return next((spec for spec in scan(files).agents if spec.name == agent), None)

    # The files that can define it first, then those before its own that can take its slash
    # commands first (a file takes a name or command when it loads, whatever else is wrong with
    # it), decide. When it is not among them, every file is read, for what is wrong or the
    # agents there are.
    spec = named(files_for_agent([config.agents_dir], agent))
    if spec is not None:
        commands = [t.slash for t in spec.triggers if isinstance(t, SlashTrigger)]
        if commands:
            files = files_for_agent([config.agents_dir], agent, commands)
            mine = files.index(spec.source) if spec.source in files else len(files)
            if mine > 0:  # the files after its own cannot take what it took first
                spec = named(files[: mine + 1])
        if spec is not None:
            return spec
    result = scan([config.agents_dir])
    for spec in result.agents:
        if spec.name == agent:
            return spec
    for issue in result.issues:  # the agent may be in a file that does not load
        if Path(issue.file).stem == agent:
            raise SpecError([i for i in result.issues if i.file == issue.file])
    names = [spec.name for spec in result.agents]
    hint = closest(agent, names)
    suggestion = f"; did you mean {hint!r}?" if hint else ""
    raise ConfigError(
        f"no agent named {agent!r} in {shown(config.agents_dir)}{suggestion} "
        f"(agents: {', '.join(sorted(names)) or 'none'})"
    )


def _inputs(pairs: list[str]) -> dict[str, str]:
    values = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name.strip():
            raise ConfigError(f"--input takes NAME=VALUE, got {pair!r}")
        values[name.strip()] = value
    return values


def run(
    ctx: typer.Context,
    agent: Annotated[str, typer.Argument(help="Agent name, or the path of its YAML file.")],
    input_: Annotated[
        list[str] | None,
        typer.Option("--input", "-i", help="An input as NAME=VALUE (repeatable).", metavar="K=V"),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Read and think, but write nothing: plan the writes.")
    ] = False,
    model: Annotated[
        str | None, typer.Option("--model", help="Use this model instead of the agent's.")
    ] = None,
) -> None:
    """Run one task of an agent now: its answer, what it delivered, tokens, cost, run id."""
    import asyncio

    from meshagent.runtime.runner import Runtime

    config = settings(ctx)
    with exits_on_error():
        spec = find_agent(config, agent)
        values = _inputs(input_ or [])
        from meshagent.mcp.tools import registry_near

        # The MCP tools of the lock beside the agent's file (the project's, usually).
        runtime = Runtime(config, registry=registry_near(spec.source or config.agents_dir, config))
    person = current_person(config)  # whose run it is, as the ledger's reports see them
    what = "dry run of" if dry_run else "running"
    spinner = err.status(f"{what} {spec.name} ({model or spec.model or config.default_model})…")
    resume_collector()
    with exits_on_error(), contextlib.closing(runtime.ledger), spinner:
        result = asyncio.run(
            runtime.run(
                spec,
                trigger="cli",
                triggered_by=person.name if person else None,
                inputs=values,
                dry_run=dry_run,
                model=model,
            )
        )
    from meshagent.runtime.view import render_result

    render_result(out, result)
    if result.staged:  # writes waiting for a person, and how to decide them
        from meshagent.cli.approvals import print_staged

        print_staged(out, result.staged, config_file=ctx.parent.params.get("config"))
    raise typer.Exit(0 if result.ok else 1)
