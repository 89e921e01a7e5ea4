"""The `meshagent` command: parses arguments, calls the library, renders the result."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from meshagent.exceptions import ConfigError, MeshAgentError, SpecError
from meshagent.figures import money, plural
from meshagent.invocation import ensure_can_listen, shell_line
from meshagent.people import Person, current_person
from meshagent.printer import print_command, print_error, print_note

if TYPE_CHECKING:
    from rich.table import Table

    from meshagent.config import Config
    from meshagent.spec import AgentSpec, Budget


def _ledger() -> typer.Typer:
    from meshagent.followup_command import follow_up_command
    from meshagent.ledger.cli import app as ledger_app

    ledger_app.command("follow-up")(follow_up_command)
    return ledger_app


def _slack() -> typer.Typer:
    from meshagent.slack.cli import app as slack_app

    return slack_app


def _mcp() -> typer.Typer:
    from meshagent.mcp.cli import app as mcp_app

    return mcp_app


def _approvals() -> typer.Typer:
    from meshagent.approvals_cli import app as approvals_app

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


app = typer.Typer(
    name="meshagent",
    cls=_Commands,
    help="AI agents in YAML, run on schedules or from Slack, with a ledger of cost and value.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


class _Console:
    """A Rich console made when first printed to: `meshagent --version` does without Rich."""

    def __init__(self, **options: Any) -> None:
        self._options = options
        self._made: Any = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self.made(), name)

    def made(self) -> Any:
        if self._made is None:
            from rich.console import Console

            self._made = Console(**self._options)
        return self._made

    def __enter__(self) -> Any:  # `with console:` (the demo's progress) is looked up on the type
        return self.made().__enter__()

    def __exit__(self, *exc: object) -> None:
        self.made().__exit__(*exc)


out: Any = _Console()
err: Any = _Console(stderr=True)


def _config(ctx: typer.Context) -> Config:
    return ctx.obj["config"]


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


@contextlib.contextmanager
def _exits_on_error(code: int = 2) -> Iterator[None]:
    """A SpecError is listed by file:line and exits 1; another MeshAgentError says what went
    wrong on one line and exits `code`. Neither shows a traceback."""
    try:
        yield
    except SpecError as exc:
        _report(exc, 1)
        raise typer.Exit(1) from None
    except MeshAgentError as exc:
        print_error(err, exc)
        raise typer.Exit(code) from None


def _shown(path: Path) -> Path:
    """A path as the user would type it: relative to the working directory when below it."""
    here = Path.cwd()
    return path.relative_to(here) if path.is_absolute() and path.is_relative_to(here) else path


def _registry(config: Config) -> Any:
    """The installed connectors and the MCP tools of the project's mcp.lock.json."""
    from meshagent.mcp.tools import project_registry

    return project_registry(config)


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
    from meshagent.loader import scan_agents

    config = _config(ctx)
    with _exits_on_error():
        registry = _registry(config)
    result = scan_agents(
        _paths(config, paths),
        registry=registry,
        value_tags=config.value_tags,
        min_interval_seconds=config.serve.min_interval_seconds,
    )
    if result.issues:
        _report(SpecError(result.issues), result.files)
        raise typer.Exit(1)
    agents, files = plural(len(result.agents), "agent"), plural(result.files, "file")
    out.print(f"[green]ok[/green]: {agents} in {files} valid")


@app.command()
def schema(
    ctx: typer.Context,
    output: Annotated[
        Path | None, typer.Option("-o", "--output", help="Write to FILE instead of stdout.")
    ] = None,
) -> None:
    """Print the JSON Schema of an agent file (for editors and CI)."""
    from meshagent.schema import schema_text

    with _exits_on_error():
        registry = _registry(_config(ctx))
    text = schema_text(registry, value_tags=_config(ctx).value_tags)
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

    from meshagent.scaffold import write_agent

    config = _config(ctx)
    if owner is None:
        person = current_person(config)
        if person is None:
            owner = typer.prompt("Who owns this agent (email or Slack handle)?").strip()
        else:
            owner = person.name
            err.print(Text(f"owner: {person}; --owner sets another"), highlight=False)
    with _exits_on_error(1):
        written = write_agent(config, name=name, team=team, owner=owner)
    for path in written:
        out.print(Text(f"wrote {_shown(path)}"), highlight=False)
    agent = _shown(written[0])
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


@app.command("list")
def list_agents(
    ctx: typer.Context,
    paths: Annotated[
        list[Path] | None,
        typer.Argument(help="Agent files or directories (default: the agents directory)."),
    ] = None,
) -> None:
    """Table of agents: team, triggers with the next fire time, model, budget, value."""
    from meshagent.loader import load_agents

    config = _config(ctx)
    try:
        agents = load_agents(
            _paths(config, paths),
            value_tags=config.value_tags,
            min_interval_seconds=config.serve.min_interval_seconds,
        )
    except SpecError as exc:
        _report(exc, len({i.file for i in exc.issues}))
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


