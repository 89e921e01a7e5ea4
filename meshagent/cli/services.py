"""The `meshagent` commands that keep running: sandbox, dashboard and serve; and the demo."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from meshagent.cli.common import err, exits_on_error, out, report_issues, settings, shown
from meshagent.cli.invocation import ensure_can_listen
from meshagent.cli.people import Person, current_person
from meshagent.cli.printer import print_error, print_note
from meshagent.exceptions import ConfigError, MeshAgentError, SpecError
from meshagent.figures import plural

__all__ = ["dashboard", "demo", "sandbox", "serve"]


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
    from meshagent.cli.dashboard import serve_dashboard

    config = settings(ctx)
    person = Person(user, "--user") if user else current_person(config)
    with exits_on_error():
        ensure_can_listen(host, port)
        serve_dashboard(config, host=host, port=port, user=person.name if person else None)


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

    from meshagent.agentfile.loader import scan_agents

    config = settings(ctx)
    agents_dir = (agents or config.agents_dir).absolute()
    result = scan_agents(
        [agents_dir],
        value_tags=config.value_tags,
        min_interval_seconds=config.serve.min_interval_seconds,
    )
    if check:
        if result.issues:
            report_issues(SpecError(result.issues), result.files)
            raise typer.Exit(1)
        with exits_on_error():
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

    from meshagent.fleet.server import create_app, single_replica_lock
    from meshagent.runtime.runner import Runtime
    from meshagent.slack.redact import REDACT, guard_handlers

    logging.basicConfig(
        level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    if logging.getLogger().level > logging.DEBUG:  # Alembic says "Context impl ..." per open
        logging.getLogger("alembic").setLevel(logging.WARNING)
    with exits_on_error():
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

    from meshagent.cli.demo import SHIPPED_EXAMPLES, run_demo

    config = settings(ctx)
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
        else f"in {shown(config.agents_dir)}"
    )
    out.print(
        Text.assemble(
            ("MeshAgent demo", "bold"),
            f": local Slack and Jira (the sandbox), the example agents {where}, the offline "
            "model, and a ledger of its own.",
        )
    )
    with exits_on_error():
        run_demo(config, target.absolute(), console=out)
