"""Approvals in the ledger, on SQLite and PostgreSQL: a request is decided by exactly one of many
concurrent deciders (processes' ledgers on one database), never after it expired or on another
payload, and each request expires once."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest

from meshagent.ledger import approvals as store
from meshagent.ledger.store import Ledger

T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


def _staged(ledger: Ledger, key: str = "PAY-8") -> store.Approval:
    run_id = ledger.open_run("nudge", owner="dave@example.com", team="payments", started_at=T0)
    return store.stage(
        ledger,
        run_id=run_id,
        agent="nudge",
        action="jira.add_comment",
        source="deliver",
        payload={"key": key, "body": "Is this still on track?"},
        approvers=["dave@example.com"],
        expires_at=T0 + timedelta(hours=4),
        now=T0,
    )


def test_many_concurrent_deciders_one_wins(ledger_url):
    with Ledger.open(ledger_url) as ledger:
        approval = _staged(ledger)
    ledgers = [Ledger.open(ledger_url, retry_for=20) for _ in range(6)]
    barrier = threading.Barrier(len(ledgers))
    won: list[bool] = []

    def decide(ledger: Ledger, index: int) -> None:
        barrier.wait()
        won.append(
            store.claim(
                ledger,
                approval.id,
                decision="approved" if index % 2 else "rejected",
                by=f"person{index}@example.com",
                seen_hash=approval.payload_hash,
                now=T0 + timedelta(minutes=1),
            )
        )

    threads = [threading.Thread(target=decide, args=(one, i)) for i, one in enumerate(ledgers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for ledger in ledgers:
        ledger.close()
    assert sorted(won) == [False] * 5 + [True]
    with Ledger.open(ledger_url) as ledger:
        decided = store.get(ledger, approval.id)
        assert decided.status in ("approved", "rejected") and decided.decided_by


@pytest.mark.parametrize(
    ("seen", "at", "why"),
    [
        ("0" * 64, T0 + timedelta(minutes=1), "another payload"),
        (None, T0 + timedelta(hours=4), "expired"),
    ],
)
def test_no_decision_on_another_payload_or_after_expiry(ledger_url, seen, at, why):
    with Ledger.open(ledger_url) as ledger:
        approval = _staged(ledger)
        claimed = store.claim(ledger, approval.id, decision="approved", by="dave@example.com",
                              seen_hash=seen or approval.payload_hash, now=at)  # fmt: skip
        assert not claimed, why
        assert store.get(ledger, approval.id).status == "pending"


def test_a_payload_changed_after_staging_no_longer_matches_its_hash(ledger_url):
    with Ledger.open(ledger_url) as ledger:
        approval = _staged(ledger)
        assert approval.intact
        changed = store.Approval(**{**approval.__dict__, "payload_text": '{"key":"PAY-1"}'})
        assert not changed.intact


def test_expiry_is_recorded_once_as_an_ignored_outcome(ledger_url):
    with Ledger.open(ledger_url) as ledger:
        approval = _staged(ledger)
        ledger.close_run(approval.run_id, "ok", finished_at=T0)
        assert store.expire_due(ledger, now=T0 + timedelta(hours=3)) == []
        [expired] = store.expire_due(ledger, now=T0 + timedelta(hours=5))
        assert store.expire_due(ledger, now=T0 + timedelta(hours=6)) == []
        assert store.get(ledger, expired.id).status == "expired"
        [outcome] = ledger.outcomes(approval.run_id)
        assert outcome.kind == store.STAGED
        from sqlalchemy import select

        from meshagent.ledger.schema import outcomes

        verdict, evidence = ledger.read(
            lambda c: c.execute(select(outcomes.c.verdict, outcomes.c.evidence)).one()
        )
        assert verdict == "ignored" and "approval:expired" in evidence
        assert ledger.verify().ok


def test_decisions_feed_the_value_figures(ledger_url):
    from meshagent.config import PrivacySettings
    from meshagent.ledger import reports
    from meshagent.ledger.periods import Period
    from meshagent.ledger.records import Outcome

    with Ledger.open(ledger_url) as ledger:
        approved, rejected, expired = (_staged(ledger, key) for key in ("PAY-8", "PAY-5", "PAY-6"))
        for approval in (approved, rejected, expired):
            ledger.close_run(approval.run_id, "ok", finished_at=T0 + timedelta(minutes=1))
        period = Period.day(T0.date())
        privacy = PrivacySettings(admins=("root",))

        def accepted() -> int:
            report = reports.summary(ledger, by="agent", period=period, viewer="root",
                                     privacy=privacy)  # fmt: skip
            return sum(report.evidence_of(row).accepted_outcomes for row in report.rows)

        assert accepted() == 0  # staged is not yet value
        later = T0 + timedelta(minutes=5)
        for approval, decision in ((approved, "approved"), (rejected, "rejected")):
            assert store.claim(ledger, approval.id, decision=decision, by="dave@example.com",
                               seen_hash=approval.payload_hash, now=later, reason="no")  # fmt: skip
        comment = Outcome("jira.comment", "PAY-8:10001")
        store.finish(ledger, store.get(ledger, approved.id), status="executed", now=later,
                     made=[comment])  # fmt: skip
        store.finish(ledger, store.get(ledger, rejected.id), status="rejected", now=later)
        store.expire_due(ledger, now=T0 + timedelta(hours=5))
        assert accepted() == 1  # the approved write, an outcome its approver accepted
        from sqlalchemy import select

        from meshagent.ledger.schema import outcomes

        found = ledger.read(lambda c: c.execute(select(outcomes.c.ref, outcomes.c.verdict)).all())
        verdicts = dict(found)
        assert verdicts["PAY-8:10001"] == "accepted"
        assert verdicts[f"approval {rejected.id}: jira.add_comment"] == "rejected"
        assert verdicts[f"approval {expired.id}: jira.add_comment"] == "ignored"
