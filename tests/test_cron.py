"""Cron expressions keep their crontab(5) meaning: checked against croniter as a reference."""

from __future__ import annotations

import pickle
import re
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from croniter import croniter
from hypothesis import given, settings
from hypothesis import strategies as st

from meshagent.agentfile.cron import (
    CronError,
    CronExpression,
    CrontabTrigger,
    check_timezone,
    parse_interval,
)

BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")


@pytest.mark.parametrize(
    ("text", "detail"),
    [
        ("0 25 * * *", "hour 25 is out of range 0-23"),
        ("60 * * * *", "minute 60 is out of range 0-59"),
        ("* * 0 * *", "day of month 0 is out of range 1-31"),
        ("* * * 13 *", "month 13 is out of range 1-12"),
        ("* * * * 8", "day of week 8 is out of range 0-7"),
        ("* * * FOO *", "month 'FOO' is not a month name (JAN-DEC) or number 1-12"),
        ("* * * * FUN", "day of week 'FUN' is not a day name (SUN-SAT) or number 0-7"),
        ("x * * * *", "minute 'x' is not a number 0-59"),
        ("*/0 * * * *", "minute step 0 must be at least 1"),
        ("*/x * * * *", "minute step 'x' is not a number"),
        ("5-2 * * * *", "minute range 5-2 is reversed"),
        ("1,,2 * * * *", "minute has an empty list element in '1,,2'"),
        ("* * 30 2 *", "the day of month never occurs in the given months"),
        ("* * * *", "it has 4 fields; 5 are expected (minute hour day month weekday)"),
        (
            "0 0 * * * *",
            "it has 6 fields; 5 are expected (minute hour day month weekday); "
            "a seconds field is not supported",
        ),
        ("@reboot", "@reboot is not a schedule: MeshAgent runs agents on times"),
        ("@sometimes", "unknown macro '@sometimes' (known: @yearly, @annually, @monthly, @weekly"),
    ],
)
def test_invalid_expressions_name_the_field_and_range(text, detail):
    expected = f"{text!r} is not a valid cron expression: {detail}"
    with pytest.raises(CronError, match="^" + re.escape(expected)):
        CronExpression.parse(text)


def test_error_carries_the_field():
    with pytest.raises(CronError) as caught:
        CronExpression.parse("0 25 * * *")
    assert (caught.value.field, caught.value.expression) == ("hour", "0 25 * * *")


def test_numeric_weekdays_mean_what_they_mean_in_crontab():
    assert CronExpression.parse("0 0 * * 0").weekdays == {0}
    assert CronExpression.parse("0 0 * * 7").weekdays == {0}  # 7 is Sunday too
    assert CronExpression.parse("0 0 * * 1").weekdays == {1}  # Monday
    assert CronExpression.parse("0 0 * * MON-FRI").weekdays == {1, 2, 3, 4, 5}
    assert CronExpression.parse("0 0 * * sat,SUN").weekdays == {6, 0}
    sunday = datetime(2026, 11, 22, 0, 0, tzinfo=UTC)
    after = sunday - timedelta(days=1)
    assert CronExpression.parse("0 0 * * 7").next_fire(after, "UTC") == sunday
    assert CronExpression.parse("0 0 * * 1").next_fire(after, "UTC") == sunday + timedelta(days=1)


def test_either_day_field_matches_when_both_are_restricted():
    expression = CronExpression.parse("0 0 13 * FRI")
    start = datetime(2026, 11, 1, tzinfo=UTC)
    fires = [start := expression.next_fire(start, "UTC") for _ in range(4)]
    assert [f.day for f in fires] == [6, 13, 20, 27]  # Fridays, and the 13th (a Friday here)
    assert expression.matches(datetime(2026, 12, 13)) and expression.matches(datetime(2026, 12, 4))


