"""Report periods: a day, an ISO week, a month, or any from/to range of whole UTC days."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from meshagent.exceptions import LedgerError

__all__ = ["Period"]


@dataclass(frozen=True)
class Period:
    """The UTC days from `start` up to, not including, `end`."""

    start: date
    end: date

    def __post_init__(self) -> None:
        if self.end <= self.start:
            raise LedgerError(f"report period ends ({self.end}) before it starts ({self.start})")

    @classmethod
    def day(cls, day: date) -> Period:
        return cls(day, day + timedelta(days=1))

    @classmethod
    def week(cls, day: date) -> Period:
        """The Monday-to-Sunday week that contains `day`."""
        monday = day - timedelta(days=day.weekday())
        return cls(monday, monday + timedelta(days=7))

    @classmethod
    def month(cls, day: date) -> Period:
        first = day.replace(day=1)
        following = (first + timedelta(days=32)).replace(day=1)
        return cls(first, following)

    @classmethod
    def between(cls, start: date, end: date) -> Period:
        """From `start` to `end`, both days included."""
        return cls(start, end + timedelta(days=1))

    @classmethod
    def named(cls, name: str, today: date | None = None) -> Period:
        """'day', 'week' or 'month' containing `today` (default: today in UTC)."""
        today = today or datetime.now(UTC).date()
        makers = {"day": cls.day, "week": cls.week, "month": cls.month}
        if name not in makers:
            raise LedgerError(f"period {name!r} is not one of day, week, month")
        return makers[name](today)

    @property
    def label(self) -> str:
        last = self.end - timedelta(days=1)
        return str(self.start) if last == self.start else f"{self.start}..{last}"

    @property
    def start_time(self) -> datetime:
        return datetime(self.start.year, self.start.month, self.start.day, tzinfo=UTC)

    @property
    def end_time(self) -> datetime:
        return datetime(self.end.year, self.end.month, self.end.day, tzinfo=UTC)

    def weeks(self) -> Iterator[Period]:
        """The Monday-based weeks that overlap this period, in order."""
        week = Period.week(self.start)
        while week.start < self.end:
            yield week
            week = Period.week(week.end)
