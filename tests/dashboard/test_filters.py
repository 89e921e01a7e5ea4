"""Filters: periods from the query string, and one canonical query string back."""

from __future__ import annotations

from datetime import date

import pytest

from meshagent.dashboard.filters import FilterError, Filters
from meshagent.ledger.periods import Period

TODAY = date(2025, 3, 5)


def _parse(**params: str) -> Filters:
    return Filters.parse(params, TODAY)


def test_the_default_is_this_week():
    filters = _parse()
    assert filters.period == Period.week(TODAY) and filters.query() == {}


@pytest.mark.parametrize(
    "params, period",
    [
        ({"period": "day"}, Period.day(TODAY)),
        ({"period": "month", "date": "2025-02-14"}, Period.month(date(2025, 2, 14))),
        ({"from": "2025-01-01", "to": "2025-01-31"}, Period(date(2025, 1, 1), date(2025, 2, 1))),
        ({"from": "2025-03-01"}, Period(date(2025, 3, 1), date(2025, 3, 6))),
        (
            {"period": "range", "from": "2025-03-01", "to": "2025-03-01"},
            Period.day(date(2025, 3, 1)),
        ),
        ({"period": "week", "from": "2025-01-01", "to": "2025-01-31"}, Period.week(TODAY)),
    ],
)
def test_periods(params, period):
    filters = _parse(**params)
    assert filters.period == period
    assert Filters.parse(filters.query(), TODAY) == filters  # the query says it all


def test_team_and_tag_are_kept_and_blank_means_none():
    filters = _parse(team=" big ", tag="")
    assert (filters.team, filters.tag) == ("big", None)
    assert filters.query() == {"team": "big"}
    with pytest.raises(FilterError, match="longer than 200"):
        _parse(team="x" * 201)


@pytest.mark.parametrize(
    "period, steps, start",
    [
        ("week", -1, date(2025, 2, 24)),
        ("week", 2, date(2025, 3, 17)),
        ("day", -1, date(2025, 3, 4)),
        ("month", -1, date(2025, 2, 1)),
        ("month", -3, date(2024, 12, 1)),
        ("month", 1, date(2025, 4, 1)),
    ],
)
def test_moving_a_named_period(period, steps, start):
    moved = _parse(period=period).shifted(steps)
    assert moved.period.start == start
    assert moved.period == Period.named(period, start)


def test_moving_a_range_keeps_its_length():
    moved = _parse(**{"from": "2025-03-01", "to": "2025-03-10"}).shifted(-1)
    assert moved.period == Period(date(2025, 2, 19), date(2025, 3, 1))
    assert moved.query() == {"from": "2025-02-19", "to": "2025-02-28"}
