"""Cron expressions with their crontab(5) meaning, intervals and timezones.

APScheduler 3.x numbers weekdays from Monday = 0, crontab from Sunday = 0, and APScheduler ANDs
the two day fields where crontab ORs them when both are restricted. ``CronExpression`` parses
the crontab text itself (so every mistake names its field and range) and hands APScheduler
explicit value lists with weekday *names*, so its own conventions never leak through.
"""

from __future__ import annotations

import difflib
import re
import zoneinfo
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from functools import lru_cache
from typing import Any

from apscheduler.triggers.base import BaseTrigger

__all__ = ["CronError", "CronExpression", "CrontabTrigger", "check_timezone", "parse_interval"]

MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
DAYS = ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT")
#: Daylight-saving shifts are at most 2 hours; searching this far back finds a repeated hour.
_DST_REACH = timedelta(hours=3)
#: Feb 29 on a given weekday recurs within 28 years; nothing valid fires later than that.
_SEARCH_DAYS = 366 * 28

MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}


@dataclass(frozen=True)
class _Field:
    name: str
    low: int
    high: int
    names: tuple[str, ...] = ()
    name_base: int = 0  # the number of names[0]

    def number(self, token: str) -> int:
        if token.isdigit():
            value = int(token)
            if not self.low <= value <= self.high:
                raise ValueError(f"{self.name} {value} is out of range {self.low}-{self.high}")
            return value
        upper = token.upper()
        if self.names and upper in self.names:
            return self.names.index(upper) + self.name_base
        if self.names:
            raise ValueError(
                f"{self.name} {token!r} is not a {'month' if self.name == 'month' else 'day'} name "
                f"({self.names[0]}-{self.names[-1]}) or number {self.low}-{self.high}"
            )
        raise ValueError(f"{self.name} {token!r} is not a number {self.low}-{self.high}")


FIELDS = (
    _Field("minute", 0, 59),
    _Field("hour", 0, 23),
    _Field("day of month", 1, 31),
    _Field("month", 1, 12, MONTHS, 1),
    _Field("day of week", 0, 7, DAYS, 0),
)


class CronError(ValueError):
    """A cron expression that cannot be read; names the field and the allowed range."""

    def __init__(self, expression: str, detail: str, field: str | None = None):
        self.expression = expression
        self.detail = detail
        self.field = field
        super().__init__(f"{expression!r} is not a valid cron expression: {detail}")


def _parse_field(field: _Field, text: str) -> frozenset[int]:
    values: set[int] = set()
    for element in text.split(","):
        if not element:
            raise ValueError(f"{field.name} has an empty list element in {text!r}")
        base, slash, step_text = element.partition("/")
        step = 1
        if slash:
            if not step_text.isdigit():
                raise ValueError(f"{field.name} step {step_text!r} is not a number")
            step = int(step_text)
            if step < 1:
                raise ValueError(f"{field.name} step {step} must be at least 1")
        if base == "*":
            low, high = field.low, field.high
        elif "-" in base:
            first, _, last = base.partition("-")
            low, high = field.number(first), field.number(last)
            if low > high:
                raise ValueError(f"{field.name} range {base} is reversed")
        else:
            low = field.number(base)
            # crontab: "a/n" means "a-max/n"
            high = field.high if slash else low
        values.update(range(low, high + 1, step))
    return frozenset(values)


