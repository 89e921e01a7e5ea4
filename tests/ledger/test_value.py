"""Observed value: the verdict rule, verdicts and their checks, evidenced minutes, honest adoption,
and an old ledger upgraded in place."""

from __future__ import annotations

import json
from datetime import timedelta
from decimal import Decimal

import pytest
from alembic import command
from sqlalchemy import select

from meshagent.config import PrivacySettings, ValueSettings
from meshagent.exceptions import LedgerError
from meshagent.ledger import Ledger, people, reports, value, verdicts
from meshagent.ledger.migrate import _config
from meshagent.ledger.periods import Period
from meshagent.ledger.records import FINAL_CHECK, FIRST_CHECK, PLANNED, QUIET, Outcome
from meshagent.ledger.schema import outcomes
from meshagent.ledger.verdicts import Evidence, judge

from .helpers import T0, record

WEEK = Period.week(T0.date())
ADMIN = PrivacySettings(admins=("root",))
OWNER = {"alice", "U0ALICE01", "bob"}  # the owner's identities and the triggerer


def _judge(*items, final=True):
    return judge(items, excluded=lambda who: who in OWNER, final=final).verdict


@pytest.mark.parametrize(
    "items, final, verdict",
    [
        ((), False, "pending"),
        ((), True, "ignored"),
        ((Evidence("carol", "reaction:eyes"),), False, "accepted"),  # any reaction
        ((Evidence("carol", "reply"),), True, "accepted"),
        ((Evidence("alice", "reaction:+1"), Evidence("bob", "reply")), True, "ignored"),
        ((Evidence("U0ALICE01", "vote:+1"),), True, "ignored"),  # a self-vote is no evidence
        ((Evidence("U0BOT0001", "reply", bot=True),), True, "ignored"),
        ((Evidence("carol", "reaction:+1"), Evidence(None, "deleted")), True, "rejected"),
        ((Evidence("alice", "jira.resolution:Won't Do"),), True, "rejected"),  # owner's no
        ((Evidence("carol", "jira.resolution:Done"),), True, "accepted"),
        (
            (Evidence("carol", "reaction:-1"), Evidence("dave", "reaction:thumbsdown")),
            True,
            "rejected",
        ),
        ((Evidence("carol", "reaction:-1"), Evidence("dave", "reply")), True, "accepted"),
    ],
)
def test_the_verdict_rule(items, final, verdict):
    assert _judge(*items, final=final) == verdict


def test_the_evidence_kept_says_what_was_left_out_and_why():
    judged = judge(
        [Evidence("alice", "reaction:+1"), {"who": "carol", "what": "reply"}],
        excluded=lambda who: who == "alice",
        final=True,
    )
    assert judged.evidence == (
        {"who": "alice", "what": "reaction:+1", "when": None, "counted": False,
         "why": "owner or triggerer"},
        {"who": "carol", "what": "reply", "when": None, "counted": True},
    )  # fmt: skip


def _one(ledger, **overrides):
    (run_id,) = ledger.write_records([record(**overrides)])
    return run_id, verdicts.outcome_ids(ledger, [run_id])[run_id]


def test_outcomes_are_due_after_a_day_and_final_after_a_week(ledger):
    run_id, (outcome_id,) = _one(ledger)
    made = T0 + timedelta(seconds=3)  # a batch's outcomes are made when the run finished
    assert verdicts.due(ledger, now=made + FIRST_CHECK - timedelta(seconds=1)) == []
    (item,) = verdicts.due(ledger, now=made + FIRST_CHECK)
    assert (item.id, item.run_id, item.owner, item.agent) == (outcome_id, run_id, "alice", "digest")
    judged = verdicts.judge_outcome(ledger, item, [], checked_at=made + FIRST_CHECK)
    assert judged.verdict == "pending"
    (again,) = verdicts.due(ledger, now=made + FINAL_CHECK)
    assert again.next_check_at == made + FINAL_CHECK
    people.link(ledger, "alice", "U0ALICE01")
    late = made + FINAL_CHECK
    found = [Evidence("U0ALICE01", "reaction:+1", late), Evidence("carol", "reply", late)]
    assert verdicts.judge_outcome(ledger, again, found, checked_at=late).verdict == "accepted"
    assert verdicts.due(ledger, now=made + timedelta(days=30)) == []
    row = ledger.read(lambda c: c.execute(select(outcomes).where(outcomes.c.id == outcome_id))
                      .mappings().one())  # fmt: skip
    assert row["verdict"] == "accepted" and row["checked_at"] == late
    assert [item["counted"] for item in json.loads(row["evidence"])] == [False, True]


