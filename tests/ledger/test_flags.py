"""Tokenmaxxing flags: each rule fires at its threshold, says why, and names its runs."""

from __future__ import annotations

from datetime import timedelta

import pytest

from meshagent.config import FlagSettings, PrivacySettings
from meshagent.ledger.flags import flags
from meshagent.ledger.periods import Period
from meshagent.ledger.records import Usage

from .helpers import T0, record

ADMIN = PrivacySettings(admins=("root",))
WEEK = Period.week(T0.date())
SETTINGS = FlagSettings(no_reaction_runs=3)


def _at(minutes: int, **overrides):
    started = T0 + timedelta(minutes=minutes)
    values = {"scheduled_for": started, "input_hash": f"h{minutes}", **overrides}
    return record(started_at=started, **values)


def _flags(ledger, **options):
    options.setdefault("viewer", "root")
    found = flags(ledger, period=WEEK, settings=SETTINGS, privacy=ADMIN, **options)
    return {(flag.rule, flag.subject): flag for flag in found}


def test_quiet_agents_raise_no_flag(ledger):
    ledger.write_records([_at(i, agent="quiet") for i in range(2)])
    assert _flags(ledger) == {}


def test_runs_with_no_outcome(ledger):
    ids = ledger.write_records([_at(i, agent="noisy", outcomes=()) for i in range(3)])
    flag = _flags(ledger)["no_outcome", "noisy"]
    assert flag.run_ids == tuple(ids)
    assert flag.reason == "noisy: 3 runs spent tokens and produced no outcome (flagged from 3)"


def test_reruns_on_unchanged_input(ledger):
    ids = ledger.write_records([_at(i, agent="same", input_hash="x") for i in range(3)])
    flag = _flags(ledger)["unchanged_rerun", "same"]
    assert flag.run_ids == tuple(ids[1:]) and "2 runs spent tokens on the same input" in flag.reason


def test_a_majority_of_negative_feedback(ledger):
    (run_id,) = ledger.write_records([_at(0, agent="bad")])
    for person, vote in (("a", -1), ("b", -1), ("c", 1)):
        ledger.add_feedback(run_id, person, vote)
    assert _flags(ledger)["negative_feedback", "bad"].run_ids == (run_id,)


def test_tokens_far_above_the_agents_median(ledger):
    small = [_at(i, agent="big", usage=Usage(input_tokens=100)) for i in range(5)]
    ids = ledger.write_records([*small, _at(9, agent="big", usage=Usage(input_tokens=600))])
    flag = _flags(ledger)["token_outlier", "big"]
    assert flag.run_ids == (ids[-1],) and "over 5x the agent's median tokens" in flag.reason


def test_an_owners_burst_of_tokens(ledger):
    before = [_at(-60 * 24 * d, owner="o", usage=Usage(input_tokens=100)) for d in range(1, 15)]
    ids = ledger.write_records([*before, _at(0, owner="o", usage=Usage(input_tokens=5000))])
    flag = _flags(ledger)["burst", "o"]
    assert flag.run_ids == (ids[-1],)
    assert flag.reason == "o: 5,000 tokens on 2025-03-03, over 3x their 14-day average of 100"


def test_delivered_output_that_drew_no_reaction(ledger):
    ids = ledger.write_records([_at(i, agent="ignored") for i in range(3)])
    assert _flags(ledger)["no_reaction", "ignored"].run_ids == tuple(ids)
    ledger.add_feedback(ids[0], "x", 1)
    assert ("no_reaction", "ignored") not in _flags(ledger)


def test_spend_outside_the_declared_schedule(ledger):
    late = record(agent="cron", started_at=T0 + timedelta(minutes=30), scheduled_for=T0)
    on_time = _at(60, agent="cron")
    late_id, on_time_id = ledger.write_records([late, on_time])
    assert _flags(ledger)["off_schedule", "cron"].run_ids == (late_id,)
    never = _flags(ledger, schedule_check=lambda agent, when: False)
    assert never["off_schedule", "cron"].run_ids == (late_id, on_time_id)


@pytest.mark.parametrize("viewer, seen", [("alice", True), ("bob", False), (None, False)])
def test_flags_on_a_persons_runs_are_shown_to_them_and_admins(ledger, viewer, seen):
    ledger.write_records([_at(i, agent="noisy", outcomes=()) for i in range(3)])
    assert (("no_outcome", "noisy") in _flags(ledger, viewer=viewer)) is seen
