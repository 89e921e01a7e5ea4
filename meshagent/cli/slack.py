"""`meshagent slack ...`: the Slack app's manifest. Imports stay light: no slack_bolt here."""

from __future__ import annotations

import json
from typing import Annotated

import typer

__all__ = ["app"]

app = typer.Typer(
    help="The Slack app: print its manifest to paste into Slack's app settings.",
    no_args_is_help=True,
)


@app.callback()
def main() -> None:
    """The Slack app of MeshAgent."""


@app.command()
def manifest(
    ctx: typer.Context,
    name: Annotated[str, typer.Option(help="The app's name in Slack.")] = "MeshAgent",
    url: Annotated[
        str | None,
        typer.Option(
            help="HTTP mode: the public https URL of /slack/events. Without it: Socket Mode.",
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of YAML.")] = False,
) -> None:
    """Print the app manifest: commands, scopes, events and interactivity.

    /meshagent, and a command for each agent's slash trigger. Paste it at api.slack.com/apps.
    """
    from meshagent.agentfile.loader import scan_agents
    from meshagent.config import load_config
    from meshagent.exceptions import ConfigError
    from meshagent.slack.manifest import build_manifest, left_out

    config = (ctx.obj or {}).get("config") if isinstance(ctx.obj, dict) else None
    try:
        config = config or load_config()
    except ConfigError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    agents = []
    if config.agents_dir.is_dir():
        found = scan_agents(config.agents_dir, value_tags=config.value_tags)
        agents = found.agents
        if found.issues:
            bad = len({issue.file for issue in found.issues})
            typer.echo(f"warning: {bad} agent files left out (run `meshagent validate`)", err=True)
    else:
        typer.echo(f"warning: no agents directory at {config.agents_dir}", err=True)
    try:
        document = build_manifest(agents, name=name, url=url)
    except ValueError as exc:
        typer.echo(f"error: --url: {exc}", err=True)
        raise typer.Exit(2) from None
    for line in left_out(agents):
        typer.echo(f"warning: {line}", err=True)
    if as_json:
        typer.echo(json.dumps(document, indent=2, ensure_ascii=False))
        return
    import yaml

    typer.echo(yaml.safe_dump(document, sort_keys=False, allow_unicode=True, width=1000), nl=False)