def test_a_star_step_in_a_day_field_does_not_trigger_the_or_rule():
    expression = CronExpression.parse("0 0 */2 * MON")
    assert not expression.day_restricted and expression.weekday_restricted
    assert expression.matches(datetime(2026, 11, 23))  # Monday the 23rd: odd day, Monday
    assert not expression.matches(datetime(2026, 11, 30))  # Monday, even day
    assert not expression.matches(datetime(2026, 11, 25))  # odd day, Wednesday


# --- against croniter ---------------------------------------------------------------------------

EXPRESSIONS = [
    "0 9 * * MON-FRI",
    "*/15 * * * *",
    "30 2 * * *",
    "0 0 13 * 5",
    "0 0 1,15 * 1",
    "5 4 * * 0",
    "5 4 * * 7",
    "0 12 * JAN,JUL *",
    "0 0 29 2 *",
    "15 1 * * *",
    "0 3 * * *",
    "0 2 * * *",
    "0 */3 * * 1-5",
    "0 0 */10 * *",
    "0 0 1 * *",
    "0 0 31 * *",
    "59 23 L * *".replace("L", "28-31"),
    "0 8-18/2 * * MON,WED,FRI",
    "7/20 * * * *",
    "0 0 * DEC SUN",
    "0 22 * * 1-5",
    "30 0 1 JAN-MAR/2 *",
    "@daily",
    "@weekly",
    "@monthly",
    "@yearly",
    "@hourly",
]
ZONES = ["UTC", "Europe/Berlin", "America/New_York", "Australia/Lord_Howe", "Asia/Kolkata"]
STARTS = [
    datetime(2026, 1, 1),
    datetime(2026, 3, 28, 22),  # the night Europe springs forward
    datetime(2026, 3, 7, 23),  # ... and New York
    datetime(2026, 4, 4, 22),  # Lord Howe falls back half an hour
    datetime(2026, 10, 24, 22),  # Europe falls back
    datetime(2026, 10, 31, 23),  # New York falls back
    datetime(2027, 2, 27),
]


def reference(text: str, start: datetime, count: int) -> list[datetime]:
    """croniter's fires, less its second run of a time repeated when clocks fall back.

    crontab(5) (Vixie cron) runs a job at a fixed time once when its hour repeats; croniter
    fires it in both passes. Expressions that run every hour keep both passes.
    """
    every_hour = len(CronExpression.parse(text).hours) == 24
    fires: list[datetime] = []
    iterator = croniter(text, start)
    while len(fires) < count:
        fire = iterator.get_next(datetime)
        if not every_hour and fires and fire.replace(tzinfo=None) == fires[-1].replace(tzinfo=None):
            continue
        fires.append(fire)
    return fires


def ours(text: str, start: datetime, zone: str, count: int) -> list[datetime]:
    expression = CronExpression.parse(text)
    fires, moment = [], start
    for _ in range(count):
        moment = expression.next_fire(moment, zone)
        fires.append(moment)
    return fires


@pytest.mark.parametrize("zone", ZONES)
@pytest.mark.parametrize("text", EXPRESSIONS)
def test_successive_fires_equal_croniters(text, zone):
    if zone == "Australia/Lord_Howe" and len(CronExpression.parse(text).hours) == 24:
        pytest.skip("croniter drops the second pass of Lord Howe's repeated half hour")
    for naive in STARTS:
        start = naive.replace(tzinfo=ZoneInfo(zone))
        expected = [f.astimezone(UTC) for f in reference(text, start, 20)]
        got = [f.astimezone(UTC) for f in ours(text, start, zone, 20)]
        assert got == expected, (text, zone, naive)


# --- daylight-saving changes, explicitly --------------------------------------------------------


def test_a_time_in_the_skipped_hour_fires_when_the_clocks_jump():
    fire = CronExpression.parse("30 2 * * *").next_fire(
        datetime(2026, 3, 28, 3, tzinfo=BERLIN), BERLIN
    )
    assert fire == datetime(2026, 3, 29, 3, 0, tzinfo=BERLIN)
    assert fire.utcoffset() == timedelta(hours=2)


