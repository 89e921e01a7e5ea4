"""Reports: what was spent and what came of it, per team, agent, owner, tag or model.

They read the daily rollups (a few thousand rows for any period), apply the privacy rules for
the viewer, and return plain dataclasses for the CLI, the Slack app and the dashboard.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, func, select

from meshagent.config import PrivacySettings, ValueSettings
from meshagent.exceptions import LedgerError
from meshagent.ledger.people import People, directory
from meshagent.ledger.periods import Period
from meshagent.ledger.privacy import OTHER, Cell, PrivacyLike, fold, group_cells, is_admin
from meshagent.ledger.schema import DAILY_SUMS, daily, entries
from meshagent.ledger.value import Credit, Evidenced, ValueRow, credits, headline, honest_people

if TYPE_CHECKING:
    from meshagent.ledger.store import Ledger

__all__ = [
    "GROUPINGS",
    "AdoptionWeek",
    "Evidenced",
    "ForecastRow",
    "Report",
    "ReportRow",
    "adoption",
    "forecast",
    "report_with_adoption",
    "ranked",
    "ranking",
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
#: What the ranking figure means, for a tooltip or a footnote beside it.
VALUE_PER_DOLLAR = "evidenced minutes per dollar, weighted by how much evidence there is"


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
    minutes_saved: Decimal  # claimed: the agent file's minutes x runs with an outcome
    feedback_pos: int
    feedback_neg: int

    @property
    def minutes_claimed(self) -> Decimal:
        """The agent files' claim, as `minutes_saved` has always been."""
        return self.minutes_saved

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
    # Each row's evidenced figures, by its group (the headline: accepted outcomes, cost per
    # accepted outcome, minutes evidenced beside claimed), folded as the rows are.
    evidence: Mapping[str, Evidenced] = field(default_factory=dict)
    # Each row's value per dollar (the ranking figure: `value.headline`'s `value_per_dollar`),
    # None where the row does not hold every run of its group (see `ranking`).
    values: Mapping[str, Decimal | None] = field(default_factory=dict)

    def evidence_of(self, row: ReportRow) -> Evidenced:
        return self.evidence.get(
            row.group, Evidenced(0, Decimal(0), row.minutes_saved, row.cost_usd)
        )

    def value_of(self, row: ReportRow) -> Decimal | None:
        """The row's value per dollar: evidenced minutes per dollar, weighted by how much
        evidence there is; None when unknown or not the whole group's."""
        return self.values.get(row.group)

    def ranked(self) -> list[ReportRow]:
        """The rows ranked by value per dollar, highest first (see `ranked`)."""
        return ranked(self.rows, self.value_of)


@dataclass(frozen=True)
class AdoptionWeek:
    """People with a run that produced an outcome, beside people who spent any tokens."""

    week: Period
    people_with_outcome: int | None  # None when withheld: too few people to show
    people_with_usage: int | None
    # Honest adoption: people with an accepted outcome that reached someone else.
    people_honest: int | None = None


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
    people: People | None = None,
    value: ValueSettings | None = None,
    credited: Sequence[Credit] | None = None,
    value_rows: Sequence[ValueRow] | None = None,
) -> Report:
    """Totals per group over `period` (of one team and value tag when given), as `viewer` may
    see them.

    The runs of a viewer's own agents are theirs to see in full, as on the dashboard; everyone
    else's are folded by the privacy rules, without the viewer's, so that "other" never hides
    fewer than `min_group_size` other people behind what the viewer can subtract.

    People are counted as people (a Slack id, an email and a login of one person are one), and
    each row has the evidenced figures beside the claimed ones (`meshagent.ledger.value`) and
    its value per dollar, the figure that ranks groups (`Report.value_of`, `Report.ranked`).
    `credited` (the period's `value.credits`) and `value_rows` (`value.headline` by the same
    grouping) are read from the ledger unless given.
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
    people = people if people is not None else directory(ledger)
    if credited is None:
        credited = credits(ledger, period, value=value, people=people)
    evidenced = _evidenced(credited, by, team, tag)
    own: list[Cell] = []
    cells: list[Cell] = []
    for team, name, person, owner, *values in found:
        sums = dict(zip(DAILY_SUMS, values, strict=True))
        person = people.key(person)
        sums.update(evidenced.pop((team, name or "", person, owner), _NO_EVIDENCE))
        cell = (team, name or NONE_LABEL, person, sums)
        mine = viewer is not None and people.same(owner, viewer) and not is_admin(viewer, privacy)
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
    evidence = {
        row.group: Evidenced(
            int(groups[row.group].sums.get("accepted_outcomes") or 0),
            Decimal(groups[row.group].sums.get("minutes_evidenced") or 0),
            row.minutes_saved,
            row.cost_usd,
        )
        for row in rows
    }
    own_runs = sum(cell[3].get("runs") or 0 for cell in own)
    if value_rows is None:
        value_rows = headline(ledger, period=period, by=by, value=value, credited=credited)
    figure = ranking(value_rows)
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
        evidence=evidence,
        values={row.group: figure(row) for row in rows},
    )


def ranking(values: Iterable[ValueRow]) -> Callable[[ReportRow], Decimal | None]:
    """A row's value per dollar, from `value.headline`'s rows of the same grouping: evidenced
    minutes per dollar, weighted by how much evidence there is.

    A row gets its group's figure only when it holds every finished run of the group in the
    period; otherwise (the "other" row, a row narrowed by a team or tag filter, a viewer's own
    runs of an agent others ran too) None, for the figure would speak of runs the row does not
    show.
    """
    by_group = {(row.group or NONE_LABEL): row for row in values}

    def figure(row: ReportRow) -> Decimal | None:
        found = by_group.get(row.group)
        if found is None or row.group == OTHER or found.runs != row.runs:
            return None
        return found.value_per_dollar

    return figure


def ranked(
    rows: Iterable[ReportRow], figure: Callable[[ReportRow], Decimal | None]
) -> list[ReportRow]:
    """`rows` by value per dollar, highest first; rows without one after them (by cost), and
    "other" last."""

    def key(row: ReportRow) -> tuple[Any, ...]:
        value = figure(row)
        return (row.group == OTHER, value is None, -(value or 0), -(row.cost_usd or 0), row.group)

    return sorted(rows, key=key)


_NO_EVIDENCE = {"accepted_outcomes": 0, "minutes_evidenced": Decimal(0)}


def _evidenced(
    credited: Iterable[Credit], by: str, team: str | None, tag: str | None
) -> dict[tuple[str, str, str, str], dict[str, Any]]:
    """Credited units by the report's cell (team, group, person, owner)."""
    found: dict[tuple[str, str, str, str], dict[str, Any]] = defaultdict(
        lambda: {"accepted_outcomes": 0, "minutes_evidenced": Decimal(0)}
    )
    for credit in credited:
        if team is not None and credit.team != ("" if team == NONE_LABEL else team):
            continue
        if tag is not None and credit.value_tag != ("" if tag == NONE_LABEL else tag):
            continue
        sums = found[credit.team, credit.group(by), credit.person, credit.owner]
        sums["accepted_outcomes"] += 1
        sums["minutes_evidenced"] += credit.minutes
    return found


