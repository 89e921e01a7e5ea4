"""Reports: what was spent and what came of it, per team, agent, owner, tag or model.

They read the daily rollups (a few thousand rows for any period), apply the privacy rules for
the viewer, and return plain dataclasses for the CLI, the Slack app and the dashboard.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, func, select

from meshagent.config import PrivacySettings
from meshagent.exceptions import LedgerError
from meshagent.ledger.periods import Period
from meshagent.ledger.privacy import Cell, PrivacyLike, fold, group_cells, is_admin
from meshagent.ledger.schema import DAILY_SUMS, daily, entries

if TYPE_CHECKING:
    from meshagent.ledger.store import Ledger

__all__ = [
    "GROUPINGS",
    "AdoptionWeek",
    "ForecastRow",
    "Report",
    "ReportRow",
    "adoption",
    "forecast",
    "summary",
]

GROUPINGS = {
    "team": "team",
    "agent": "agent",
    "owner": "owner",
    "tag": "value_tag",
    "model": "model",
}
NONE_LABEL = "(none)"


@dataclass(frozen=True)
class ReportRow:
    """One group's runs, tokens, money and value over the period."""

    group: str
    people: int
    runs: int
    runs_with_outcome: int
    input_tokens: int
    cache_read_tokens: int
    cache_write_tokens: int
    output_tokens: int
    reasoning_tokens: int
    cost_usd: Decimal | None  # known cost; None when no run had a known price
    runs_cost_unknown: int
    minutes_saved: Decimal
    feedback_pos: int
    feedback_neg: int

    @property
    def tokens(self) -> int:
        """Input (cached included) and output (reasoning included): each token once."""
        return self.input_tokens + self.output_tokens

    @property
    def minutes_per_dollar(self) -> Decimal | None:
        if not self.cost_usd:
            return None
        return (self.minutes_saved / self.cost_usd).quantize(Decimal("0.01"))

    @property
    def cost_per_outcome(self) -> Decimal | None:
        if self.cost_usd is None or not self.runs_with_outcome:
            return None
        return (self.cost_usd / self.runs_with_outcome).quantize(Decimal("0.0001"))


@dataclass(frozen=True)
class Report:
    by: str
    period: Period
    rows: tuple[ReportRow, ...]
    folded: int  # groups counted in "other" (or hidden) to protect small groups
    withheld: bool  # too few people in the whole period to show anything
    hidden_runs: int = 0  # runs in no row: withheld, or other owners' rows
    hidden_people: int = 0  # the distinct people behind those runs
    own_runs: int = 0  # the viewer's own runs (their agents', or triggered by them), in full
    min_group_size: int = 5


@dataclass(frozen=True)
class AdoptionWeek:
    """People with a run that produced an outcome, beside people who spent any tokens."""

    week: Period
    people_with_outcome: int | None  # None when withheld: too few people to show
    people_with_usage: int | None


@dataclass(frozen=True)
class ForecastRow:
    agent: str
    fires_per_month: float
    runs_seen: int
    median_cost_usd: Decimal | None
    monthly_usd: Decimal | None  # None while the agent has no run with a known cost


def summary(
    ledger: Ledger,
    *,
    by: str = "team",
    period: Period,
    viewer: str | None = None,
    privacy: PrivacyLike | None = None,
    team: str | None = None,
    tag: str | None = None,
) -> Report:
    """Totals per group over `period` (of one team and value tag when given), as `viewer` may
    see them.

    The runs of a viewer's own agents are theirs to see in full, as on the dashboard; everyone
    else's are folded by the privacy rules, without the viewer's, so that "other" never hides
    fewer than `min_group_size` other people behind what the viewer can subtract.
    """
    if by not in GROUPINGS:
        raise LedgerError(f"cannot group a report by {by!r}: use one of {', '.join(GROUPINGS)}")
    privacy = privacy or PrivacySettings()
    column = daily.c[GROUPINGS[by]]
    sums = [func.sum(daily.c[name]).label(name) for name in DAILY_SUMS]
    where = [daily.c.day >= period.start, daily.c.day < period.end]
    if team is not None:
        where.append(daily.c.team == ("" if team == NONE_LABEL else team))
    if tag is not None:
        where.append(daily.c.value_tag == ("" if tag == NONE_LABEL else tag))
    query = (
        select(daily.c.team, column, daily.c.person, daily.c.owner, *sums)
        .where(*where)
        .group_by(daily.c.team, column, daily.c.person, daily.c.owner)
    )
    found = ledger.read(lambda c: c.execute(query).all(), what="read a report")
    own: list[Cell] = []
    cells: list[Cell] = []
    for team, name, person, owner, *values in found:
        cell = (team, name or NONE_LABEL, person, dict(zip(DAILY_SUMS, values, strict=True)))
        mine = viewer is not None and owner == viewer and not is_admin(viewer, privacy)
        (own if mine else cells).append(cell)
    folded = fold(cells, by=by, viewer=viewer, privacy=privacy)
    groups = folded.groups
    shown = sum(group.sums.get("runs") or 0 for group in groups.values())
    hidden = (sum(cell[3].get("runs") or 0 for cell in cells) - shown) if cells else 0
    shown_people = set().union(*(group.people for group in groups.values()))
    hidden_people = {cell[2] for cell in cells} - shown_people if hidden else set()
    for name, group in group_cells(own).items():
        if name in groups:
            groups[name].absorb(group)  # shown to the viewer already: the sum tells no more
        else:
            groups[name] = group
    rows = [_row(name, group.sums, len(group.people)) for name, group in groups.items()]
    rows.sort(key=lambda row: (row.group == "other", -(row.cost_usd or 0), row.group))
    own_runs = sum(cell[3].get("runs") or 0 for cell in own)
    return Report(
        by,
        period,
        tuple(rows),
        folded.folded,
        folded.withheld,
        hidden_runs=hidden,
        hidden_people=len(hidden_people),
        own_runs=own_runs,
        min_group_size=privacy.min_group_size,
    )


