"""Showing ledger figures to people: money, counts, report rows as tables, JSON and CSV."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import asdict
from datetime import date, datetime
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

from rich.table import Table
from rich.text import Text

from meshagent.figures import money, plural
from meshagent.ledger.flags import Flag
from meshagent.ledger.reports import (
    VALUE_PER_DOLLAR,
    AdoptionWeek,
    ForecastRow,
    Report,
    ReportRow,
)

__all__ = [
    "adoption_text",
    "minutes",
    "per_dollar",
    "flag_people",
    "flags_table",
    "money",
    "plural",
    "plain",
    "report_csv",
    "report_json",
    "report_table",
    "withheld_text",
]


def _cost(row: ReportRow) -> str:
    text = money(row.cost_usd)
    if row.cost_usd is not None and row.runs_cost_unknown:
        text += f" + {row.runs_cost_unknown:,} unknown"
    return text


def _number(value: Any) -> str:
    return "-" if value is None else f"{value:,}"


def withheld_text(report: Report, *, viewer: str | None = None) -> str:
    """What a report left out for this viewer, and why, in one sentence ("" when nothing)."""
    parts = []
    if report.own_runs:
        parts.append(f"your agents' {plural(report.own_runs, 'run')} in full")
    if report.hidden_runs:
        people = plural(report.hidden_people, "person", "people")
        runs = plural(report.hidden_runs, "run")
        if report.by == "owner":
            why = (
                f"{runs} of {people} withheld: a person's row is shown only to them and to the "
                "admins listed under [privacy] admins in meshagent.toml"
            )
        else:
            why = (
                f"{runs} of {people} withheld: fewer than {report.min_group_size} people "
                "([privacy] min_group_size) could be singled out; the admins listed under "
                "[privacy] admins in meshagent.toml see them"
            )
        parts.append(why)
    if report.folded and not report.hidden_runs:
        groups = plural(report.folded, "small group")
        parts.append(f"{groups} counted in 'other' to protect privacy")
    if viewer is None and report.hidden_runs:
        parts.append("no viewer: set [people] me in meshagent.toml or use ledger --viewer NAME")
    text = "; ".join(parts)
    return text[:1].upper() + text[1:] + "." if text else ""


#: Below this many columns a report stacks each group's figures beside its name.
WIDE_REPORT = 120
# The headline first (what people took up, what it cost, minutes claimed beside evidenced,
# and value per dollar, which ranks the rows), then the detail: spend, runs, tokens and votes.
_HEADERS = (
    "accepted",
    "$/accepted",
    "min claimed",
    "min evidenced",
    "value/$",
    "cost",
    "runs",
    "with outcome",
    "tokens",
    "votes",
)


def _figures(report: Report, row: ReportRow) -> list[str]:
    evidence = report.evidence_of(row)
    per_accepted = evidence.cost_per_accepted
    return [
        _number(evidence.accepted_outcomes),
        money(per_accepted) if per_accepted is not None else "-",
        minutes(evidence.minutes_claimed),
        minutes(evidence.minutes_evidenced),
        per_dollar(report.value_of(row)),
        _cost(row),
        _number(row.runs),
        _number(row.runs_with_outcome),
        _number(row.tokens),
        f"+{row.feedback_pos:,}/-{row.feedback_neg:,}",
    ]


def minutes(value: Decimal | None) -> str:
    """Whole minutes (1,234); "-" for none."""
    if value is None:
        return "-"
    return f"{Decimal(value).quantize(Decimal(1), rounding=ROUND_HALF_EVEN):,}"


def per_dollar(value: Decimal | None) -> str:
    """Minutes per dollar: one decimal below 100 (0.4, 12.5), whole above (1,234); "-" for none."""
    if value is None:
        return "-"
    places = Decimal("0.1") if abs(value) < 100 else Decimal(1)
    return f"{Decimal(value).quantize(places, rounding=ROUND_HALF_EVEN):,}"


#: The footnote of every report that shows value per dollar.
VALUE_NOTE = f"value/$: {VALUE_PER_DOLLAR}; rows are ranked by it"


def adoption_text(weeks: list[AdoptionWeek] | tuple[AdoptionWeek, ...]) -> str:
    """Honest adoption per week, in one sentence ("" for no week)."""
    parts = []
    for week in weeks:
        if week.people_honest is None:
            parts.append(f"week of {week.week.start}: withheld (too few people)")
        else:
            parts.append(
                f"week of {week.week.start}: {plural(week.people_honest, 'person', 'people')} "
                f"of {week.people_with_usage or 0:,} using agents"
            )
    if not parts:
        return ""
    return (
        "Honest adoption (people with an accepted outcome that reached someone else): "
        + "; ".join(parts)
        + "."
    )


def report_table(
    report: Report,
    *,
    viewer: str | None = None,
    width: int = WIDE_REPORT,
    adoption: list[AdoptionWeek] | tuple[AdoptionWeek, ...] = (),
) -> Table:
    """The report as a table, the headline figures first; a group's name is never cut or
    broken, at any width."""
    table = Table(title=f"Ledger by {report.by}, {report.period.label}")
    if width >= WIDE_REPORT:
        table.add_column("group", no_wrap=True)
        for header in _HEADERS:
            table.add_column(header, justify="right", no_wrap=True)
        for row in report.ranked():
            table.add_row(Text(row.group), *_figures(report, row))
    else:
        table.add_column("group", no_wrap=True)
        table.add_column("figures")
        for row in report.ranked():
            figures = _figures(report, row)
            pairs = [f"{name} {value}" for name, value in zip(_HEADERS, figures, strict=True)]
            table.add_row(Text(row.group), Text(", ".join(pairs)))
    notes = [
        "accepted: fires and distinct requests whose outcome someone else took up; min "
        "evidenced: minutes credited for them, beside the agent files' claim",
        VALUE_NOTE,
        adoption_text(adoption),
        withheld_text(report, viewer=viewer),
    ]
    table.caption = Text("\n".join(note for note in notes if note))
    table.caption_justify = "left"
    return table


def plain(value: Any) -> Any:
    """A JSON-ready form: exact decimals as strings, times in ISO 8601."""
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, datetime | date):
        return value.isoformat()
    return value


def _row_dict(row: ReportRow, report: Report | None = None) -> dict[str, Any]:
    values: dict[str, Any] = {"group": row.group}
    if report is not None:
        evidence = report.evidence_of(row)
        values.update(
            accepted_outcomes=evidence.accepted_outcomes,
            cost_per_accepted=plain(evidence.cost_per_accepted),
            minutes_claimed=plain(evidence.minutes_claimed),
            minutes_evidenced=plain(evidence.minutes_evidenced),
            value_per_dollar=plain(report.value_of(row)),
        )
    values.update({key: plain(value) for key, value in asdict(row).items()})
    values["minutes_per_dollar"] = plain(row.minutes_per_dollar)
    values["cost_per_outcome"] = plain(row.cost_per_outcome)
    return values


def report_json(report: Report, adoption: list[AdoptionWeek] | None = None) -> str:
    document: dict[str, Any] = {
        "by": report.by,
        "from": str(report.period.start),
        "to": str(report.period.end),
        "folded": report.folded,
        "withheld": report.withheld,
        "withheld_runs": report.hidden_runs,
        "ranked_by": "value_per_dollar",
        "value_per_dollar": VALUE_PER_DOLLAR,
        "rows": [_row_dict(row, report) for row in report.ranked()],
    }
    if adoption is not None:
        document["honest_adoption"] = [
            {
                "week": str(week.week.start),
                "people_honest": week.people_honest,
                "people_with_outcome": week.people_with_outcome,
                "people_with_usage": week.people_with_usage,
            }
            for week in adoption
        ]
    return json.dumps(document, indent=2)


def report_csv(report: Report) -> str:
    buffer = io.StringIO()
    names = list(_row_dict(report.rows[0], report)) if report.rows else ["group"]
    writer = csv.DictWriter(buffer, fieldnames=names, lineterminator="\n")
    writer.writeheader()
    writer.writerows(_row_dict(row, report) for row in report.ranked())
    return buffer.getvalue()


def flags_table(found: list[Flag] | tuple[Flag, ...], *, scope: str = "") -> Table:
    """Each flag with its agent, owner, the people who triggered it (the looper of a slash
    loop), the dollars at stake, and its evidence, innocent explanation and fix: in the order
    given (`flag_report` ranks by dollars and strength of evidence)."""
    title = "Tokenmaxxing flags" + (f": {scope}" if scope else "")
    table = Table(title=title, show_lines=True)
    table.add_column("at stake", justify="right", no_wrap=True)
    table.add_column("rule", no_wrap=True)
    table.add_column("agent, owner, people")
    table.add_column("evidence, innocent explanation, fix")  # wraps between words
    for flag in found:
        table.add_row(money(flag.usd), flag.rule, _who(flag), _flag_text(flag))
    return table


def flag_people(flag: Flag) -> str:
    """Whom a flag is about: the people who triggered its runs, the accountable one first."""
    people = list(flag.people)
    if flag.accountable and flag.accountable != flag.owner:
        people = [flag.accountable, *(p for p in people if p != flag.accountable)]
    return ", ".join(people) or "-"


def _who(flag: Flag) -> Text:
    text = Text(flag.subject, style="bold")
    text.append(f"\nowner {flag.owner or '-'}")
    text.append(f"\nby {flag_people(flag)}")
    if flag.accountable and flag.accountable != flag.owner:
        role = "looper" if flag.rule == "slash_loop" else "about"
        text.append(f"\n{role} {flag.accountable}")
    return text


def _flag_text(flag: Flag) -> Text:
    text = Text(flag.reason)
    for line in flag.evidence:
        text.append(f"\n- {line}")
    if flag.innocent:
        text.append(f"\ninnocent: {flag.innocent}", style="dim")
    if flag.fix:
        text.append(f"\nfix: {flag.fix}", style="green")
    kind = "" if flag.kind == "waste" else f" ({flag.kind})"
    text.append(f"\n{plural(len(flag.run_ids), 'run')}, strength {flag.strength:.2f}{kind}")
    return text


def forecast_table(rows: list[ForecastRow]) -> Table:
    """Per agent: scheduled runs a month, median cost per run, and the monthly spend it implies."""
    table = Table(title="Spend forecast (fires per month x median cost per run)")
    for column in ("agent", "fires/month", "runs seen", "median/run", "per month"):
        table.add_column(column, justify="left" if column == "agent" else "right", no_wrap=True)
    for row in rows:
        table.add_row(
            Text(row.agent),
            _number(round(row.fires_per_month)),  # whole fires: a month has no half run
            _number(row.runs_seen),
            money(row.median_cost_usd),
            money(row.monthly_usd),
        )
    return table