def _row(name: str, sums: Mapping[str, Any], people: int) -> ReportRow:
    values = {key: sums.get(key) or 0 for key in DAILY_SUMS}
    cost = Decimal(values["cost_usd"])
    all_unknown = values["runs"] and values["runs_cost_unknown"] == values["runs"]
    values["cost_usd"] = None if all_unknown else cost
    values["minutes_saved"] = Decimal(values["minutes_saved"])
    return ReportRow(group=name, people=people, **values)


def adoption(
    ledger: Ledger,
    *,
    period: Period,
    viewer: str | None = None,
    privacy: PrivacyLike | None = None,
    people: People | None = None,
    value: ValueSettings | None = None,
    credited: Sequence[Credit] | None = None,
) -> list[AdoptionWeek]:
    """Per week: people whose runs produced an outcome, people with any token use, and honest
    adoption: people with an accepted outcome that reached someone else (identities folded).
    `credited`, the period's `value.credits`, is read from the ledger unless given (a report
    beside `summary` reads them once for both)."""
    privacy = privacy or PrivacySettings()
    people = people if people is not None else directory(ledger)
    if credited is None:
        credited = credits(ledger, period, value=value, people=people)
    honest = honest_people(credited)
    tokens = sum((daily.c[name] for name in ("input_tokens", "output_tokens")), 0)
    query = select(daily.c.day, daily.c.person, daily.c.runs_with_outcome, tokens).where(
        daily.c.day >= period.start, daily.c.day < period.end
    )
    found = ledger.read(lambda c: c.execute(query).all(), what="read adoption")
    with_outcome: dict[date, set[str]] = defaultdict(set)
    with_usage: dict[date, set[str]] = defaultdict(set)
    for day, person, outcomes, spent in found:
        person = people.key(person)
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
                week,
                None if hidden else len(with_outcome[week.start]),
                None if hidden else users,
                None if hidden else len(honest.get(week.start, ())),
            )
        )
    return weeks


def report_with_adoption(
    ledger: Ledger,
    *,
    by: str = "team",
    period: Period,
    viewer: str | None = None,
    privacy: PrivacyLike | None = None,
    value: ValueSettings | None = None,
) -> tuple[Report, list[AdoptionWeek]]:
    """`summary` and `adoption` of one period, reading the people and the credited units once
    for both (the credits are the slow part of each over a big ledger)."""
    people = directory(ledger)
    shared: dict[str, Any] = {"viewer": viewer, "privacy": privacy, "value": value}
    shared.update(people=people, credited=credits(ledger, period, value=value, people=people))
    return summary(ledger, by=by, period=period, **shared), adoption(
        ledger, period=period, **shared
    )


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