def test_plans_and_quiet_results_are_never_checked(ledger):
    _one(ledger, outcomes=(Outcome(PLANNED, "slack.post_message #x"), Outcome(QUIET, "no news")))
    assert verdicts.due(ledger, now=T0 + timedelta(days=30)) == []


def test_a_verdict_must_be_one_of_four(ledger):
    _, (outcome_id,) = _one(ledger)
    with pytest.raises(LedgerError, match="verdict 'great' is not one of accepted, rejected"):
        ledger.set_verdict(outcome_id, "great")
    with pytest.raises(LedgerError, match="outcome 99999 is not in the ledger"):
        ledger.set_verdict(99999, "accepted")


def test_reach_is_recorded_with_the_outcome(ledger):
    jira = Outcome(
        "jira.issue",
        "OPS-7",
        audience="jira",
        audience_size=4,
        reaches_others=True,
        reach_detail={"project": "OPS", "reporter": "alice", "watchers": ["bob", "carol"]},
    )
    run_id, _ = _one(ledger, outcomes=(jira,))
    ledger.add_outcome(run_id, "slack.ephemeral", "C1:u", audience="ephemeral", audience_size=1,
                       reaches_others=False)  # fmt: skip
    rows = ledger.read(lambda c: c.execute(select(outcomes).order_by(outcomes.c.id)).mappings()
                       .all())  # fmt: skip
    assert [(r["audience"], r["audience_size"], r["reaches_others"]) for r in rows] == [
        ("jira", 4, True),
        ("ephemeral", 1, False),
    ]
    assert json.loads(rows[0]["reach_detail"])["watchers"] == ["bob", "carol"]
    assert ledger.outcomes(run_id)[0] == Outcome("jira.issue", "OPS-7")  # old readers: as before


def _accept(ledger, run_ids, who="carol"):
    found = verdicts.outcome_ids(ledger, run_ids)
    verdicts.judge_many(
        ledger,
        {o: [Evidence(who, "reply")] for run_id in run_ids for o in found[run_id]},
        checked_at=T0 + timedelta(days=8),
    )


def test_evidenced_minutes_are_credited_once_per_fire_or_request(ledger):
    fires = [record(started_at=T0 + timedelta(days=d), scheduled_for=T0 + timedelta(days=d),
                    input_hash=f"day{d}") for d in range(3)]  # fmt: skip
    split = [
        record(agent="split", started_at=T0 + timedelta(seconds=30 * i), trigger_kind="api",
               triggered_by="dave", scheduled_for=None, minutes_saved=30)
        for i in range(40)
    ]  # fmt: skip
    ids = ledger.write_records(fires + split)
    _accept(ledger, ids[:2] + ids[3:13])  # two fires, ten parts of one task
    made = value.credits(ledger, WEEK)
    assert [(c.agent, c.minutes, len(c.run_ids)) for c in made] == [
        ("digest", Decimal(15), 1),
        ("digest", Decimal(15), 1),
        ("split", Decimal("7.50"), 10),  # one request: 10 of its 40 runs taken up
    ]
    rows = {row.group: row for row in value.headline(ledger, period=WEEK)}
    assert rows["split"].minutes_claimed == Decimal(1200)  # 40 runs x 30 claimed
    split = rows["split"]
    assert (split.minutes_evidenced, split.accepted_outcomes) == (Decimal("7.5"), 1)
    assert rows["digest"].cost_per_accepted == Decimal("0.0018")  # 3 x 0.0012 / 2