@app.command()
def sandbox(
    seed: Annotated[
        Path | None, typer.Option("--seed", help="YAML fixture (default: the built-in one).")
    ] = None,
    jira: Annotated[
        str, typer.Option("--jira", help="Jira deployment to imitate: server or cloud.")
    ] = "server",
    slack_port: Annotated[int, typer.Option("--slack-port", help="0 = any free port.")] = 0,
    jira_port: Annotated[int, typer.Option("--jira-port", help="0 = any free port.")] = 0,
) -> None:
    """Run local Slack and Jira APIs, seeded, until Ctrl-C; print the variables to use them."""
    import signal
    import threading

    from meshagent.sandbox import Sandbox

    deployment = {"server": "Server", "cloud": "Cloud"}.get(jira.lower())
    try:
        if deployment is None:
            raise ConfigError(f"--jira must be server or cloud, got {jira!r}")
        box = Sandbox(seed, jira_deployment=deployment, slack_port=slack_port, jira_port=jira_port)
        box.start()
        box.start_wiki()
    except (MeshAgentError, OSError, ValueError) as exc:
        print_error(err, exc)
        raise typer.Exit(2) from None
    stop = threading.Event()
    previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        seeded = box.slack.channels, box.jira.issues
        out.print(
            f"[bold]Sandbox running[/]: Slack at {box.slack_url} ({len(seeded[0])} channels), "
            f"Jira {deployment} at {box.jira_url} ({len(seeded[1])} issues), "
            f"a team wiki over MCP at {box.wiki_url} ({len(box.wiki.pages)} pages)."
        )
        out.print("Point the connectors at it (these tokens only work here):\n")
        for name, value in box.env().items():
            out.print(f"export {name}={value}", highlight=False, soft_wrap=True)
        out.print(
            "\nFor the wiki's tools (wiki.search_pages, wiki.create_page, ...), meshagent.toml "
            'declares it as [mcp.wiki] with url_env = "WIKI_MCP_URL".',
            markup=False,
        )
        out.print("\nCtrl-C stops it.")
        while not stop.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        box.stop()
        posted, created = len(box.slack.posted), len(box.jira.created)
        out.print(f"Sandbox stopped ({posted} messages posted, {created} issues created).")


def find_agent(config: Config, agent: str) -> AgentSpec:
    """An agent by file path, or by name among the agents directory's files."""
    from meshagent.actions import closest
    from meshagent.loader import load_agents, scan_agents
    from meshagent.mcp.tools import registry_near

    path = Path(agent)
    if path.suffix in (".yaml", ".yml") or path.exists():
        return load_agents(
            [path],
            registry=registry_near(path, config),
            value_tags=config.value_tags,
            min_interval_seconds=config.serve.min_interval_seconds,
        )[0]
    result = scan_agents(
        [config.agents_dir],
        registry=_registry(config),
        value_tags=config.value_tags,
        min_interval_seconds=config.serve.min_interval_seconds,
    )
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
        f"no agent named {agent!r} in {_shown(config.agents_dir)}{suggestion} "
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


@app.command()
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

    from meshagent.runtime import Runtime

    config = _config(ctx)
    with _exits_on_error():
        spec = find_agent(config, agent)
        values = _inputs(input_ or [])
        from meshagent.mcp.tools import registry_near

        # The MCP tools of the lock beside the agent's file (the project's, usually).
        runtime = Runtime(config, registry=registry_near(spec.source or config.agents_dir, config))
    person = current_person(config)  # whose run it is, as the ledger's reports see them
    what = "dry run of" if dry_run else "running"
    spinner = err.status(f"{what} {spec.name} ({model or spec.model or config.default_model})…")
    with _exits_on_error(), contextlib.closing(runtime.ledger), spinner:
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
    from meshagent.runview import render_result

    render_result(out, result)
    if result.staged:  # writes waiting for a person, and how to decide them
        from meshagent.approvals_cli import print_staged

        print_staged(out, result.staged, config_file=ctx.parent.params.get("config"))
    raise typer.Exit(0 if result.ok else 1)