def test_a_time_in_the_repeated_hour_fires_once():
    expression = CronExpression.parse("30 2 * * *")
    first = expression.next_fire(datetime(2026, 10, 24, 12, tzinfo=BERLIN), BERLIN)
    assert first.astimezone(UTC) == datetime(2026, 10, 25, 0, 30, tzinfo=UTC)  # 02:30 CEST
    assert expression.next_fire(first, BERLIN).date() == datetime(2026, 10, 26).date()


def test_every_quarter_hour_runs_through_both_passes_of_the_repeated_hour():
    expression = CronExpression.parse("*/15 * * * *")
    start = datetime(2026, 10, 25, 0, 0, tzinfo=UTC)  # 02:00 CEST
    fires = [(start := expression.next_fire(start, BERLIN)).astimezone(UTC) for _ in range(8)]
    gaps = {b - a for a, b in zip(fires, fires[1:], strict=False)}
    assert gaps == {timedelta(minutes=15)}


def test_half_hour_clock_change_keeps_real_time_for_hourly_expressions():
    lord_howe = ZoneInfo("Australia/Lord_Howe")  # 02:00 +11 becomes 01:30 +10:30
    expression = CronExpression.parse("7/20 * * * *")
    start = datetime(2026, 4, 4, 14, 30, tzinfo=UTC)
    fires = [(start := expression.next_fire(start, lord_howe)).astimezone(UTC) for _ in range(4)]
    minutes = [f.strftime("%H:%M") for f in fires]
    # 01:47 (+11), 01:47 again (+10:30), then 02:07 and 02:27 (+10:30)
    assert minutes == ["14:47", "15:17", "15:37", "15:57"]


def test_next_fire_needs_an_aware_time():
    with pytest.raises(ValueError, match="aware"):
        CronExpression.parse("* * * * *").next_fire(datetime(2026, 1, 1), "UTC")


# --- the APScheduler trigger --------------------------------------------------------------------


def test_trigger_does_not_skip_the_week_after_a_clock_change():
    # APScheduler 3.11's CronTrigger(day_of_week="mon", hour=0) jumps from 29 March to 6 April.
    trigger = CronExpression.parse("0 0 * * MON").trigger(BERLIN)
    fire = trigger.get_next_fire_time(None, datetime(2026, 3, 29, 1, tzinfo=BERLIN))
    assert fire == datetime(2026, 3, 30, 0, 0, tzinfo=BERLIN)


def test_trigger_follows_apschedulers_contract():
    trigger = CronExpression.parse("0 9 * * MON-FRI").trigger("Europe/Berlin")
    monday_nine = datetime(2026, 11, 23, 9, 0, tzinfo=BERLIN)
    assert trigger.get_next_fire_time(None, monday_nine) == monday_nine  # at now counts
    assert trigger.get_next_fire_time(monday_nine, monday_nine) == monday_nine + timedelta(days=1)
    friday = datetime(2026, 11, 27, 9, 0, tzinfo=BERLIN)
    assert trigger.get_next_fire_time(friday, friday) == datetime(2026, 11, 30, 9, tzinfo=BERLIN)


def test_trigger_jitter_only_delays_and_stays_within_bounds():
    trigger = CronExpression.parse("0 9 * * *").trigger("UTC", jitter=60)
    now = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)
    for _ in range(50):
        fire = trigger.get_next_fire_time(None, now)
        assert (
            datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
            <= fire
            <= datetime(2026, 11, 23, 9, 1, tzinfo=UTC)
        )


def test_trigger_survives_pickling_for_persistent_job_stores():
    trigger = CronExpression.parse("0 9 * * MON-FRI").trigger("Europe/Berlin", jitter=5)
    copy = pickle.loads(pickle.dumps(trigger))
    assert isinstance(copy, CrontabTrigger)
    now = datetime(2026, 11, 23, 12, tzinfo=BERLIN)
    assert copy.expression.next_fire(now, BERLIN) == trigger.expression.next_fire(now, BERLIN)
    assert copy.jitter == 5 and str(copy.timezone) == "Europe/Berlin"