def test_evidenced_minutes_are_capped_per_agent_and_week(ledger):
    runs = [record(started_at=T0 + timedelta(hours=h), scheduled_for=T0 + timedelta(hours=h),
                   minutes_saved=100, input_hash=f"h{h}") for h in range(30)]  # fmt: skip
    _accept(ledger, ledger.write_records(runs))
    capped = value.credits(ledger, WEEK, value=ValueSettings(weekly_cap_minutes=600))
    assert len(capped) == 30 and sum(c.minutes for c in capped) == Decimal(600)


def test_self_votes_and_owner_engagement_earn_nothing(ledger):
    people.link(ledger, "alice", "U0ALICE01")
    mine, voted, theirs = ledger.write_records(
        [record(started_at=T0 + timedelta(hours=h), scheduled_for=T0 + timedelta(hours=h),
                input_hash=f"h{h}") for h in range(3)]
    )  # fmt: skip
    _accept(ledger, [mine], who="U0ALICE01")
    ledger.add_feedback(voted, "alice", 1)
    ledger.add_feedback(theirs, "erin", 1)
    assert [c.run_ids for c in value.credits(ledger, WEEK)] == [(theirs,)]


def test_the_report_leads_with_evidenced_figures_and_honest_adoption(ledger):
    ids = ledger.write_records(
        [record(triggered_by=who, trigger_kind="slash", scheduled_for=None,
                started_at=T0 + timedelta(hours=h)) for h, who in enumerate(["bob", "carol"])]
    )  # fmt: skip
    _accept(ledger, ids[:1], who="zed")
    report = reports.summary(ledger, by="agent", period=WEEK, viewer="root", privacy=ADMIN)
    (row,) = report.rows
    evidence = report.evidence_of(row)
    assert (evidence.accepted_outcomes, evidence.minutes_evidenced) == (1, Decimal(15))
    assert (evidence.minutes_claimed, row.minutes_saved) == (Decimal(30), Decimal(30))
    assert evidence.cost_per_accepted == Decimal("0.0024")
    (week,) = reports.adoption(ledger, period=WEEK, viewer="root", privacy=ADMIN)
    assert (week.people_honest, week.people_with_outcome) == (1, 2)


def test_an_old_ledger_upgrades_in_place_with_its_outcomes_pending(ledger_url):
    with Ledger.open(ledger_url) as ledger:
        ids = ledger.write_records([record(), record(started_at=T0 + timedelta(hours=1))])
        config = _config()
        with ledger.engine.begin() as connection:
            config.attributes["connection"] = connection
            command.downgrade(config, "0005")  # as it was before 0006
    with Ledger.open(ledger_url) as ledger:  # opening migrates
        rows = ledger.read(lambda c: c.execute(select(outcomes.c.verdict, outcomes.c.audience))
                           .all())  # fmt: skip
        assert rows == [("pending", None), ("pending", None)]
        assert ledger.verify().ok and ledger.count() == len(ids)
        _accept(ledger, ids[:1])
        assert ledger.verify().ok  # verdicts are not in the chained entry


def _asked(asker, minutes, **overrides):
    answer = Outcome("slack.ephemeral", f"C1:{minutes}", audience="ephemeral", audience_size=1)
    values = {"trigger_kind": "slash", "triggered_by": asker, "scheduled_for": None}
    values.update(started_at=T0 + timedelta(minutes=minutes), outcomes=(answer,), **overrides)
    return record(**values)