def _row(name: str, sums: Mapping[str, Any], people: int) -> ReportRow:
    values = {key: sums.get(key) or 0 for key in DAILY_SUMS}
    cost = Decimal(values["cost_usd"])
    all_unknown = values["runs"] and values["runs_cost_unknown"] == values["runs"]
    values["cost_usd"] = None if all_unknown else cost
    values["minutes_saved"] = Decimal(values["minutes_saved"])
    return ReportRow(group=name, people=people, **values)


def adoption(
    ledger: Ledger, *, period: Period, viewer: str | None = None, privacy: PrivacyLike | None = None
) -> list[AdoptionWeek]:
    """Per week: people whose runs produced an outcome, and people with any token use."""
    privacy = privacy or PrivacySettings()
    tokens = sum((daily.c[name] for name in ("input_tokens", "output_tokens")), 0)
    query = select(daily.c.day, daily.c.person, daily.c.runs_with_outcome, tokens).where(
        daily.c.day >= period.start, daily.c.day < period.end
    )
    found = ledger.read(lambda c: c.execute(query).all(), what="read adoption")
    with_outcome: dict[date, set[str]] = defaultdict(set)
    with_usage: dict[date, set[str]] = defaultdict(set)
    for day, person, outcomes, spent in found:
        monday = Period.week(day).start
        if outcomes:
            with_outcome[monday].add(person)
        if spent:
            with_usage[monday].add(person)
    weeks = []
    for week in period.weeks():
        users = len(with_usage[week.start])
        hidden = users < privacy.min_group_size and not is_admin(viewer, privacy)
        weeks.append(
            AdoptionWeek(
                week, None if hidden else len(with_outcome[week.start]), None if hidden else users
            )
        )
    return weeks


def forecast(
    ledger: Ledger,
    fires_per_month: Mapping[str, float],
    *,
    today: date,
    window_days: int = 30,
    viewer: str | None = None,
    privacy: PrivacyLike | None = None,
) -> list[ForecastRow]:
    """Per agent: its fires per month x its median cost per run over the last `window_days`."""
    privacy = privacy or PrivacySettings()
    since = Period.day(today - timedelta(days=window_days)).start_time
    until = Period.day(today).end_time

    def read(connection: Connection) -> dict[str, tuple[list[Decimal], set[str]]]:
        query = select(entries.c.agent, entries.c.cost_usd, entries.c.owner).where(
            entries.c.agent.in_(list(fires_per_month)),
            entries.c.started_at >= since,
            entries.c.started_at < until,
            entries.c.status != "running",
            entries.c.cost_usd.is_not(None),
        )
        costs: dict[str, tuple[list[Decimal], set[str]]] = defaultdict(lambda: ([], set()))
        for agent, cost, owner in connection.execute(query):
            costs[agent][0].append(cost)
            costs[agent][1].add(owner or "")
        return costs

    costs = ledger.read(read, what="read costs for the forecast")
    rows = []
    for agent, fires in sorted(fires_per_month.items()):
        seen, owners = costs.get(agent, ([], set()))
        if not is_admin(viewer, privacy) and (not owners or owners != {viewer}):
            continue  # an agent's spend is its owner's: shown to them and to admins
        median = statistics.median(seen) if seen else None
        monthly = (median * Decimal(str(fires))).quantize(Decimal("0.0001")) if seen else None
        rows.append(ForecastRow(agent, fires, len(seen), median, monthly))
    return rows
