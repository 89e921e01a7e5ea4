"""The report's value per dollar is `value.headline`'s, computed once from the credited units
the report has read, on both backends."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from decimal import Decimal

import pytest

from meshagent.config import PrivacySettings, ValueSettings
from meshagent.ledger import reports, value, verdicts
from meshagent.ledger.periods import Period
from meshagent.ledger.records import PLANNED, QUIET, Outcome
from meshagent.ledger.verdicts import Evidence

from .helpers import T0, cost, record

WEEK = Period.week(T0.date())
ADMIN = PrivacySettings(admins=("root",))
SETTINGS = ValueSettings(prior_runs=5)


def _judge(ledger, run_ids, who):
    """Each outcome of `run_ids` accepted by `who`, or ignored when `who` is None."""
    found = verdicts.outcome_ids(ledger, run_ids)
    verdicts.judge_many(
        ledger,
        {o: [Evidence(who, "reply")] if who else [] for ids in found.values() for o in ids},
        checked_at=T0 + timedelta(days=8),
    )


def _seed(ledger):
    """Agents of three teams, tags and models, with accepted, ignored, pending, planned and
    quiet outcomes, votes, failures and runs that produced nothing."""
    made = []
    for n in range(6):
        agent, team = f"agent{n}", f"team{n % 3}"
        for h in range(4 + 3 * n):
            at = T0 + timedelta(hours=h * (n + 1))
            made.append(
                record(agent=agent, owner=f"owner{n % 4}", team=team,
                       value_tag=("toil", "quality", "speed")[n % 3], minutes_saved=5 + 5 * n,
                       model_answered=("gpt-4.1-mini", "gpt-4.1")[n % 2], started_at=at,
                       scheduled_for=at, input_hash=f"{agent}-{h}", cost=cost(f"0.00{n + 1}2"))
            )  # fmt: skip
    asked = [record(agent="helper", team="team1", owner="owner1", trigger_kind="slash",
                    scheduled_for=None, triggered_by=f"asker{h % 3}", input_hash=f"q{h}",
                    started_at=T0 + timedelta(hours=5 * h)) for h in range(6)]  # fmt: skip
    mixed = [
        record(agent="agent0", input_hash="mixed", started_at=T0 + timedelta(days=2, minutes=1),
               outcomes=(Outcome("slack.message", "C1/a"), Outcome("jira.issue", "OPS-1"))),
        record(agent="agent1", input_hash="plan", outcomes=(Outcome(PLANNED, "post #x"),)),
        record(agent="agent2", input_hash="quiet", outcomes=(Outcome(QUIET, "no news"),)),
        record(agent="agent3", input_hash="empty", outcomes=()),
        record(agent="agent4", status="failed", input_hash="failed", outcomes=()),
    ]  # fmt: skip
    ids = ledger.write_records([*made, *asked, *mixed])
    _judge(ledger, ids[0:40:3], "carol")
    _judge(ledger, ids[1:40:3], None)  # checked, nobody engaged
    _judge(ledger, ids[60:63], "dave")
    mixed = ids[len(made) + len(asked)]
    first = verdicts.outcome_ids(ledger, [mixed])[mixed][0]
    verdicts.judge_many(ledger, {first: [Evidence("carol", "reply")]}, checked_at=T0)
    run_ids = ids[len(made) : len(made) + len(asked)]
    for n, run_id in enumerate(run_ids[:4]):
        ledger.add_feedback(run_id, f"voter{n}", 1)


@pytest.mark.parametrize("by", ["team", "agent", "owner", "tag", "model"])
def test_the_reports_value_per_dollar_is_the_headlines_own(ledger, by):
    _seed(ledger)
    report = reports.summary(ledger, by=by, period=WEEK, viewer="root", privacy=ADMIN,
                             value=SETTINGS)  # fmt: skip
    alone = value.headline(ledger, period=WEEK, by=by, value=SETTINGS)
    figures = {row.group: report.value_of(row) for row in report.rows}
    assert figures == {row.group: row.value_per_dollar for row in alone}
    assert len({figure for figure in figures.values()}) > 1  # the figures differ by group
    made = value.credits(ledger, WEEK, value=SETTINGS)
    assert value.headline(ledger, period=WEEK, by=by, value=SETTINGS, credited=made) == alone


def test_a_run_is_judged_once_all_its_delivered_outcomes_are_checked(ledger):
    two = (Outcome("slack.message", "C1/a"), Outcome("jira.issue", "OPS-1"))
    runs = [
        record(input_hash="one"),
        record(input_hash="two", outcomes=two),
        record(input_hash="plan", outcomes=(Outcome(PLANNED, "post #x"),)),
        record(input_hash="quiet", outcomes=(Outcome(QUIET, "no news"),)),
        record(input_hash="empty", outcomes=()),  # spent tokens on nothing: judged
        record(input_hash="failed", status="failed", outcomes=()),
    ]
    ids = ledger.write_records([
        replace(run, started_at=T0 + timedelta(hours=h), scheduled_for=T0 + timedelta(hours=h))
        for h, run in enumerate(runs)
    ])  # fmt: skip
    found = verdicts.outcome_ids(ledger, ids[:2])
    accepted = [found[ids[0]][0], found[ids[1]][0]]
    verdicts.judge_many(ledger, {o: [Evidence("carol", "reply")] for o in accepted},
                        checked_at=T0 + timedelta(days=8))  # fmt: skip
    (row,) = value.headline(ledger, period=WEEK)
    assert (row.runs, row.judged_runs, row.minutes_claimed) == (6, 2, Decimal(30))
    verdicts.judge_many(ledger, {found[ids[1]][1]: []}, checked_at=T0 + timedelta(days=8))
    (row,) = value.headline(ledger, period=WEEK)
    assert (row.runs, row.judged_runs, row.minutes_claimed) == (6, 3, Decimal(30))


def test_the_report_and_adoption_read_the_credited_units_once(ledger, monkeypatch):
    _seed(ledger)
    calls = []
    real = value.credits

    def counted(*args, **options):
        calls.append(args)
        return real(*args, **options)

    monkeypatch.setattr(value, "credits", counted)
    monkeypatch.setattr(reports, "credits", counted)
    report, _ = reports.report_with_adoption(ledger, by="agent", period=WEEK, viewer="root",
                                             privacy=ADMIN)  # fmt: skip
    assert len(calls) == 1
    assert any(report.value_of(row) is not None for row in report.rows)