def test_an_answer_for_the_asker_alone_is_theirs_to_accept_but_no_adoption(ledger):
    theirs, owners = ledger.write_records([_asked("bob", 0), _asked("alice", 60)])
    ledger.add_feedback(theirs, "bob", 1)  # the asker is not the owner: the only one who saw it
    ledger.add_feedback(owners, "alice", 1)  # the owner asking their own agent: no evidence
    (credit,) = value.credits(ledger, WEEK)
    assert credit.run_ids == (theirs,) and not credit.reached_others
    (week,) = reports.adoption(ledger, period=WEEK, viewer="root", privacy=ADMIN)
    assert week.people_honest == 0


def test_the_same_question_again_the_same_day_is_one_request(ledger):
    ids = ledger.write_records(
        [_asked("bob", 30 * i, input_hash="same") for i in range(3)] + [_asked("bob", 200)]
    )
    for run_id in ids:
        ledger.add_feedback(run_id, "bob", 1)
    assert sorted(len(c.run_ids) for c in value.credits(ledger, WEEK)) == [1, 3]


def test_a_fire_earns_at_most_the_minutes_between_fires(ledger):
    runs = [record(started_at=T0 + timedelta(minutes=15 * i), minutes_saved=120,
                   scheduled_for=T0 + timedelta(minutes=15 * i), input_hash=f"{i}")
            for i in range(8)]  # fmt: skip
    _accept(ledger, ledger.write_records(runs)[:2])
    assert [c.minutes for c in value.credits(ledger, WEEK)] == [Decimal(15), Decimal(15)]


def test_a_fire_claiming_more_than_its_schedule_is_held_to_its_peers(ledger):
    """Every 15 minutes, claiming 120 per fire: the schedule supports 15/120 of the claim, and
    the claim itself is held to 2 x the median of its tag's agents (15, 15, 120: 15)."""
    runs = [record(started_at=T0 + timedelta(minutes=15 * i), minutes_saved=120,
                   scheduled_for=T0 + timedelta(minutes=15 * i), input_hash=f"{i}")
            for i in range(8)]  # fmt: skip
    peers = [record(agent=f"peer{n}", started_at=T0 + timedelta(days=1)) for n in range(2)]
    silent = [record(agent=f"unclaimed{n}", minutes_saved=0) for n in range(3)]  # not peers
    ids = ledger.write_records(runs + peers + silent)
    _accept(ledger, ids[:2])
    # 120 held to 2 x 15 = 30, of which the schedule supports 15/120: 3.75 a fire
    assert [c.minutes for c in value.credits(ledger, WEEK)] == [Decimal("3.75")] * 2
    lenient = value.credits(ledger, WEEK, value=ValueSettings(peer_claim_factor=8))
    assert [c.minutes for c in lenient] == [Decimal(15)] * 2  # 120 is within 8 x 15


def test_a_claim_the_schedule_supports_is_credited_whatever_its_peers_claim(ledger):
    """A daily report claiming 120 minutes, 12 x its peers' 10: the schedule supports it."""
    daily = [record(agent="report", minutes_saved=120, started_at=T0 + timedelta(days=d),
                    input_hash=f"d{d}") for d in range(2)]  # fmt: skip
    digests = [record(agent=f"digest{n}", minutes_saved=10) for n in range(3)]
    ids = ledger.write_records([*daily, *digests])
    _accept(ledger, ids[:2])
    assert [c.minutes for c in value.credits(ledger, WEEK)] == [Decimal(120)] * 2


def test_quiet_results_and_failures_are_no_evidence_of_silence(ledger):
    """A monitor that rightly says nothing is not ignored output: only delivered outputs that
    were checked, and runs that spent tokens on nothing, are judged."""
    quiet = [record(agent="monitor", started_at=T0 + timedelta(hours=h),
                    scheduled_for=T0 + timedelta(hours=h), input_hash=f"q{h}",
                    outcomes=(Outcome(QUIET, "all clear"),)) for h in range(30)]  # fmt: skip
    alert = record(agent="monitor", started_at=T0 + timedelta(hours=40),
                   scheduled_for=T0 + timedelta(hours=40), input_hash="alert")  # fmt: skip
    failed = record(agent="monitor", status="failed", outcomes=(), input_hash="f")
    empty = [record(agent="loop", started_at=T0 + timedelta(hours=h), outcomes=(),
                    input_hash=f"e{h}") for h in range(5)]  # fmt: skip
    ids = ledger.write_records([*quiet, alert, failed, *empty])
    _ignore(ledger, [ids[30]])
    rows = {row.group: row for row in value.headline(ledger, period=WEEK)}
    assert (rows["monitor"].runs, rows["monitor"].judged_runs) == (32, 1)
    assert rows["loop"].judged_runs == 5


