"""`meshagent ledger ...`: report, flags, verify, export, migrate. Parses, calls, renders.

The main CLI mounts `app`; it may put `privacy`, `flag_settings` and `viewer` from the project
config into `ctx.obj` before these commands run.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import sys
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.text import Text
from sqlalchemy import select

from meshagent.cli.printer import print_error, print_text
from meshagent.exceptions import LedgerError
from meshagent.ledger import render, reports
from meshagent.ledger.flags import flag_report
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
    viewer: Annotated[
        str | None,
        typer.Option(
            help="View the ledger as this person (default: \\[people] me, git's user.email, "
            "$USER). Place it before the command: ledger --viewer ME report.",
            show_default=False,
        ),
    ] = None,
) -> None:
    obj = ctx.ensure_object(dict)
    obj["ledger_url"] = ledger_url or obj.get("ledger_url")
    if viewer:
        obj["viewer"] = viewer


def _viewer(ctx: typer.Context) -> str | None:
    """The viewer given, else the person at the keyboard, said on standard error."""
    obj = ctx.obj
    if obj.get("viewer") is None and obj.get("config") is not None:
        from meshagent.cli.people import current_person

        person = current_person(obj["config"])
        obj["viewer"] = person.name if person else None
        who = f"{person}; ledger --viewer NAME views as another" if person else "nobody"
        _stderr().print(Text(f"viewing as {who}", style="dim"), highlight=False)
    return obj.get("viewer")


def _open(ctx: typer.Context, *, migrate: bool = True) -> Ledger:
    """The ledger, with the `[people] aliases` of meshagent.toml linked (unless read-only)."""
    try:
        ledger = Ledger.open(ctx.obj.get("ledger_url"), migrate=migrate)
        config = ctx.obj.get("config")
        if migrate and config is not None and config.people.aliases:
            from meshagent.ledger.people import sync_aliases

            try:
                sync_aliases(ledger, config.people.aliases)
            except BaseException:
                ledger.close()
                raise
        return ledger
    except LedgerError as exc:
        _fail(exc)


def _fail(exc: LedgerError) -> Any:
    print_error(_stderr(), exc)
    raise typer.Exit(2)


def _console() -> Console:
    console = Console()
    return console if console.is_terminal else Console(width=200)


def _stderr() -> Console:
    return Console(stderr=True)


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
    """Accepted outcomes, cost per accepted outcome, minutes saved claimed beside evidenced,
    value per dollar (evidenced minutes per dollar, weighted by how much evidence there is: the
    rows are ranked by it) and honest adoption per group over a period; runs, cost and tokens
    below them."""
    viewer = _viewer(ctx)
    chosen = _period(period, start, end)
    with _open(ctx) as ledger:
        try:
            result, adoption = reports.report_with_adoption(
                ledger,
                by=by.value,
                period=chosen,
                viewer=viewer,
                privacy=ctx.obj.get("privacy"),
                value=_value_settings(ctx),
            )
        except LedgerError as exc:
            _fail(exc)
    if output is ReportFormat.json:
        typer.echo(render.report_json(result, adoption))
    elif output is ReportFormat.csv:
        typer.echo(render.report_csv(result), nl=False)
    elif not result.rows and not result.hidden_runs:
        last = result.period.end - timedelta(days=1)
        print_text(_console(), f"no runs recorded from {result.period.start} to {last}")
    elif not result.rows:
        print_text(_console(), render.withheld_text(result, viewer=viewer))
    else:
        console = _console()
        table = render.report_table(result, viewer=viewer, width=console.width, adoption=adoption)
        console.print(table)


def _value_settings(ctx: typer.Context) -> Any:
    """The project's [value] settings, when the main CLI read meshagent.toml."""
    config = ctx.obj.get("config")
    return config.value if config is not None else None


@app.command()
def forecast(ctx: typer.Context) -> None:
    """Monthly spend per scheduled agent: its fires per month x its median cost per run."""
    from meshagent.agentfile.loader import scan_agents

    config = ctx.obj.get("config")
    if config is None:
        _fail(LedgerError("forecast needs the project's agents: run it as `meshagent ledger`"))
    today = datetime.now(UTC).date()
    found = scan_agents(
        config.agents_dir,
        value_tags=config.value_tags,
        min_interval_seconds=config.serve.min_interval_seconds,
    )
    if found.issues:
        bad = len({issue.file for issue in found.issues})
        files = "agent file" if bad == 1 else "agent files"
        print_text(_console(), f"{bad} {files} left out: run `meshagent validate`", style="yellow")
    fires = {spec.name: spec.fires_per_month(today) for spec in found.agents if spec.enabled}
    viewer = _viewer(ctx)
    with _open(ctx) as ledger:
        rows = reports.forecast(
            ledger,
            fires,
            today=today,
            viewer=viewer,
            privacy=ctx.obj.get("privacy"),
        )
    if not rows:
        print_text(
            _console(),
            "no forecast: no scheduled agent with runs you may see in 30 days (an agent's "
            "forecast is shown to its owner and to the admins listed under [privacy] admins)",
        )
        return
    _console().print(render.forecast_table(rows))


@app.command()
def flags(
    ctx: typer.Context,
    period: Annotated[PeriodName, typer.Option(help="This day, week or month.")] = PeriodName.week,
    start: FromOption = None,
    end: ToOption = None,
) -> None:
    """Flags that look like tokenmaxxing, ranked by dollars at stake and strength of evidence:
    each with its agent, owner, people, evidence, innocent explanation and fix."""
    viewer = _viewer(ctx)
    with _open(ctx) as ledger:
        found = flag_report(
            ledger,
            period=_period(period, start, end),
            settings=ctx.obj.get("flag_settings"),
            viewer=viewer,
            privacy=ctx.obj.get("privacy"),
        )
    if not found.flags:
        if found.everyone:
            print_text(_console(), f"no tokenmaxxing flags: every rule passed ({found.scope})")
        else:
            print_text(
                _console(),
                f"{'no ' if found.viewer else ''}{found.scope}; admins listed under [privacy] "
                "admins in meshagent.toml see every flag (ledger --viewer NAME flags)",
            )
        return
    _console().print(render.flags_table(found.flags, scope=found.scope))


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
        try:
            _write_rows(rows, output)
            sys.stdout.flush()
        except BrokenPipeError:
            _reader_left()
        finally:
            rows.close()


def _write_rows(rows: Any, output: ExportFormat) -> None:
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


def _reader_left() -> None:
    """The reader stopped early (`ledger export | head`): that is not an error. Standard output
    goes to /dev/null so that Python's own flush at exit has nowhere to fail."""
    with contextlib.suppress(OSError, ValueError):
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


@app.command()
def migrate(ctx: typer.Context) -> None:
    """Bring the ledger database to the newest schema."""
    with _open(ctx, migrate=False) as ledger:
        try:
            before, after = ledger.migrate()
        except LedgerError as exc:
            _fail(exc)
    typer.echo(f"ledger schema at {after}" + ("" if before == after else f" (was {before})"))