@app.command()
def dashboard(
    ctx: typer.Context,
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8765,
    user: Annotated[
        str | None,
        typer.Option(
            help="View the ledger as this person (default: \\[people] me, git's user.email, "
            "$USER).",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Serve the ledger dashboard on this machine (cost against value, by team and agent)."""
    from meshagent.dashboard.cli import serve_dashboard

    config = _config(ctx)
    person = Person(user, "--user") if user else current_person(config)
    with _exits_on_error():
        ensure_can_listen(host, port)
        serve_dashboard(config, host=host, port=port, user=person.name if person else None)


@app.command()
def serve(
    ctx: typer.Context,
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port of /healthz, /metrics, Slack, dashboard.")] = 8000,
    agents: Annotated[
        Path | None, typer.Option("--agents", help="Agents directory (default: agents_dir).")
    ] = None,
    check: Annotated[
        bool, typer.Option("--check", help="Validate the agents and the ledger, then exit.")
    ] = False,
    log_level: Annotated[str, typer.Option(help="debug, info, warning or error.")] = "info",
) -> None:
    """Run the scheduled fleet, the Slack endpoint and the dashboard in one process."""
    import logging

    from meshagent.loader import scan_agents

    config = _config(ctx)
    agents_dir = (agents or config.agents_dir).absolute()
    result = scan_agents(
        [agents_dir],
        value_tags=config.value_tags,
        min_interval_seconds=config.serve.min_interval_seconds,
    )
    if check:
        if result.issues:
            _report(SpecError(result.issues), result.files)
            raise typer.Exit(1)
        with _exits_on_error():
            from meshagent.ledger.store import Ledger

            Ledger.open(config.ledger_url).close()
        scheduled = sum(
            1 for spec in result.agents for t in spec.triggers if not hasattr(t, "slash")
        )
        out.print(
            f"[green]ok[/green]: {plural(len(result.agents), 'agent')}, "
            f"{plural(scheduled, 'scheduled trigger')}, "
            "ledger reachable"
        )
        return
    import uvicorn

    from meshagent.runtime import Runtime
    from meshagent.server import create_app, single_replica_lock
    from meshagent.slack.redact import REDACT, guard_handlers

    logging.basicConfig(
        level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    if logging.getLogger().level > logging.DEBUG:  # Alembic says "Context impl ..." per open
        logging.getLogger("alembic").setLevel(logging.WARNING)
    with _exits_on_error():
        ensure_can_listen(host, port)  # before the scheduler starts or a URL is announced
        lock = single_replica_lock(config.ledger_url)
        runtime = Runtime(config)
        application = create_app(config, runtime=runtime, agents_dir=agents_dir)
    for issue in result.issues:
        print_note(err, "skipped", issue)
    err.print(
        f"serving {plural(len(result.agents), 'agent')} on http://{host}:{port} (Ctrl-C stops)"
    )
    server = uvicorn.Server(
        uvicorn.Config(application, host=host, port=port, log_level=log_level, lifespan="on")
    )
    # Jira tokens and model keys too, under the names meshagent.toml gave them.
    REDACT.add_environment(os.environ, (config.jira.token_env, config.jira.api_token_env))
    guard_handlers()  # no token, key, signing secret or Socket Mode URL in any log line
    try:
        server.run()
    except SystemExit:
        if application.state.startup_error is None:
            raise
        raise typer.Exit(2) from None  # uvicorn logged the reason, in one line
    finally:
        runtime.ledger.close()
        if lock is not None:
            lock.close()


@app.command()
def demo(
    ctx: typer.Context,
    directory: Annotated[
        Path | None,
        typer.Option("--dir", help="Where the demo keeps its ledger and settings."),
    ] = None,
) -> None:
    """The whole idea in one command: sandbox, example agents, a simulated week, the report."""
    import platformdirs
    from rich.text import Text

    from meshagent.demo import SHIPPED_EXAMPLES, run_demo

    config = _config(ctx)
    if not config.agents_dir.is_dir():
        if "agents_dir" in config.model_fields_set:  # set by meshagent.toml or the environment
            print_error(
                err,
                f"agents_dir is {config.agents_dir}, which is not a directory: set agents_dir "
                "in meshagent.toml (or MESHAGENT_AGENTS_DIR) to a directory of agent files, or "
                "unset it to run the examples shipped with MeshAgent",
            )
            raise typer.Exit(2)
        config = config.model_copy(update={"agents_dir": SHIPPED_EXAMPLES})
    target = directory or Path(platformdirs.user_data_dir("meshagent")) / "demo"
    where = (
        "shipped with MeshAgent (no agents/ here)"
        if config.agents_dir == SHIPPED_EXAMPLES
        else f"in {_shown(config.agents_dir)}"
    )
    out.print(
        Text.assemble(
            ("MeshAgent demo", "bold"),
            f": local Slack and Jira (the sandbox), the example agents {where}, the offline "
            "model, and a ledger of its own.",
        )
    )
    with _exits_on_error():
        run_demo(config, target.absolute(), console=out)
