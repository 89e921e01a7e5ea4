"""What each page shows, as plain data: the HTML pages and the JSON API render the same dicts.

Every function takes the viewer and applies the ledger's privacy rules before returning: folded
totals for everyone, rows per person only for that person or an admin, runs only for their
owner, whoever triggered them, and admins.
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields, replace
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from meshagent.config import Config, PrivacySettings
from meshagent.dashboard import queries
from meshagent.dashboard.cache import Answer, Memo, ledger_version
from meshagent.dashboard.filters import Filters
from meshagent.dashboard.worker import Worker
from meshagent.exceptions import LedgerError
from meshagent.ledger.flags import Flag, FlagReport, flag_report, runs_of
from meshagent.ledger.people import directory
from meshagent.ledger.periods import Period
from meshagent.ledger.privacy import OTHER
from meshagent.ledger.records import PROMPT_SHARE, prompt_share_of
from meshagent.ledger.reports import NONE_LABEL, ForecastRow, ReportRow, forecast
from meshagent.ledger.schema import TOKEN_KINDS
from meshagent.ledger.store import Ledger
from meshagent.ledger.value import Evidenced, credits

__all__ = ["FLAGS_PER_PAGE", "SORTS", "Pages", "Viewer", "jsonable", "row_dict"]

log = logging.getLogger(__name__)

# A page waits this long in all for slow results (flags, forecast, trend), then shows the
# previous ones (or says they are being computed); the API waits for them.
PAGE_WAIT = 0.15
API_WAIT = 120.0
TREND_WEEKS = 12
RUNS_PER_PAGE = 50
RUNS_PER_FLAG = 5
FLAGS_PER_PAGE = 50
# Computes the flags as an admin would see them; no header or user can carry a NUL character.
_EVERYONE = "\x00dashboard"
SORTS = {
    "agent": lambda r: r["group"],
    "accepted": lambda r: r["accepted_outcomes"],
    "evidenced": lambda r: r["minutes_evidenced"],
    "runs": lambda r: r["runs"],
    "cost": lambda r: r["cost_usd"],
    "outcomes": lambda r: r["runs_with_outcome"],
    "feedback": lambda r: r["feedback_pos"] - r["feedback_neg"],
    "value": lambda r: r["minutes_per_dollar"],
    "flags": lambda r: r["flags"],
    "forecast": lambda r: r["forecast_usd"],
}


@dataclass(frozen=True)
class Viewer:
    """Who is looking: a person (from the proxy's header or local mode), or nobody known."""

    name: str | None
    admin: bool
    mode: str  # local, header, anonymous

    def as_json(self) -> dict[str, Any]:
        return {"name": self.name, "admin": self.admin, "mode": self.mode}


def row_dict(row: ReportRow) -> dict[str, Any]:
    """A report row with its derived figures (tokens, minutes per dollar, cost per outcome)."""
    values = {f.name: getattr(row, f.name) for f in fields(row)}
    values.update(
        tokens=row.tokens,
        minutes_per_dollar=row.minutes_per_dollar,
        cost_per_outcome=row.cost_per_outcome,
    )
    return values


def jsonable(value: Any) -> Any:
    """JSON-ready: exact decimals as strings, dates and times in ISO 8601."""
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Mapping):
        return {str(key): jsonable(item) for key, item in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [jsonable(item) for item in value]
    return value


def _status(answer: Answer[Any]) -> dict[str, Any]:
    state = "fresh" if answer.fresh else ("stale" if answer.value is not None else "pending")
    return {"state": state, "as_of": answer.as_of}


class Budget:
    """One request's time for slow results, and the ledger version it reads them at."""

    def __init__(self, pages: Pages, seconds: float) -> None:
        self.deadline = time.monotonic() + seconds
        self._pages = pages
        self._version: tuple[Any, ...] | None = None

    @property
    def left(self) -> float:
        return max(0.0, self.deadline - time.monotonic())

    @property
    def version(self) -> tuple[Any, ...]:
        if self._version is None:
            self._version = self._pages.version()
        return self._version

    def no_wait(self) -> Budget:
        """The same ledger version and no time: starts a computation and moves on."""
        other = Budget(self._pages, 0.0)
        other._version = self.version
        return other


class Pages:
    """The data of every page over one ledger, with the slow parts kept in a Memo."""

    def __init__(
        self,
        config: Config,
        ledger: Ledger,
        *,
        today: Callable[[], date],
        fires_per_month: Callable[[date], Mapping[str, float]] | None = None,
    ) -> None:
        self.config = config
        self.ledger = ledger
        self.privacy = config.privacy
        self.today = today
        self.memo = Memo()
        # Flags take seconds over a big ledger; forecasts a moment: each has its own process,
        # so that a page waiting for a forecast does not wait behind the flags.
        self.flag_worker = Worker(ledger)
        self.forecast_worker = Worker(ledger)
        self._fires = fires_per_month or self._scan_fires
        self._fires_cache: tuple[float, date, Mapping[str, float]] | None = None

    def start(self) -> None:
        """Start the worker processes and this week's flags, for the first pages."""
        self.flag_worker.start()
        self.forecast_worker.start()
        try:
            self.all_flags(Period.week(self.today()), Budget(self, 0.0))
        except LedgerError as exc:  # a page will say so; the app itself can start
            log.warning("the dashboard cannot read the ledger yet: %s", exc)

    def ready(self) -> bool:
        """Whether the worker processes have booted: until then their start-up (a second or
        two of imports each) takes the cores that pages and Slack acknowledgements need."""
        return self.flag_worker.ready() and self.forecast_worker.ready()

    def close(self) -> None:
        """Stop the threads and the worker processes that compute the slow results."""
        self.memo.close()
        self.flag_worker.close()
        self.forecast_worker.close()

    # -- shared pieces ----------------------------------------------------------------------

    def version(self) -> tuple[Any, ...]:
        return self.ledger.read(ledger_version, what="read the ledger version")

    def fires(self) -> Mapping[str, float]:
        """Scheduled runs per month of each enabled agent (read again after a minute)."""
        today = self.today()
        cached = self._fires_cache
        if cached is None or cached[1] != today or time.monotonic() - cached[0] > 60:
            cached = (time.monotonic(), today, dict(self._fires(today)))
            self._fires_cache = cached
        return cached[2]

    def _scan_fires(self, today: date) -> Mapping[str, float]:
        from meshagent.loader import scan_agents

        if not self.config.agents_dir.is_dir():
            return {}
        found = scan_agents(
            self.config.agents_dir,
            value_tags=self.config.value_tags,
            min_interval_seconds=self.config.serve.min_interval_seconds,
        )
        return {spec.name: spec.fires_per_month(today) for spec in found.agents if spec.enabled}

    def all_flags(self, period: Period, budget: Budget) -> Answer[list[Flag]]:
        """Every flag raised in `period`, as an admin sees them (computed once per version)."""
        everyone = PrivacySettings(min_group_size=self.privacy.min_group_size, admins=(_EVERYONE,))

        def compute() -> list[Flag]:
            report: FlagReport = self.flag_worker.run(
                flag_report,
                period=period,
                settings=self.config.flags,
                viewer=_EVERYONE,
                privacy=everyone,
            )
            return list(report.flags)

        key = ("flags", period.start, period.end)
        return self.memo.get(key, budget.version, compute, wait=budget.left)

    def flags_for(self, viewer: Viewer, period: Period, budget: Budget) -> Answer[list[Flag]]:
        """The flags `viewer` may see, as `flag_report(viewer=...)` gives them: all for an admin,
        else those on runs they own or triggered (any of their identities), with only those
        runs; every other field (owner, people, dollars, evidence, fix) kept."""
        answer = self.all_flags(period, budget)
        if viewer.admin or answer.value is None:
            return answer
        if viewer.name is None:
            return Answer([], answer.as_of, answer.fresh)
        ids = sorted({run_id for flag in answer.value for run_id in flag.run_ids})
        mine = runs_of(self.ledger, viewer.name, ids, directory(self.ledger))
        kept = []
        for flag in answer.value:
            runs = tuple(r for r in flag.run_ids if r in mine)
            if runs:
                kept.append(flag if len(runs) == len(flag.run_ids) else replace(flag, run_ids=runs))
        return Answer(kept, answer.as_of, answer.fresh)

    def flag_scope(self, viewer: Viewer) -> str:
        """Whose flags a page shows, in `FlagReport.scope`'s words."""
        if viewer.admin:
            return f"every flag (admin: {viewer.name or 'local'})"
        if viewer.name is None:
            return "no flags: nobody is viewing (give a viewer)"
        return f"flags on runs owned or triggered by {directory(self.ledger).key(viewer.name)}"

    def forecasts(
        self, viewer: Viewer, agents: frozenset[str] | None, budget: Budget
    ) -> Answer[dict[str, ForecastRow]]:
        """Monthly spend forecasts of the agents `viewer` may see (owners, admins)."""
        if viewer.name is None:
            return Answer({}, None, True)
        fires = self.fires()
        if not viewer.admin:
            fires = {a: n for a, n in fires.items() if agents is not None and a in agents}
        if not fires:
            return Answer({}, None, True)
        today = self.today()

        def compute() -> dict[str, ForecastRow]:
            rows = self.forecast_worker.run(
                forecast, dict(fires), today=today, viewer=viewer.name, privacy=self.privacy
            )
            return {row.agent: row for row in rows}

        key = ("forecast", today, None if viewer.admin else viewer.name, tuple(sorted(fires)))
        return self.memo.get(key, budget.version, compute, wait=budget.left)

    def trend(
        self, edges: list[date], team: str | None, tag: str | None, budget: Budget
    ) -> Answer[list[queries.Bucket]]:
        """Sums and people per week (one scan of the rollup, kept until the ledger changes)."""

        def compute() -> list[queries.Bucket]:
            return queries.buckets(self.ledger, edges, team=team, tag=tag)

        key = ("trend", tuple(edges), team, tag)
        return self.memo.get(key, budget.version, compute, wait=budget.left)

    def _team_choices(self, viewer: Viewer, filters: Filters) -> list[str]:
        """Teams for the filter: every team for an admin, else teams big enough to be named.

        A team picked here is still folded like any other selection: naming it shows nothing
        that its figures in the overview would not.
        """
        least = 1 if viewer.admin else self.privacy.min_group_size
        return queries.choices(self.ledger, filters.period, min_people=least)

    def _withheld(self, people: int, privileged: bool) -> bool:
        return not privileged and 0 < people < self.privacy.min_group_size

    def _point(self, bucket: queries.Bucket, privileged: bool) -> dict[str, Any]:
        """One point of a series; every figure None when too few people are behind it, or when
        its day or week has not begun (a chart leaves a gap there, never draws $0)."""
        future = bucket.start > self.today()
        hidden = self._withheld(bucket.people, privileged) or future
        users_hidden = future or (
            not privileged and bucket.people_with_usage < self.privacy.min_group_size
        )
        row = bucket.row
        return {
            "start": bucket.start,
            "future": future,
            "withheld": hidden and not future,
            "runs": None if hidden else row.runs,
            "runs_with_outcome": None if hidden else row.runs_with_outcome,
            "cost_usd": None if hidden else row.cost_usd,
            "runs_cost_unknown": None if hidden else row.runs_cost_unknown,
            "minutes_saved": None if hidden else row.minutes_saved,
            "minutes_per_dollar": None if hidden else row.minutes_per_dollar,
            "tokens": None if hidden else row.tokens,
            "people_with_outcome": None if users_hidden else bucket.people_with_outcome,
            "people_with_usage": None if users_hidden else bucket.people_with_usage,
        }

    # -- pages ------------------------------------------------------------------------------

    def overview(self, viewer: Viewer, filters: Filters, *, wait: float) -> dict[str, Any]:
        """This period's totals and adoption, the weekly trend, and the figures by team."""
        budget = Budget(self, wait)
        period, team, tag = filters.period, filters.team, filters.tag
        report = queries.folded_report(
            self.ledger,
            period,
            by="team",
            viewer=viewer.name,
            privacy=self.privacy,
            team=team,
            tag=tag,
        )
        (whole,) = queries.buckets(self.ledger, [period.start, period.end], team=team, tag=tag)
        last_week = Period.week(period.end - timedelta(days=1))
        first = min(
            last_week.start - timedelta(weeks=TREND_WEEKS - 1), Period.week(period.start).start
        )
        edges = [first + timedelta(weeks=n) for n in range((last_week.end - first).days // 7 + 1)]
        trend = self.trend(edges, team, tag, budget)
        totals = self._point(whole, viewer.admin)
        return {
            "viewer": viewer.as_json(),
            "filters": filters.as_json(),
            "withheld": report.withheld,
            "folded": report.folded,
            "withheld_runs": report.hidden_runs,  # in no row: groups of too few people
            "withheld_people": report.hidden_people,
            "totals": totals,
            "headline": self._headline(filters, totals, budget),
            "yours": self._yours(viewer, filters),
            "teams": [row_dict(row) for row in report.rows],
            "trend": [self._point(bucket, viewer.admin) for bucket in trend.value or []],
            "trend_status": _status(trend),
            "choices": {
                "teams": self._team_choices(viewer, filters),
                "tags": list(self.config.value_tags),
            },
        }

    def _headline(
        self, filters: Filters, totals: Mapping[str, Any], budget: Budget
    ) -> dict[str, Any]:
        """The period's headline: accepted outcomes, cost per accepted outcome, minutes claimed
        beside evidenced, and honest adoption; withheld as the totals are. The credited units
        are computed once per ledger version (pending while a page cannot wait for them)."""
        empty = dict.fromkeys(
            (
                "accepted_outcomes",
                "cost_per_accepted",
                "minutes_claimed",
                "minutes_evidenced",
                "people_honest",
            )
        )
        if totals["withheld"] or totals["future"]:
            return empty | {"withheld": True, "pending": False}
        period, team, tag = filters.period, filters.team, filters.tag

        answer = self.credits(period, budget)
        if answer.value is None:
            return empty | {"withheld": False, "pending": True}
        made = [
            credit
            for credit in answer.value
            if team in (None, credit.team or NONE_LABEL)
            and tag in (None, credit.value_tag or NONE_LABEL)
        ]
        found = Evidenced(
            len(made),
            sum((c.minutes for c in made), Decimal(0)),
            totals["minutes_saved"],
            totals["cost_usd"],
        )
        honest = {c.person for c in made if c.reached_others}
        return {
            "withheld": False,
            "pending": False,
            "accepted_outcomes": found.accepted_outcomes,
            "cost_per_accepted": found.cost_per_accepted,
            "minutes_claimed": found.minutes_claimed,
            "minutes_evidenced": found.minutes_evidenced,
            "people_honest": None if totals["people_with_usage"] is None else len(honest),
        }

    def credits(self, period: Period, budget: Budget) -> Answer[list[Any]]:
        """The period's credited units (`value.credits`), once per ledger version."""

        def compute() -> list[Any]:
            return list(credits(self.ledger, period, value=self.config.value))

        key = ("credits", period.start, period.end)
        return self.memo.get(key, budget.version, compute, wait=budget.left)

    def _accepted(
        self, viewer: Viewer, filters: Filters, budget: Budget
    ) -> Callable[[str, bool], dict[str, Any]]:
        """Per agent row: its accepted outcomes, cost per accepted outcome and minutes evidenced
        (the viewer's own runs for their own rows, everyone else's for the others)."""
        answer = self.credits(filters.period, budget)
        people = directory(self.ledger)
        team, tag = filters.team, filters.tag
        made = [
            c
            for c in answer.value or []
            if team in (None, c.team or NONE_LABEL) and tag in (None, c.value_tag or NONE_LABEL)
        ]

        def of(agent: str, own: bool) -> list[Any]:
            if viewer.admin or viewer.name is None:
                return [c for c in made if c.agent == agent]
            return [
                c for c in made if c.agent == agent and people.same(c.owner, viewer.name) == own
            ]

        def figures(agent: str, own: bool) -> dict[str, Any]:
            if answer.value is None or agent == OTHER:
                return dict.fromkeys(("accepted_outcomes", "minutes_evidenced"))
            units = of(agent, own)
            return {
                "accepted_outcomes": len(units),
                "minutes_evidenced": sum((c.minutes for c in units), Decimal(0)),
            }

        return lambda agent, own: figures(agent, own)

    def _yours(self, viewer: Viewer, filters: Filters) -> dict[str, Any] | None:
        """The viewer's own agents' figures (their rows are theirs to see), if they have any."""
        if viewer.name is None or viewer.admin:
            return None
        period = filters.period
        (mine,) = queries.buckets(
            self.ledger,
            [period.start, period.end],
            team=filters.team,
            tag=filters.tag,
            owner=viewer.name,
        )
        return self._point(mine, True) if mine.sums.get("runs") else None

    def agents(
        self, viewer: Viewer, filters: Filters, *, sort: str, order: str, wait: float
    ) -> dict[str, Any]:
        """Per agent: runs, cost, outcomes, feedback, value per dollar, flags, forecast."""
        budget = Budget(self, wait)
        found = queries.agent_cells(
            self.ledger,
            filters.period,
            viewer=viewer.name,
            privacy=self.privacy,
            team=filters.team,
            tag=filters.tag,
        )
        self.forecasts(viewer, found.yours, budget.no_wait())  # start both, then wait
        flagged = self.flags_for(viewer, filters.period, budget)
        counts = Counter(flag.subject for flag in flagged.value or [])
        predicted = self.forecasts(viewer, found.yours, budget)
        accepted = self._accepted(viewer, filters, budget)
        rows = []
        for index, row in enumerate(found.rows):
            values = row_dict(row)
            values.update(accepted(row.group, index < found.own))
            count, cost = values["accepted_outcomes"], row.cost_usd
            values["cost_per_accepted"] = (
                (cost / count).quantize(Decimal("0.0001")) if count and cost is not None else None
            )
            # Others' runs of an agent the viewer owns too: its flags and forecast are theirs.
            shared = index >= found.own and row.group in found.yours
            plan = None if shared else (predicted.value or {}).get(row.group)
            values.update(
                agent=None if row.group == OTHER else row.group,
                yours=index < found.own,
                flags=None if row.group == OTHER else 0 if shared else counts.get(row.group, 0),
                fires_per_month=plan.fires_per_month if plan else None,
                forecast_usd=plan.monthly_usd if plan else None,
            )
            rows.append(values)
        key = SORTS[sort]
        named = [r for r in rows if r["agent"] is not None]
        known = [r for r in named if key(r) is not None]
        known.sort(key=key, reverse=order == "desc")
        ordered = known + [r for r in named if key(r) is None]
        ordered += [r for r in rows if r["agent"] is None]
        return {
            "viewer": viewer.as_json(),
            "filters": filters.as_json(),
            "sort": sort,
            "order": order,
            "rows": ordered,
            "folded": found.folded,
            "withheld": found.withheld,
            "flags": _status(flagged),
            "forecast": _status(predicted),
            "choices": {
                "teams": self._team_choices(viewer, filters),
                "tags": list(self.config.value_tags),
            },
        }

    def agent(
        self, viewer: Viewer, name: str, filters: Filters, *, page: int, wait: float
    ) -> dict[str, Any] | None:
        """One agent: its totals, tokens by kind, cost per day, runs and flags; None if hidden."""
        budget = Budget(self, wait)
        period, team, tag = filters.period, filters.team, filters.tag
        found = queries.agent_cells(
            self.ledger, period, viewer=viewer.name, privacy=self.privacy, team=team, tag=tag
        )
        row = next((r for r in found.rows if r.group == name), None)
        owner = queries.agent_owner(self.ledger, name)
        if owner is None and row is None:
            return None  # no such agent
        if viewer.admin:
            access = "admin"
        elif viewer.name is not None and (owner == viewer.name or name in found.yours):
            access = "owner"  # their own runs of it, in full
        elif row is not None:
            access = "group"
        else:
            return None
        mine = viewer.name if access == "owner" else None
        days = [period.start + timedelta(days=n) for n in range((period.end - period.start).days)]
        series = queries.buckets(
            self.ledger, [*days, period.end], team=team, tag=tag, agent=name, owner=mine
        )
        runs = queries.runs_of_agent(
            self.ledger,
            name,
            period,
            team=team,
            tag=tag,
            person=viewer.name,
            everyone=access == "admin",
            owner=mine,
            limit=RUNS_PER_PAGE + 1,
            offset=(page - 1) * RUNS_PER_PAGE,
        )
        flagged = self.flags_for(viewer, period, budget)
        summary = row_dict(row) if row is not None else None
        headline = self._accepted(viewer, filters, budget)(name, access == "owner")
        count, cost = headline["accepted_outcomes"], summary["cost_usd"] if summary else None
        headline.update(
            minutes_claimed=summary["minutes_saved"] if summary else Decimal(0),
            cost_per_accepted=(
                (cost / count).quantize(Decimal("0.0001")) if count and cost is not None else None
            ),
        )
        return {
            "viewer": viewer.as_json(),
            "filters": filters.as_json(),
            "agent": name,
            "access": access,
            "headline": headline,
            "owner": owner if access != "group" else None,
            "summary": summary,
            "tokens": {kind: (summary or {}).get(kind, 0) for kind in TOKEN_KINDS},
            "daily": [self._point(b, access != "group") for b in series],
            "runs": [_run_row(run) for run in runs[:RUNS_PER_PAGE]],
            "page": page,
            "more": len(runs) > RUNS_PER_PAGE,
            "flags": [_flag_dict(flag) for flag in flagged.value or [] if flag.subject == name],
            "flags_status": _status(flagged),
            "choices": {
                "teams": self._team_choices(viewer, filters),
                "tags": list(self.config.value_tags),
            },
        }

    def run(self, viewer: Viewer, run_id: str) -> dict[str, Any] | None:
        """One run's trigger, timeline, tool calls, outcomes and feedback; None if hidden."""
        found = queries.run_detail(self.ledger, run_id)
        people = directory(self.ledger)
        if found is None or not queries.visible_run(found.entry, viewer.name, self.privacy, people):
            return None
        entry = found.entry
        # The framework's share of the prompts is kept as an event, but it is no step.
        steps = [e for e in found.events if e["kind"] != PROMPT_SHARE]
        shares = [e["detail"] for e in found.events if e["kind"] == PROMPT_SHARE]
        timeline: list[dict[str, Any]] = []
        if entry["scheduled_for"] is not None:
            timeline.append(_step(entry["scheduled_for"], "scheduled", "fire time"))
        timeline.append(_step(entry["started_at"], "started", entry["trigger_kind"]))
        timeline += [_step(e["at"], e["kind"], e["name"], e["detail"]) for e in steps]
        timeline += [_step(o["created_at"], "outcome", o["kind"], o["ref"]) for o in found.outcomes]
        if entry["finished_at"] is not None:
            timeline.append(
                _step(entry["finished_at"], entry["status"], "finished", entry["error"])
            )
        timeline.sort(key=lambda step: step["at"])
        timeline += [
            _step(f["created_at"], "feedback", "+1" if f["vote"] == 1 else "-1", f["person"])
            for f in found.feedback
        ]
        return {
            "viewer": viewer.as_json(),
            "run": _run_entry(entry),
            "timeline": timeline,
            "tool_calls": [
                {"at": e["at"], "kind": e["kind"], "name": e["name"], "detail": e["detail"]}
                for e in steps
            ],
            "framework_prompt": prompt_share_of(shares[0]) if shares else None,
            "outcomes": [_outcome(o) for o in found.outcomes],
            "approvals": _approvals(self.ledger, run_id),
            "feedback": [
                {
                    "person": f["person"],
                    "vote": f["vote"],
                    "comment": f["comment"],
                    "created_at": f["created_at"],
                }
                for f in found.feedback
            ],
        }

    def flags(
        self, viewer: Viewer, filters: Filters, *, rule: str | None, page: int, wait: float
    ) -> dict[str, Any]:
        """The flags the viewer may see in the period (of one rule, if given), a page at a time,
        with the first runs behind each and how many flags and runs each rule raised."""
        answer = self.flags_for(viewer, filters.period, Budget(self, wait))
        found = answer.value or []
        if filters.team is not None or filters.tag is not None:
            keep = queries.subjects(self.ledger, filters.period, team=filters.team, tag=filters.tag)
            found = [flag for flag in found if flag.subject in keep]
        rules = Counter(flag.rule for flag in found)
        runs = Counter()
        for flag in found:
            runs[flag.rule] += len(flag.run_ids)
        selected = [flag for flag in found if rule is None or flag.rule == rule]
        first = (page - 1) * FLAGS_PER_PAGE
        page_flags = selected[first : first + FLAGS_PER_PAGE]
        shown = [run_id for flag in page_flags for run_id in flag.run_ids[:RUNS_PER_FLAG]]
        details = queries.run_summaries(self.ledger, shown)
        seen: set[str] = set()
        listed = []
        for flag in page_flags:
            listed.append(
                {
                    **_flag_dict(flag),
                    "anchor": None if flag.subject in seen else flag.subject,
                    "runs": [
                        _flag_run(details.get(run_id), run_id)
                        for run_id in flag.run_ids[:RUNS_PER_FLAG]
                    ],
                }
            )
            seen.add(flag.subject)
        return {
            "viewer": viewer.as_json(),
            "filters": filters.as_json(),
            "status": _status(answer),
            "scope": self.flag_scope(viewer),
            "rules": [
                {"rule": name, "flags": count, "runs": runs[name]}
                for name, count in sorted(rules.items())
            ],
            "rule": rule,
            "total": len(selected),
            "first": first + 1 if page_flags else 0,
            "page": page,
            "more": len(selected) > first + FLAGS_PER_PAGE,
            "flags": listed,
            "choices": {
                "teams": self._team_choices(viewer, filters),
                "tags": list(self.config.value_tags),
            },
        }


def _flag_dict(flag: Flag) -> dict[str, Any]:
    return {
        "rule": flag.rule,
        "subject": flag.subject,
        "reason": flag.reason,
        "count": len(flag.run_ids),
        "run_ids": list(flag.run_ids),
        "owner": flag.owner,
        "people": list(flag.people),
        "accountable": flag.accountable,
        "usd": flag.usd,
        "evidence": list(flag.evidence),
        "innocent": flag.innocent,
        "fix": flag.fix,
        "strength": flag.strength,
        "kind": flag.kind,
    }


def _approvals(ledger: Ledger, run_id: str) -> list[dict[str, Any]]:
    """The writes the run staged for approval, and their decisions."""
    from meshagent.approvals import shown
    from meshagent.ledger.approvals import of_run

    return [shown(approval) for approval in of_run(ledger, run_id)]


def _outcome(o: Mapping[str, Any]) -> dict[str, Any]:
    """An outcome with its verdict, the evidence behind it (who, what, when; counted or why
    not) and its reach (who could see it), as the follow-up pass and the connector recorded."""
    return {
        "kind": o["kind"],
        "ref": o["ref"],
        "url": o["url"],
        "link": _safe_link(o["url"]),
        "created_at": o["created_at"],
        "delivered": o["kind"] != "planned",
        "verdict": o.get("verdict") or "pending",
        "checked_at": o.get("checked_at"),
        "evidence": [
            {
                "who": item.get("who"),
                "what": str(item.get("what") or ""),
                "when": item.get("when"),
                "counted": bool(item.get("counted", True)),
                "why": item.get("why"),
            }
            for item in _json_list(o.get("evidence"))
            if isinstance(item, dict)
        ],
        "reach": {
            "audience": o.get("audience"),
            "audience_size": o.get("audience_size"),
            "reaches_others": o.get("reaches_others"),
            "detail": _json_object(o.get("reach_detail")),
        },
    }


def _json_list(text: str | None) -> list[Any]:
    try:
        value = json.loads(text) if text else []
    except ValueError:
        return []
    return value if isinstance(value, list) else []


def _json_object(text: str | None) -> dict[str, Any]:
    try:
        value = json.loads(text) if text else {}
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _flag_run(details: dict[str, Any] | None, run_id: str) -> dict[str, Any]:
    details = details or {}
    return {
        "run_id": run_id,
        "agent": details.get("agent"),
        "started_at": details.get("started_at"),
        "status": details.get("status"),
        "tokens": details.get("tokens"),
        "cost_usd": details.get("cost_usd"),
    }


def _step(at: datetime, kind: str, name: str, detail: str | None = None) -> dict[str, Any]:
    return {"at": at, "kind": kind, "name": name, "detail": detail}


def _safe_link(url: str | None) -> str | None:
    """Only web links become links; anything else (javascript:, data:) stays text."""
    if url and url.lower().startswith(("https://", "http://")):
        return url
    return None


def _tokens(values: Mapping[str, Any]) -> int:
    """Input (cached included) and output (reasoning included): each token once."""
    return int(values.get("input_tokens") or 0) + int(values.get("output_tokens") or 0)


def _run_row(run: dict[str, Any]) -> dict[str, Any]:
    return {
        "run_id": run["run_id"],
        "started_at": run["started_at"],
        "finished_at": run["finished_at"],
        "status": run["status"],
        "trigger_kind": run["trigger_kind"],
        "triggered_by": run["triggered_by"],
        "model": run["model_answered"] or run["model_requested"],
        "tokens": _tokens(run),
        "cost_usd": run["cost_usd"],
        "outcomes": run["outcomes"],
        "feedback_pos": run["feedback_pos"],
        "feedback_neg": run["feedback_neg"],
    }


def _run_entry(entry: dict[str, Any]) -> dict[str, Any]:
    return {
        "run_id": entry["run_id"],
        "agent": entry["agent"],
        "agent_version": entry["agent_version"],
        "owner": entry["owner"],
        "team": entry["team"],
        "status": entry["status"],
        "error": entry["error"],
        "trigger": {
            "kind": entry["trigger_kind"],
            "by": entry["triggered_by"],
            "scheduled_for": entry["scheduled_for"],
        },
        "started_at": entry["started_at"],
        "finished_at": entry["finished_at"],
        "provider": entry["provider"],
        "model": entry["model_answered"] or entry["model_requested"],
        "model_calls": entry["model_calls"],
        "tool_calls": entry["tool_calls"],
        "tokens": {kind: entry[kind] for kind in TOKEN_KINDS},
        "usage_estimated": bool(entry["usage_estimated"]),
        "cost_usd": entry["cost_usd"],
        "price_source": entry["price_source"],
        "value_tag": entry["value_tag"],
        "minutes_saved": entry["minutes_saved"],
    }