# --- fuzzing against croniter -------------------------------------------------------------------


def _field(low: int, high: int, *, star_steps: bool = True) -> st.SearchStrategy[str]:
    number = st.integers(low, high)
    single = number.map(str)
    # croniter reads a one-value range such as "0-0" in the weekday field as "*": avoid it.
    ranged = (
        st.tuples(number, number).filter(lambda p: p[0] != p[1]).map(lambda p: f"{min(p)}-{max(p)}")
    )
    stepped = st.tuples(ranged, st.integers(1, high - low + 1)).map(lambda p: f"{p[0]}/{p[1]}")
    star_step = st.integers(1, high - low + 1).map(lambda n: f"*/{n}")
    element = st.one_of(single, ranged, stepped, *([star_step] if star_steps else []))
    return st.one_of(st.just("*"), st.lists(element, min_size=1, max_size=3).map(",".join))


cron_texts = st.tuples(
    _field(0, 59),
    _field(0, 23),
    # croniter counts "*/n" in a day field as restricted for the OR rule; Vixie cron does not
    _field(1, 28, star_steps=False),
    _field(1, 12),
    _field(0, 7, star_steps=False),
).map(" ".join)


@settings(max_examples=150, deadline=None)
@given(
    cron_texts,
    st.sampled_from(["UTC", "Asia/Tokyo", "Asia/Kolkata"]),
    st.datetimes(min_value=datetime(2020, 1, 1), max_value=datetime(2035, 1, 1)),
)
def test_random_expressions_agree_with_croniter(text, zone, naive):
    start = naive.replace(second=0, microsecond=0, tzinfo=ZoneInfo(zone))
    expected = [f.astimezone(UTC) for f in reference(text, start, 5)]
    got = ours(text, start, zone, 5)
    assert [f.astimezone(UTC) for f in got] == expected
    expression = CronExpression.parse(text)
    assert all(expression.matches(f.replace(tzinfo=None)) for f in got)


# --- intervals and timezones --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("15m", timedelta(minutes=15)),
        ("2h", timedelta(hours=2)),
        ("1d", timedelta(days=1)),
        ("1w", timedelta(weeks=1)),
        ("90s", timedelta(seconds=90)),
        ("1h30m", timedelta(minutes=90)),
        ("1m", timedelta(minutes=1)),
    ],
)
def test_intervals(text, expected):
    assert parse_interval(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("0s", "'0s' is too short: an interval must be at least 1 second"),
        ("0m", "'0m' is too short: an interval must be at least 1 second"),
        ("15", "'15' is not an interval: use a number and a unit s, m, h, d or w"),
        ("soon", "'soon' is not an interval"),
        ("", "'' is not an interval"),
    ],
)
def test_bad_intervals(text, message):
    with pytest.raises(ValueError, match="^" + re.escape(message)):
        parse_interval(text)


def test_timezones():
    assert check_timezone("Europe/Berlin") == BERLIN
    with pytest.raises(
        ValueError,
        match=re.escape(
            "'Europe/Berln' is not a valid IANA timezone; did you mean 'Europe/Berlin'?"
        ),
    ):
        check_timezone("Europe/Berln")
    with pytest.raises(ValueError, match=re.escape("'CEST' is not a valid IANA timezone")):
        check_timezone("CEST")


@pytest.mark.parametrize("text", ["0 9 * * MON-FRI", "*/15 * * * *", "0 0 13 * 5", "@monthly"])
def test_fires_between_counts_what_croniter_yields(text):
    start, end = datetime(2026, 11, 2, tzinfo=UTC), datetime(2026, 12, 2, tzinfo=UTC)
    iterator = croniter(text, start - timedelta(seconds=1))
    expected = 0
    while iterator.get_next(datetime) < end:
        expected += 1
    assert CronExpression.parse(text).fires_between(start.date(), end.date()) == expected