@dataclass(frozen=True)
class CronExpression:
    """A parsed crontab(5) expression; weekdays numbered 0 = Sunday ... 6 = Saturday."""

    text: str
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]
    day_restricted: bool
    weekday_restricted: bool

    @classmethod
    def parse(cls, text: str) -> CronExpression:
        return _parse(text)

    def matches(self, when: datetime) -> bool:
        """Whether the wall-clock time ``when`` is a fire time (seconds ignored)."""
        return (
            when.minute in self.minutes
            and when.hour in self.hours
            and self._day_matches(when.date())
        )

    def _day_matches(self, day: date) -> bool:
        if day.month not in self.months:
            return False
        day_ok = day.day in self.days
        weekday_ok = (day.isoweekday() % 7) in self.weekdays
        if self.day_restricted and self.weekday_restricted:
            return day_ok or weekday_ok  # crontab(5): either day field may match
        return day_ok and weekday_ok

    def fires_between(self, start: date, end: date) -> int:
        """How many times it fires on the days from ``start`` up to ``end`` (wall clock)."""
        per_day = len(self.hours) * len(self.minutes)
        days = (end - start).days
        return sum(per_day for n in range(days) if self._day_matches(start + timedelta(days=n)))

    def trigger(self, timezone: str | tzinfo, *, jitter: int | None = None) -> CrontabTrigger:
        """An APScheduler trigger that fires exactly when this expression says."""
        return CrontabTrigger(self, timezone, jitter=jitter)

    def next_fire(self, after: datetime, timezone: str | tzinfo) -> datetime:
        """The first fire time strictly after ``after``, as an aware time in ``timezone``.

        Wall-clock times are read in ``timezone``. Across daylight-saving changes:
        a time that does not exist (the hour skipped in spring) fires at the moment the clocks
        jump, as in Vixie cron, so a daily job is never silently skipped (02:30 in Berlin fires
        at 03:00 CEST);
        a time that exists twice (the hour repeated in autumn) fires once, at its first
        occurrence. Expressions that run every hour follow real time instead, as an interval
        would: nothing in the skipped hour, both passes of the repeated one.
        """
        zone = check_timezone(timezone) if isinstance(timezone, str) else timezone
        if after.tzinfo is None:
            raise ValueError("next_fire needs an aware datetime")
        instant = after.astimezone(UTC)
        wall = instant.astimezone(zone).replace(tzinfo=None) - _DST_REACH
        wall = wall.replace(second=0, microsecond=0)
        best: datetime | None = None
        for candidate in self._wall_times(wall):
            if best is not None and candidate > best.astimezone(zone).replace(tzinfo=None) + (
                2 * _DST_REACH
            ):
                break
            for fire in self._instants(candidate, zone):
                if fire > instant and (best is None or fire < best):
                    best = fire
        if best is None:
            raise CronError(self.text, "it never fires")
        return best.astimezone(zone)

    def _wall_times(self, start: datetime) -> Any:
        """Matching wall-clock times from ``start`` on, in order."""
        hours, minutes = sorted(self.hours), sorted(self.minutes)
        day = start.date()
        for _ in range(_SEARCH_DAYS):
            if self._day_matches(day):
                for hour in hours:
                    for minute in minutes:
                        wall = datetime.combine(day, time(hour, minute))
                        if wall >= start:
                            yield wall
            day += timedelta(days=1)

    def _instants(self, wall: datetime, zone: tzinfo) -> list[datetime]:
        first = wall.replace(tzinfo=zone, fold=0).astimezone(UTC)
        second = wall.replace(tzinfo=zone, fold=1).astimezone(UTC)
        if first == second:
            return [first]
        # Vixie cron: jobs that run every hour follow real time (none in the skipped hour,
        # both passes of the repeated one); jobs at a fixed hour run once on such a day.
        every_hour = len(self.hours) == 24
        if first.astimezone(zone).replace(tzinfo=None) != wall:
            return [] if every_hour else [_gap_end(second, first, zone)]
        return [first, second] if every_hour else [first]


def _gap_end(low: datetime, high: datetime, zone: tzinfo) -> datetime:
    """The instant the clocks jump forward, found between the two readings of a skipped time.

    A time in the skipped hour fires then, as Vixie cron runs such jobs right after the jump.
    """
    step = timedelta(minutes=1)
    moment = low
    while moment < high:
        moment += step
        before = (moment - step).astimezone(zone).utcoffset()
        if moment.astimezone(zone).utcoffset() != before:
            return moment
    return high


