"""The overview page: the period's totals and headline, adoption, the weekly trend and the
figures by team."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from decimal import Decimal
from typing import Any

from meshagent.dashboard import queries
from meshagent.dashboard.filters import Filters
from meshagent.dashboard.pagebase import (
    TREND_WEEKS,
    Budget,
    PagesBase,
    Viewer,
    _status,
    row_dict,
)
from meshagent.ledger.periods import Period
from meshagent.ledger.reports import NONE_LABEL, ranking
from meshagent.ledger.value import Evidenced


class OverviewPage(PagesBase):
    """The overview page."""

    def overview(self, viewer: Viewer, filters: Filters, *, wait: float) -> dict[str, Any]:
        """This period's totals and adoption, the weekly trend, and the figures by team."""
        budget = Budget(self, wait)
        period, team, tag = filters.period, filters.team, filters.tag
        self.value_rows(period, "team", budget.no_wait())  # computed while the rest is read
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
        value_of = ranking(self.value_rows(period, "team", budget).value or [])
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
            "teams": [{**row_dict(row), "value_per_dollar": value_of(row)} for row in report.rows],
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
