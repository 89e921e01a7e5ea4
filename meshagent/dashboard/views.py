"""What each page shows, as plain data: the HTML pages and the JSON API render the same dicts.

`Pages` gathers the pages, one module each: the overview (`overview`), the agents and one agent
(`agentpages`), one run (`runpage`) and the flags (here); what they share is in `pagebase`.
Every page takes the viewer and applies the ledger's privacy rules before returning: folded
totals for everyone, rows per person only for that person or an admin, runs only for their
owner, whoever triggered them, and admins.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from meshagent.dashboard import queries
from meshagent.dashboard.agentpages import DEFAULT_SORT, SORTS, AgentPages
from meshagent.dashboard.filters import Filters
from meshagent.dashboard.overview import OverviewPage
from meshagent.dashboard.pagebase import (
    API_WAIT,
    PAGE_WAIT,
    Budget,
    Viewer,
    _flag_dict,
    _status,
    jsonable,
    row_dict,
)
from meshagent.dashboard.runpage import RunPage

__all__ = [
    "API_WAIT",
    "DEFAULT_SORT",
    "FLAGS_PER_PAGE",
    "PAGE_WAIT",
    "SORTS",
    "Pages",
    "Viewer",
    "jsonable",
    "row_dict",
]

RUNS_PER_FLAG = 5
FLAGS_PER_PAGE = 50


class Pages(OverviewPage, AgentPages, RunPage):
    """The data of every page over one ledger, with the slow parts kept in a Memo."""

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
