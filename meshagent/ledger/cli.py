"""`meshagent ledger ...`: report, flags, verify, export, migrate. Parses, calls, renders.

The main CLI mounts `app`; it may put `privacy`, `flag_settings` and `viewer` from the project
config into `ctx.obj` before these commands run.
"""

from __future__ import annotations

import csv
import json
import sys
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Annotated, Any

import typer
from rich.console import Console
from sqlalchemy import select

from meshagent.exceptions import LedgerError
from meshagent.ledger import render, reports
from meshagent.ledger.flags import flags as find_flags
from meshagent.ledger.periods import Period
from meshagent.ledger.schema import entries
from meshagent.ledger.store import Ledger

__all__ = ["app"]

app = typer.Typer(help="Read and check the ledger of what tasks cost and delivered.")


class By(StrEnum):
    team = "team"
    agent = "agent"
    owner = "owner"
    tag = "tag"
    model = "model"


class PeriodName(StrEnum):
    day = "day"
    week = "week"
    month = "month"


class ReportFormat(StrEnum):
    table = "table"
    json = "json"
    csv = "csv"


class ExportFormat(StrEnum):
    csv = "csv"
    jsonl = "jsonl"


@app.callback()
def main(
    ctx: typer.Context,
    ledger_url: Annotated[
        str | None,
        typer.Option(
            envvar="MESHAGENT_LEDGER_URL",
            help="Ledger database URL (default: SQLite in the data dir).",
        ),
    ] = None,
    viewer: Annotated[str | None, typer.Option(help="Who is asking (rows per person).")] = None,
) -> None:
    obj = ctx.ensure_object(dict)
    obj["ledger_url"] = ledger_url or obj.get("ledger_url")
    obj["viewer"] = viewer or obj.get("viewer")


def _open(ctx: typer.Context, *, migrate: bool = True) -> Ledger:
    try:
        return Ledger.open(ctx.obj.get("ledger_url"), migrate=migrate)
    except LedgerError as exc:
        _fail(exc)


def _fail(exc: LedgerError) -> Any:
    typer.echo(f"error: {exc}", err=True)
    raise typer.Exit(2)


def _console() -> Console:
    console = Console()
    return console if console.is_terminal else Console(width=200)


def _period(name: PeriodName, start: datetime | None, end: datetime | None) -> Period:
    if start or end:
        today = datetime.now(UTC).date()
        return Period.between(
            (start or end or datetime.now(UTC)).date(), (end.date() if end else today)
        )
    return Period.named(name.value)


FromOption = Annotated[datetime | None, typer.Option("--from", formats=["%Y-%m-%d"])]
ToOption = Annotated[datetime | None, typer.Option("--to", formats=["%Y-%m-%d"])]


@app.command()
def report(
    ctx: typer.Context,
    by: Annotated[By, typer.Option(help="Group by.")] = By.team,
    period: Annotated[PeriodName, typer.Option(help="This day, week or month.")] = PeriodName.week,
    start: FromOption = None,
    end: ToOption = None,
    output: Annotated[ReportFormat, typer.Option("--format")] = ReportFormat.table,
) -> None:
    """Runs, outcomes, tokens, cost and value per group over a period."""
    with _open(ctx) as ledger:
        try:
            result = reports.summary(
                ledger,
                by=by.value,
                period=_period(period, start, end),
                viewer=ctx.obj.get("viewer"),
                privacy=ctx.obj.get("privacy"),
            )
        except LedgerError as exc:
            _fail(exc)
    if output is ReportFormat.json:
        typer.echo(render.report_json(result))
    elif output is ReportFormat.csv:
        typer.echo(render.report_csv(result), nl=False)
    elif not result.rows and not result.withheld:
        last = result.period.end - timedelta(days=1)
        _console().print(f"no runs recorded from {result.period.start} to {last}")
    else:
        _console().print(render.report_table(result))


@app.command()
def forecast(ctx: typer.Context) -> None:
    """Monthly spend per scheduled agent: its fires per month x its median cost per run."""
    from meshagent.loader import scan_agents

    config = ctx.obj.get("config")
    if config is None:
        _fail(LedgerError("forecast needs the project's agents: run it as `meshagent ledger`"))
    today = datetime.now(UTC).date()
    found = scan_agents(config.agents_dir, value_tags=config.value_tags)
    if found.issues:
        bad = len({issue.file for issue in found.issues})
        _console().print(f"[yellow]{bad} agent files left out: run `meshagent validate`[/yellow]")
    fires = {spec.name: spec.fires_per_month(today) for spec in found.agents if spec.enabled}
    with _open(ctx) as ledger:
        rows = reports.forecast(
            ledger,
            fires,
            today=today,
            viewer=ctx.obj.get("viewer"),
            privacy=ctx.obj.get("privacy"),
        )
    if not rows:
        _console().print("no forecast: no scheduled agent with runs you may see in 30 days")
        return
    _console().print(render.forecast_table(rows))


@app.command()
def flags(
    ctx: typer.Context,
    period: Annotated[PeriodName, typer.Option(help="This day, week or month.")] = PeriodName.week,
    start: FromOption = None,
    end: ToOption = None,
) -> None:
    """Runs that look like tokenmaxxing, each rule with its reason and its runs."""
    with _open(ctx) as ledger:
        found = find_flags(
            ledger,
            period=_period(period, start, end),
            settings=ctx.obj.get("flag_settings"),
            viewer=ctx.obj.get("viewer"),
            privacy=ctx.obj.get("privacy"),
        )
    if not found:
        viewer, privacy = ctx.obj.get("viewer"), ctx.obj.get("privacy")
        if privacy is not None and viewer in tuple(privacy.admins):
            _console().print("no tokenmaxxing flags: every rule passed for the period")
        else:
            _console().print(
                f"no flags on runs of {viewer or 'yours (no --viewer given)'}; admins listed "
                "under [privacy] admins in meshagent.toml see every flag (use --viewer)"
            )
        return
    _console().print(render.flags_table(found))


@app.command()
def verify(ctx: typer.Context) -> None:
    """Walk the hash chain; exit 1 naming the first changed, deleted or misplaced entry."""
    with _open(ctx, migrate=False) as ledger:
        result = ledger.verify()
    typer.echo(str(result))
    if not result.ok:
        raise typer.Exit(1)


@app.command()
def export(
    ctx: typer.Context,
    output: Annotated[ExportFormat, typer.Option("--format")] = ExportFormat.jsonl,
) -> None:
    """Every entry, oldest first, as CSV or JSON lines on standard output."""
    with _open(ctx) as ledger, ledger.engine.connect() as connection:
        rows = connection.execution_options(yield_per=2000).execute(
            select(entries).order_by(entries.c.id)
        )
        names = list(rows.keys())
        writer = csv.writer(sys.stdout, lineterminator="\n")
        if output is ExportFormat.csv:
            writer.writerow(names)
        for row in rows:
            values = [render.plain(value) for value in row]
            if output is ExportFormat.csv:
                writer.writerow(["" if value is None else value for value in values])
            else:
                sys.stdout.write(json.dumps(dict(zip(names, values, strict=True))) + "\n")
        rows.close()


@app.command()
def migrate(ctx: typer.Context) -> None:
    """Bring the ledger database to the newest schema."""
    with _open(ctx, migrate=False) as ledger:
        try:
            before, after = ledger.migrate()
        except LedgerError as exc:
            _fail(exc)
    typer.echo(f"ledger schema at {after}" + ("" if before == after else f" (was {before})"))