def test_the_same_content_posted_again_is_one_unit(ledger):
    runs = [record(started_at=T0 + timedelta(hours=h), scheduled_for=T0 + timedelta(hours=h),
                   input_hash="same" if h < 4 else "new") for h in range(5)]  # fmt: skip
    ids = ledger.write_records(runs)
    _accept(ledger, [ids[0], ids[4]])
    made = value.credits(ledger, WEEK)
    # four fires on one input, one of them taken up: a quarter; the new content in full
    assert {c.run_ids: c.minutes for c in made} == {
        (ids[0],): Decimal("3.75"),
        (ids[4],): Decimal(15),
    }


def test_the_value_estimate_weighs_own_evidence_against_the_typical():
    typical = Decimal(100)
    assert value.estimate(None, 0, typical, 20) == typical  # nothing spent yet
    assert value.estimate(Decimal(0), 0, typical, 20) == typical  # nothing judged yet
    assert value.estimate(Decimal(0), 180, typical, 20) == Decimal(10)  # 180 silent runs
    assert value.estimate(Decimal(400), 60, typical, 20) == Decimal(325)
    assert value.estimate(Decimal(7), 5, None, 20) == Decimal(7)  # nothing to compare with


def _ignore(ledger, run_ids):
    found = verdicts.outcome_ids(ledger, run_ids)
    verdicts.judge_many(
        ledger, {o: [] for ids in found.values() for o in ids}, checked_at=T0 + timedelta(days=30)
    )


def test_the_value_figure_weighs_each_agents_evidence(ledger):
    """Silence over a handful of runs says little, over hundreds a lot: an agent whose outcomes
    are all pending stands at the typical agent's figure, a busy one nobody engages with sinks
    towards its own."""

    def hourly(agent, hours):
        return ledger.write_records([
            record(agent=agent, started_at=T0 + timedelta(hours=h),
                   scheduled_for=T0 + timedelta(hours=h), input_hash=f"{agent}{h}")
            for h in hours
        ])  # fmt: skip

    used, also, noise = (
        hourly("used", range(40)),
        hourly("also", range(10)),
        hourly("noise", range(120)),
    )
    hourly("fresh", range(150, 153))  # its outcomes are still pending
    _accept(ledger, used[::4])  # 10 of 40 taken up
    _ignore(ledger, [r for r in used if r not in used[::4]])
    _accept(ledger, also[:1])
    _ignore(ledger, also[1:] + noise)
    rows = {row.group: row for row in value.headline(ledger, period=WEEK)}
    judged = {name: row.judged_runs for name, row in rows.items()}
    assert judged == {"used": 40, "also": 10, "noise": 120, "fresh": 0}
    own = {name: row.evidenced_per_dollar for name, row in rows.items()}
    assert own["noise"] == own["fresh"] == 0 and own["used"] > own["also"] > 0
    typical = (own["used"] + own["also"]) / 2  # the median of the agents that showed value
    figure = {name: row.value_per_dollar for name, row in rows.items()}
    assert figure["fresh"] == typical.quantize(Decimal("0.01"))
    assert figure["noise"] == (typical * 20 / 140).quantize(Decimal("0.01"))
    assert figure["used"] == value.estimate(own["used"], 40, typical, 20)
    assert figure["used"] > figure["fresh"] > figure["noise"]
