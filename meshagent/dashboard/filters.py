"""Page filters from the query string: period, team, value tag; and the canonical query back.

A period is `period=day|week|month` around `date=YYYY-MM-DD` (default: today in UTC), or any
`from=YYYY-MM-DD&to=YYYY-MM-DD` (both days included). The same filters always give the same
query string, so every page has one stable URL per view.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import date, timedelta
from typing import Any

from meshagent.ledger.periods import Period

__all__ = ["MAX_DAYS", "PERIODS", "FilterError", "Filters"]

PERIODS = ("day", "week", "month")
MAX_DAYS = 731


class FilterError(ValueError):
    """A query parameter that does not make sense; its message says what to send instead."""


def _day(name: str, text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise FilterError(f"{name}={text!r} is not a date: use YYYY-MM-DD") from None


def _text(params: Mapping[str, str], name: str, limit: int = 200) -> str | None:
    value = (params.get(name) or "").strip()
    if len(value) > limit:
        raise FilterError(f"{name} is longer than {limit} characters")
    return value or None


@dataclass(frozen=True)
class Filters:
    """What a page shows: a period, and optionally one team and one value tag."""

    period_name: str  # day, week, month, or "range" for from/to
    period: Period
    anchor: date | None = None  # the date= of a named period, when one was given
    team: str | None = None
    tag: str | None = None

    @classmethod
    def parse(cls, params: Mapping[str, str], today: date) -> Filters:
        """Filters from query parameters; raises FilterError naming a bad one."""
        start, end = params.get("from"), params.get("to")
        team, tag = _text(params, "team"), _text(params, "tag", 100)
        name = params.get("period") or ("range" if start or end else "week")
        if name == "range":
            if not start:
                raise FilterError("period=range needs from=YYYY-MM-DD (and to=, default today)")
            first = _day("from", start)
            last = _day("to", end) if end else today
            if last < first:
                raise FilterError(f"to={last} is before from={first}")
            if (last - first).days >= MAX_DAYS:
                raise FilterError(f"a range may span at most {MAX_DAYS} days")
            return cls("range", Period.between(first, last), None, team, tag)
        if name not in PERIODS:
            raise FilterError(f"period={name!r} is not one of {', '.join(PERIODS)} or range")
        anchor = _day("date", params["date"]) if params.get("date") else None
        return cls(name, Period.named(name, anchor or today), anchor, team, tag)

    def query(self, **changes: Any) -> dict[str, str]:
        """The canonical query parameters of these filters (after `changes`), defaults left out."""
        current = replace(self, **changes) if changes else self
        params: dict[str, str] = {}
        if current.period_name == "range":
            params["from"] = str(current.period.start)
            params["to"] = str(current.period.end - timedelta(days=1))
        else:
            if current.period_name != "week":
                params["period"] = current.period_name
            if current.anchor is not None:
                params["date"] = str(current.anchor)
        if current.team:
            params["team"] = current.team
        if current.tag:
            params["tag"] = current.tag
        return params

    def shifted(self, steps: int) -> Filters:
        """The same filters over the period `steps` periods later (earlier when negative)."""
        start = self.period.start
        if self.period_name == "range":
            days = (self.period.end - self.period.start).days * steps
            first = start + timedelta(days=days)
            return replace(self, period=Period(first, self.period.end + timedelta(days=days)))
        if self.period_name == "month":
            day = start
            for _ in range(abs(steps)):
                day = (day - timedelta(days=1)).replace(day=1) if steps < 0 else day + timedelta(32)
            anchor = day.replace(day=1)
        else:
            anchor = start + timedelta(days=(7 if self.period_name == "week" else 1) * steps)
        return replace(self, anchor=anchor, period=Period.named(self.period_name, anchor))

    def as_json(self) -> dict[str, Any]:
        return {
            "period": self.period_name,
            "date": str(self.anchor) if self.anchor else None,
            "from": str(self.period.start),
            "to": str(self.period.end - timedelta(days=1)),
            "team": self.team,
            "tag": self.tag,
        }