class CrontabTrigger(BaseTrigger):
    """APScheduler trigger for a crontab(5) expression, computed by ``CronExpression``.

    APScheduler 3.11's own CronTrigger numbers weekdays from Monday, ANDs the two day fields
    and, across a daylight-saving change, can skip a whole week (from Sunday 29 March 2026
    in Europe/Berlin, `day_of_week=mon, hour=0` next fires on 6 April). This trigger only
    borrows APScheduler's scheduling loop and jitter.
    """

    def __init__(
        self, expression: CronExpression, timezone: str | tzinfo, *, jitter: int | None = None
    ):
        self.expression = expression
        self.timezone = check_timezone(timezone) if isinstance(timezone, str) else timezone
        self.jitter = jitter

    def get_next_fire_time(
        self, previous_fire_time: datetime | None, now: datetime
    ) -> datetime | None:
        # Like APScheduler's CronTrigger: the first fire after the previous one, or at/after now.
        if previous_fire_time is not None and previous_fire_time <= now:
            after = previous_fire_time
        else:
            after = now - timedelta(microseconds=1)
        fire = self.expression.next_fire(after, self.timezone)
        return self._apply_jitter(fire, self.jitter, now)

    def __getstate__(self) -> dict[str, Any]:
        return {
            "version": 1,
            "text": self.expression.text,
            "timezone": str(self.timezone),
            "jitter": self.jitter,
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.expression = CronExpression.parse(state["text"])
        self.timezone = check_timezone(state["timezone"])
        self.jitter = state["jitter"]

    def __str__(self) -> str:
        return f"crontab[{self.expression.text}, {self.timezone}]"

    def __repr__(self) -> str:
        return f"<CrontabTrigger ({self.expression.text!r}, timezone={str(self.timezone)!r})>"


@lru_cache(maxsize=4096)
def _parse(text: str) -> CronExpression:
    expanded = text.strip()
    if expanded.startswith("@"):
        if expanded.lower() == "@reboot":
            raise CronError(text, "@reboot is not a schedule: MeshAgent runs agents on times")
        if expanded.lower() not in MACROS:
            raise CronError(text, f"unknown macro {expanded!r} (known: {', '.join(MACROS)})")
        expanded = MACROS[expanded.lower()]
    parts = expanded.split()
    if len(parts) != 5:
        detail = f"it has {len(parts)} fields; 5 are expected (minute hour day month weekday)"
        if len(parts) == 6:
            detail += "; a seconds field is not supported"
        raise CronError(text, detail)
    values = []
    for field, part in zip(FIELDS, parts, strict=True):
        try:
            values.append(_parse_field(field, part))
        except ValueError as exc:
            raise CronError(text, str(exc), field.name) from None
    minutes, hours, days, months, weekdays = values
    weekdays = frozenset(d % 7 for d in weekdays)  # 7 is Sunday too
    if not any(_fits(day, month) for day in days for month in months):
        raise CronError(text, "the day of month never occurs in the given months", "day of month")
    return CronExpression(
        text=text,
        minutes=minutes,
        hours=hours,
        days=days,
        months=months,
        weekdays=weekdays,
        # Vixie cron: a field starting with '*' (also '*/2') counts as unrestricted here.
        day_restricted=not parts[2].startswith("*"),
        weekday_restricted=not parts[4].startswith("*"),
    )


def _fits(day: int, month: int) -> bool:
    return day <= (29 if month == 2 else 30 if month in (4, 6, 9, 11) else 31)


_INTERVAL = re.compile(r"(\d+)\s*([smhdw])")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_interval(text: str) -> timedelta:
    """'15m', '2h', '1d', '1h30m', '10s' -> timedelta; at least one second."""
    compact = str(text).strip().lower()
    if not compact or _INTERVAL.sub("", compact).strip():
        raise ValueError(
            f"{text!r} is not an interval: use a number and a unit s, m, h, d or w "
            "(e.g. 15m, 2h, 1h30m)"
        )
    total = timedelta()
    for number, unit in _INTERVAL.findall(compact):
        total += timedelta(**{_UNITS[unit]: int(number)})
    if total < timedelta(seconds=1):
        raise ValueError(f"{text!r} is too short: an interval must be at least 1 second")
    return total


@lru_cache(maxsize=1)
def _zone_names() -> tuple[str, ...]:
    return tuple(sorted(zoneinfo.available_timezones()))


@lru_cache(maxsize=512)
def check_timezone(name: str) -> zoneinfo.ZoneInfo:
    """The IANA timezone ``name``; a wrong name suggests the closest real one."""
    if name in _zone_names():
        return zoneinfo.ZoneInfo(name)
    close = difflib.get_close_matches(name, _zone_names(), n=1)
    hint = f"; did you mean {close[0]!r}?" if close else " (e.g. Europe/Berlin, UTC)"
    raise ValueError(f"{name!r} is not a valid IANA timezone{hint}")
