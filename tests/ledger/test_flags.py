"""Flags: each rule fires on the gaming case, stays quiet on the honest one that looks like it,
and names the agent, the owner, the people, the dollars, the evidence and the fix."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest

from meshagent.config import FlagSettings, PrivacySettings
from meshagent.ledger import people, verdicts
from meshagent.ledger.flags import flag_report, flags
from meshagent.ledger.periods import Period
from meshagent.ledger.records import PLANNED, QUIET, Outcome, Usage

from .helpers import T0, cost, record

ADMIN = PrivacySettings(admins=("root",))
WEEK = Period.week(T0.date())
DEFAULTS = FlagSettings()
DIME = cost("0.10")


def _at(minutes: float, **overrides):
    started = T0 + timedelta(minutes=minutes)
    values = {"scheduled_for": started, "input_hash": f"h{minutes}", "cost": DIME, **overrides}
    return record(started_at=started, **values)


def _flags(ledger, **options):
    options.setdefault("viewer", "root")
    options.setdefault("settings", DEFAULTS)
    found = flags(ledger, period=WEEK, privacy=ADMIN, **options)
    return {(flag.rule, flag.subject): flag for flag in found}


def _rules(ledger, **options):
    return {rule for rule, _ in _flags(ledger, **options)}


def test_an_honest_daily_digest_raises_no_flag(ledger):
    ledger.write_records([_at(60 * 24 * d, agent="digest") for d in range(-20, 5)])
    assert _flags(ledger) == {}


def test_runs_with_no_outcome(ledger):
    ids = ledger.write_records([_at(i, agent="noisy", outcomes=()) for i in range(12)])
    flag = _flags(ledger)["no_outcome", "noisy"]
    assert flag.run_ids == tuple(ids)
    assert flag.reason == "noisy: 12 of 12 runs spent tokens and produced nothing ($1.20)"
    assert (flag.owner, flag.accountable, flag.usd, flag.kind) == (
        "alice",
        "alice",
        Decimal("1.20"),
        "waste",
    )
    assert flag.fix.startswith("declare a quiet result") and flag.innocent and flag.evidence


@pytest.mark.parametrize(
    "made, status",
    [
        ((Outcome(QUIET, "nothing new"),), "ok"),  # a monitor that found nothing, and said so
        ((Outcome(PLANNED, "slack.post_message #x"),), "ok"),  # dry runs
        ((), "failed"),  # failures are reliability, apart
    ],
)
def test_quiet_results_dry_runs_and_failures_are_not_no_outcome(ledger, made, status):
    ledger.write_records([_at(i, agent="monitor", outcomes=made, status=status) for i in range(12)])
    found = _flags(ledger)
    assert ("no_outcome", "monitor") not in found
    if status == "failed":
        assert found["failing", "monitor"].kind == "reliability"


def test_a_few_empty_runs_or_cheap_ones_are_not_flagged(ledger):
    ledger.write_records([_at(i, agent="few", outcomes=()) for i in range(9)])
    cheap = cost("0.001")
    ledger.write_records([_at(i, agent="cheap", outcomes=(), cost=cheap) for i in range(50)])
    assert _flags(ledger) == {}


def test_reruns_on_unchanged_input(ledger):
    dearer = cost("0.20")
    same = [_at(i, agent="same", input_hash="x", cost=dearer) for i in range(5)]
    ids = ledger.write_records(same)
    flag = _flags(ledger)["unchanged_rerun", "same"]
    assert flag.run_ids == tuple(ids[1:]) and flag.usd == Decimal("0.80")
    assert flag.fix == "turn on skip_if_unchanged: $0.80 this period"


def test_retries_after_failures_and_other_peoples_requests_are_not_reruns(ledger):
    runs = []
    for i in range(4):  # ok, failed, ok (a retry), ... on the same input
        runs.append(_at(2 * i, agent="flaky", input_hash="x", status="failed"))
        runs.append(_at(2 * i + 1, agent="flaky", input_hash="x"))
    asked = [
        _at(i, agent="helper", input_hash="x", trigger_kind="slash", triggered_by=f"p{i}")
        for i in range(6)
    ]
    ledger.write_records(runs + asked)
    assert "unchanged_rerun" not in _rules(ledger)


def test_a_majority_of_rejections(ledger):
    (run_id,) = ledger.write_records([_at(0, agent="bad")])
    for person, vote in (("a", -1), ("b", -1), ("c", -1), ("d", 1)):
        ledger.add_feedback(run_id, person, vote)
    assert _flags(ledger)["negative_feedback", "bad"].run_ids == (run_id,)


def test_a_few_thumbs_down_among_acceptances_are_not_flagged(ledger):
    (run_id,) = ledger.write_records([_at(0, agent="liked")])
    for person, vote in (("a", -1), ("b", 1), ("c", 1), ("d", 1)):
        ledger.add_feedback(run_id, person, vote)
    assert "negative_feedback" not in _rules(ledger)


def _peers_and_past(ledger, agent, tokens_now, tokens_before):
    runs = []
    for peer in ("p1", "p2", "p3"):
        runs += [_at(i, agent=peer, usage=Usage(input_tokens=1000)) for i in range(5)]
    past = [
        _at(-60 * 24 * d, agent=agent, usage=Usage(input_tokens=tokens_before))
        for d in range(1, 10)
    ]
    now = [
        _at(i, agent=agent, usage=Usage(input_tokens=tokens_now), cost=cost("0.5"))
        for i in range(5)
    ]
    ledger.write_records(runs + past + now)


def test_tokens_far_above_peers_and_the_agents_own_past(ledger):
    _peers_and_past(ledger, "padded", tokens_now=20_000, tokens_before=1000)
    flag = _flags(ledger)["token_outlier", "padded"]
    assert "20.0x agents tagged toil and 20.0x its own past" in flag.reason
    assert flag.usd == Decimal("2.38")  # 2.50 spent, 1/20 of it the usual


def test_an_agent_that_was_always_expensive_is_not_an_outlier(ledger):
    _peers_and_past(ledger, "release-notes", tokens_now=20_000, tokens_before=18_000)
    assert "token_outlier" not in _rules(ledger)


def _usual_days(ledger, agent, days=20):
    ledger.write_records(
        [_at(-60 * 24 * d, agent=agent, cost=DIME, outcomes=()) for d in range(1, days + 1)]
    )


def _burst(ledger, agent, people_=("alice",), accepted=False, n=30):
    ids = ledger.write_records(
        [
            _at(i, agent=agent, trigger_kind="slash", triggered_by=people_[i % len(people_)])
            for i in range(n)
        ]
    )
    if accepted:
        outcome = verdicts.outcome_ids(ledger, ids[:1])[ids[0]][0]
        ledger.set_verdict(outcome, "accepted", [{"who": "zed", "what": "reply"}], T0)
    return ids


def test_a_burst_against_the_agents_own_cadence(ledger):
    _usual_days(ledger, "spiky")
    ids = _burst(ledger, "spiky")
    flag = _flags(ledger)["burst", "spiky"]
    assert flag.run_ids == tuple(ids) and flag.usd == Decimal("2.90")
    assert flag.reason.startswith("spiky: $3.00 on 2025-03-03, over 5x the agent's usual day")


@pytest.mark.parametrize(
    "history, people_, accepted",
    [
        (3, ("alice",), False),  # a brand-new agent: no cadence yet
        (20, ("alice",), True),  # the burst delivered an accepted outcome
        (20, ("bob", "carol", "dave", "erin"), False),  # an incident: many people asked
    ],
)
def test_honest_bursts(ledger, history, people_, accepted):
    _usual_days(ledger, "spiky", days=history)
    _burst(ledger, "spiky", people_=people_, accepted=accepted, n=30 if history > 3 else 30)
    assert "burst" not in _rules(ledger)


def test_outputs_nobody_else_can_see(ledger):
    alone = Outcome("slack.message", "G1:1", audience="private", audience_size=1)
    alone = Outcome(
        alone.kind, alone.ref, audience="private", audience_size=1, reaches_others=False
    )
    ids = ledger.write_records([_at(i, agent="diary", outcomes=(alone,)) for i in range(6)])
    flag = _flags(ledger)["unread", "diary"]
    assert flag.run_ids == tuple(ids) and "nobody but their owner could see" in flag.reason


def test_ephemeral_answers_to_the_person_who_asked_are_an_audience(ledger):
    answer = Outcome("slack.ephemeral", "C1:u", audience="ephemeral", audience_size=1)
    runs = [
        _at(
            i * 30,
            agent="helper",
            trigger_kind="slash",
            triggered_by=f"p{i % 5}",
            outcomes=(
                Outcome(
                    answer.kind,
                    f"C1:{i}",
                    audience="ephemeral",
                    audience_size=1,
                    reaches_others=True,
                ),
            ),
        )
        for i in range(20)
    ]
    ledger.write_records(runs)
    assert _flags(ledger) == {}


def _checked_outputs(ledger, agent, n, accept_one=False):
    runs = [_at(60 * 4 * i - 60 * 24 * 20, agent=agent) for i in range(n)]
    ids = ledger.write_records(runs)
    outcome_ids = verdicts.outcome_ids(ledger, ids)
    items = [
        {"outcome_id": o, "verdict": "ignored", "evidence": [], "checked_at": T0}
        for run_id in ids
        for o in outcome_ids[run_id]
    ]
    if accept_one:
        items[-1] = {
            **items[-1],
            "verdict": "accepted",
            "evidence": [{"who": "x", "what": "reply"}],
        }
    verdicts.set_verdicts(ledger, items)


def test_a_volume_of_outputs_nobody_engaged_with(ledger):
    _checked_outputs(ledger, "shouting", 150)
    flag = _flags(ledger)["unread", "shouting"]
    assert "none engaged with by anyone but its owner" in flag.reason


def test_one_reply_in_a_month_is_engagement(ledger):
    _checked_outputs(ledger, "read", 150, accept_one=True)
    assert "unread" not in _rules(ledger)


def test_self_votes_count_a_persons_every_identity(ledger):
    people.link(ledger, "alice", "U0ALICE01", "alice@example.com")
    ids = ledger.write_records([_at(i, agent="vain") for i in range(3)])
    for run_id, name in zip(ids, ("U0ALICE01", "Alice@Example.com", "alice"), strict=True):
        ledger.add_feedback(run_id, name, 1)
    flag = _flags(ledger)["self_vote", "vain"]
    assert flag.accountable == "alice@example.com" and flag.run_ids == tuple(ids)


def test_votes_by_other_people_are_not_self_votes(ledger):
    ids = ledger.write_records([_at(i, agent="liked") for i in range(3)])
    for run_id, name in zip(ids, ("bob", "carol", "U0DAVE001"), strict=True):
        ledger.add_feedback(run_id, name, 1)
    assert _flags(ledger) == {}


def test_claims_the_fires_cannot_support(ledger):
    runs = [_at(5 * i, agent="poller", minutes_saved=30, cost=cost("0.01")) for i in range(300)]
    ledger.write_records(runs)
    flag = _flags(ledger)["claimed_value", "poller"]
    assert "claims 9,000 minutes saved" in flag.reason


def test_a_weekly_report_may_claim_hours(ledger):
    ledger.write_records([_at(0, agent="weekly", minutes_saved=240)])
    assert _flags(ledger) == {}


def test_one_task_split_into_many_runs(ledger):
    runs = [
        _at(i / 2, agent="summarise", trigger_kind="api", triggered_by="bob", input_hash=f"{i}")
        for i in range(12)
    ]
    ids = ledger.write_records(runs)
    flag = _flags(ledger)["split_task", "summarise"]
    assert flag.accountable == "bob" and flag.run_ids == tuple(ids) and flag.people == ("bob",)


def test_requests_minutes_apart_are_not_a_split(ledger):
    runs = [
        _at(10 * i, agent="summarise", trigger_kind="api", triggered_by="bob") for i in range(12)
    ]
    ledger.write_records(runs)
    assert _flags(ledger) == {}


def test_a_teammate_looping_a_slash_agent_is_named(ledger):
    loops = [
        _at(15 * i, agent="helper", trigger_kind="slash", triggered_by="bob") for i in range(30)
    ]
    ledger.write_records(loops)
    flag = _flags(ledger)["slash_loop", "helper"]
    assert (flag.accountable, flag.owner, flag.people) == ("bob", "alice", ("bob",))
    assert flag.reason.startswith("bob ran /helper 30 times on 2025-03-03")


def test_a_heavy_user_is_not_a_looper(ledger):
    asks = [
        _at(40 * i, agent="helper", trigger_kind="slash", triggered_by="bob") for i in range(12)
    ]
    ledger.write_records(asks)
    assert _flags(ledger) == {}


def test_spend_outside_the_declared_schedule(ledger):
    late = [
        record(
            agent="cron",
            started_at=T0 + timedelta(hours=h, minutes=30),
            scheduled_for=T0 + timedelta(hours=h),
        )
        for h in range(3)
    ]
    late_ids = ledger.write_records(late)
    on_time = ledger.write_records([_at(600, agent="cron")])
    assert _flags(ledger)["off_schedule", "cron"].run_ids == tuple(late_ids)
    never = _flags(ledger, schedule_check=lambda agent, when: False)
    assert never["off_schedule", "cron"].run_ids == (*late_ids, *on_time)


def test_one_late_start_is_not_a_flag(ledger):
    ledger.write_records(
        [record(agent="cron", started_at=T0 + timedelta(minutes=30), scheduled_for=T0)]
    )
    assert _flags(ledger) == {}


def test_flags_are_ranked_by_dollars_and_strength(ledger):
    ledger.write_records([_at(i, agent="small", outcomes=()) for i in range(12)])
    ledger.write_records([_at(i, agent="big", outcomes=(), cost=cost("1.00")) for i in range(12)])
    found = flags(ledger, period=WEEK, privacy=ADMIN, viewer="root")
    assert [f.subject for f in found] == ["big", "small"]


@pytest.mark.parametrize(
    "viewer, subjects, scope",
    [
        ("root", {"noisy", "helper"}, "every flag (admin: root)"),
        ("alice", {"noisy", "helper"}, "flags on runs owned or triggered by alice"),
        ("U0BOB0001", {"helper"}, "flags on runs owned or triggered by bob@example.com"),
        ("carol", set(), "flags on runs owned or triggered by carol"),
        (None, set(), "no flags: nobody is viewing (give a viewer)"),
    ],
)
def test_a_person_sees_the_flags_on_runs_they_own_or_triggered(ledger, viewer, subjects, scope):
    people.link(ledger, "bob@example.com", "U0BOB0001")
    ledger.write_records([_at(i, agent="noisy", outcomes=()) for i in range(12)])
    ledger.write_records(
        [
            _at(15 * i, agent="helper", trigger_kind="slash", triggered_by="bob@example.com")
            for i in range(30)
        ]
    )
    report = flag_report(ledger, period=WEEK, settings=DEFAULTS, viewer=viewer, privacy=ADMIN)
    assert {f.subject for f in report.flags} == subjects and report.scope == scope


def test_an_askers_vote_on_their_own_ephemeral_answer_is_not_a_self_vote(ledger):
    answer = Outcome("slack.ephemeral", "C1:u", audience="ephemeral", audience_size=1)
    ids = ledger.write_records(
        [
            _at(i, agent="helper", trigger_kind="slash", triggered_by="bob", outcomes=(answer,))
            for i in range(4)
        ]
    )
    for run_id in ids:
        ledger.add_feedback(run_id, "bob", 1)
    assert _flags(ledger) == {}
    # The owner asking their own helper: their say on an answer nobody else saw either.
    mine = ledger.write_records(
        [
            _at(10 + i, agent="helper", trigger_kind="slash", triggered_by="alice",
                outcomes=(answer,))
            for i in range(4)
        ]
    )  # fmt: skip
    for run_id in mine:
        ledger.add_feedback(run_id, "alice", 1)
    assert _flags(ledger) == {}
    # Her votes on her helper's answers to bob are self-votes.
    for run_id in ids[:3]:
        ledger.add_feedback(run_id, "alice", 1)
    assert _rules(ledger) == {"self_vote"}


def test_one_person_on_call_asking_about_each_thread_is_demand_not_a_burst(ledger):
    _usual_days(ledger, "incidents")
    _burst(ledger, "incidents", people_=("bob",))  # each run on another thread: its own input
    assert "burst" not in _rules(ledger)


def test_one_person_asking_the_same_again_and_again_is_a_burst(ledger):
    _usual_days(ledger, "incidents")
    ids = ledger.write_records(
        [
            _at(i, agent="incidents", trigger_kind="slash", triggered_by="bob", input_hash="x")
            for i in range(20)
        ]
    )
    flag = _flags(ledger)["burst", "incidents"]
    assert flag.accountable == "bob" and flag.run_ids == tuple(ids)
    assert flag.reason.startswith("bob's runs of incidents: $2.00 on 2025-03-03")


PENNY = cost("0.002")


def _daily(agent, days, per_day=1, **overrides):
    """`per_day` runs on each of `days` days before (negative) or in the week."""
    return [
        _at(60 * 24 * day + 30 * i, agent=agent, **{"cost": PENNY, **overrides})
        for day in days
        for i in range(per_day)
    ]


def test_a_cheap_habit_is_flagged_whatever_it_costs(ledger):
    alone = Outcome("slack.message", "G1:1", audience="private", reaches_others=False)
    ledger.write_records(_daily("diary", range(-21, 5), outcomes=(alone,)))
    ledger.write_records(_daily("mute", range(-21, 5), per_day=2, outcomes=()))
    found = _flags(ledger)
    assert found["unread", "diary"].usd == Decimal("0.01")  # 5 runs this week at $0.002
    assert found["unread", "diary"].reason.startswith("diary: 5 outputs that nobody but")
    assert found["no_outcome", "mute"].usd == Decimal("0.02")
    # The dollar floor alone would let both pass: only the habit raises them.
    assert _flags(ledger, settings=FlagSettings(habit_runs=1000)) == {}


def test_a_cheap_spree_of_one_week_is_no_habit(ledger):
    ledger.write_records(_daily("spree", range(5), per_day=10, outcomes=()))
    assert _flags(ledger) == {}


def test_a_cheap_pattern_now_and_then_is_no_habit(ledger):
    # An honest digest re-running on the same input now and then: 3 a week, cheaply.
    runs = _daily("digest", [d for d in range(-21, 5) if d % 7 in (1, 2, 3)], input_hash="x")
    ledger.write_records(runs)
    assert _flags(ledger) == {}
    # Every working day for four weeks is a habit: skip_if_unchanged would save it.
    ledger.write_records(_daily("poller", range(-21, 5), per_day=2, input_hash="y"))
    assert "turn on skip_if_unchanged" in _flags(ledger)["unchanged_rerun", "poller"].fix


def test_self_votes_add_up_over_the_weeks_before(ledger):
    before = ledger.write_records([_at(-60 * 24 * d, agent="vain") for d in (6, 13)])
    now = ledger.write_records([_at(60, agent="vain")])
    for run_id in (*before, *now):
        ledger.add_feedback(run_id, "alice", 1)
    flag = _flags(ledger)["self_vote", "vain"]
    assert flag.run_ids == tuple(now) and "2 more in the 28 days before" in flag.evidence
    # Two self-votes this week and none before are an owner trying the buttons.
    tried = ledger.write_records([_at(90 + i, agent="tried") for i in range(2)])
    for run_id in tried:
        ledger.add_feedback(run_id, "alice", 1)
    assert ("self_vote", "tried") not in _flags(ledger)
