"""The agents page (a row per agent, sortable) and one agent's page."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Mapping
from datetime import timedelta
from decimal import Decimal
from typing import Any

from meshagent.dashboard import queries
from meshagent.dashboard.filters import Filters
from meshagent.dashboard.pagebase import (
    RUNS_PER_PAGE,
    Budget,
    PagesBase,
    Viewer,
    _flag_dict,
    _status,
    row_dict,
)
from meshagent.ledger.people import directory
from meshagent.ledger.privacy import OTHER
from meshagent.ledger.reports import NONE_LABEL, ranking
from meshagent.ledger.schema import TOKEN_KINDS

SORTS = {
    "value_per_dollar": lambda r: r["value_per_dollar"],
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
#: The agents are ranked by value per dollar unless the viewer sorts by another column.
DEFAULT_SORT = "value_per_dollar"


class AgentPages(PagesBase):
    """The agents page and one agent's page."""

    def _accepted(
        self, viewer: Viewer, filters: Filters, budget: Budget
    ) -> Callable[[str, bool], dict[str, Any]]:
        """Per agent row: its accepted outcomes, cost per accepted outcome and minutes evidenced
        (the viewer's own runs for their own rows, everyone else's for the others)."""
        answer = self.credits(filters.period, budget)
        people = directory(self.ledger)
        team, tag = filters.team, filters.tag
        by_agent: dict[str, list[Any]] = defaultdict(list)  # read once, not once per row
        for c in answer.value or []:
            if team in (None, c.team or NONE_LABEL) and tag in (None, c.value_tag or NONE_LABEL):
                by_agent[c.agent].append(c)

        def of(agent: str, own: bool) -> list[Any]:
            made = by_agent.get(agent, [])
            if viewer.admin or viewer.name is None:
                return made
            return [c for c in made if people.same(c.owner, viewer.name) == own]

        def figures(agent: str, own: bool) -> dict[str, Any]:
            if answer.value is None or agent == OTHER:
                return dict.fromkeys(("accepted_outcomes", "minutes_evidenced"))
            units = of(agent, own)
            return {
                "accepted_outcomes": len(units),
                "minutes_evidenced": sum((c.minutes for c in units), Decimal(0)),
            }

        return lambda agent, own: figures(agent, own)

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
        self.forecasts(viewer, found.yours, budget.no_wait())  # start them all, then wait
        self.value_rows(filters.period, "agent", budget.no_wait())
        flagged = self.flags_for(viewer, filters.period, budget)
        counts = Counter(flag.subject for flag in flagged.value or [])
        predicted = self.forecasts(viewer, found.yours, budget)
        accepted = self._accepted(viewer, filters, budget)
        ranked = self.value_rows(filters.period, "agent", budget)
        value_of = ranking(ranked.value or [])
        rows = []
        for index, row in enumerate(found.rows):
            values = row_dict(row)
            values.update(accepted(row.group, index < found.own))
            values["value_per_dollar"] = value_of(row)
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
            "value": _status(ranked),
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
        value_of = ranking(self.value_rows(period, "agent", budget).value or [])
        headline.update(
            value_per_dollar=value_of(row) if row is not None else None,
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
