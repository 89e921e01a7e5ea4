"""Reports: runs, outcomes, tokens, money and value per group; adoption; the spend forecast."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal

import pytest

from meshagent.config import PrivacySettings
from meshagent.exceptions import LedgerError
from meshagent.ledger import reports
from meshagent.ledger.periods import Period
from meshagent.ledger.records import Usage

from .helpers import T0, cost, record

ADMIN = PrivacySettings(min_group_size=5, admins=("root@example.com",))
WEEK = Period.week(T0.date())


@pytest.fixture
def filled(ledger):
    ledger.write_records(
        [
            record(),
            record(outcomes=()),
            record(cost=None, usage=Usage(input_tokens=10)),
            record(
                agent="triage",
                team="support",
                value_tag="quality",
                model_answered="m2",
                cost=cost("0.5"),
            ),
            record(started_at=T0 - timedelta(days=7)),
        ]  # last week: outside the period
    )
    first = ledger.write_records([record(run_id="voted")])[0]
    ledger.add_feedback(first, "bob", 1)
    ledger.add_feedback(first, "carol", -1)
    return ledger


def _report(ledger, by):
    report = reports.summary(ledger, by=by, period=WEEK, viewer="root@example.com", privacy=ADMIN)
    return {row.group: row for row in report.rows}


def test_summary_by_team_counts_runs_outcomes_money_and_value(filled):
    payments = _report(filled, "team")["payments"]
    assert (payments.runs, payments.runs_with_outcome, payments.people) == (4, 3, 1)
    assert payments.input_tokens == 3010 and payments.output_tokens == 600
    assert payments.cost_usd == Decimal("0.0036") and payments.runs_cost_unknown == 1
    assert payments.minutes_saved == Decimal(45)  # 15 minutes x 3 runs with an outcome
    assert (payments.feedback_pos, payments.feedback_neg) == (1, 1)
    assert payments.minutes_per_dollar == Decimal("12500.00")
    assert payments.cost_per_outcome == Decimal("0.0012")


@pytest.mark.parametrize(
    "by, groups",
    [
        ("agent", {"digest", "triage"}),
        ("tag", {"toil", "quality"}),
        ("model", {"gpt-4.1-mini", "m2"}),
        ("owner", {"alice"}),
    ],
)
def test_every_grouping(filled, by, groups):
    assert set(_report(filled, by)) == groups


def test_a_group_whose_prices_are_all_unknown_has_no_cost(ledger):
    ledger.write_records([record(cost=None)])
    row = _report(ledger, "team")["payments"]
    assert row.cost_usd is None and row.minutes_per_dollar is None and row.cost_per_outcome is None


def test_an_unknown_grouping_lists_the_valid_ones(ledger):
    with pytest.raises(LedgerError, match="use one of team, agent, owner, tag, model"):
        reports.summary(ledger, by="person", period=WEEK)


def test_periods():
    assert Period.week(date(2025, 3, 5)) == Period(date(2025, 3, 3), date(2025, 3, 10))
    assert Period.month(date(2025, 12, 31)) == Period(date(2025, 12, 1), date(2026, 1, 1))
    assert Period.between(date(2025, 1, 1), date(2025, 1, 1)).label == "2025-01-01"
    with pytest.raises(LedgerError, match="ends"):
        Period(date(2025, 1, 2), date(2025, 1, 1))


def test_adoption_puts_people_with_outcomes_beside_people_with_usage(ledger):
    people = [f"p{i}" for i in range(6)]
    ledger.write_records(
        [record(owner=p, outcomes=() if i % 2 else record().outcomes) for i, p in enumerate(people)]
    )
    weeks = reports.adoption(ledger, period=Period(WEEK.start, WEEK.end + timedelta(days=7)))
    assert [(w.people_with_outcome, w.people_with_usage) for w in weeks] == [(3, 6), (None, None)]


def test_forecast_is_fires_per_month_times_median_cost(ledger):
    ledger.write_records([record(cost=cost(c)) for c in ("0.01", "0.02", "0.90")])
    ledger.write_records([record(agent="unpriced", cost=None)])
    rows = reports.forecast(
        ledger,
        {"digest": 22, "unpriced": 30, "new": 4},
        today=T0.date(),
        viewer="root@example.com",
        privacy=ADMIN,
    )
    assert [(r.agent, r.runs_seen, r.median_cost_usd, r.monthly_usd) for r in rows] == [
        ("digest", 3, Decimal("0.02"), Decimal("0.4400")),
        ("new", 0, None, None),
        ("unpriced", 0, None, None),
    ]
    mine = reports.forecast(ledger, {"digest": 22}, today=T0.date(), viewer="alice")
    assert [r.agent for r in mine] == ["digest"]
    assert reports.forecast(ledger, {"digest": 22}, today=T0.date(), viewer="bob") == []


def test_cached_and_reasoning_tokens_are_counted_once(ledger):
    # LangChain's convention: cached tokens are inside input_tokens, reasoning inside output.
    usage = Usage(input_tokens=1000, cache_read_tokens=800, output_tokens=300, reasoning_tokens=250)
    ledger.write_records([record(usage=usage)])
    row = _report(ledger, "team")["payments"]
    assert (row.reasoning_tokens, row.cache_read_tokens) == (250, 800)
    assert row.tokens == 1300
