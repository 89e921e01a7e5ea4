"""Claims of a burst of fires, on both backends: won once, waiting for an earlier run, missed
behind a later one (closed in the claiming transaction, chained), and nothing else blocks."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from meshagent.ledger import Ledger, budget, claims
from tests.ledger.conftest import ledger_url, sqlite_url  # noqa: F401

NINE = datetime(2026, 12, 3, 9, tzinfo=UTC)


@pytest.fixture
def store(ledger_url: str):  # noqa: F811
    with Ledger.open(ledger_url, retry_for=10.0) as opened:
        yield opened


def _fire(ledger: Ledger, agent: str, at: datetime, hold=None) -> claims.Fire:
    entry = ledger.entry_values(
        agent, trigger_kind="schedule", scheduled_for=at, idempotency_key=claims.fire_key(agent, at)
    )
    return claims.Fire(agent, at, entry, hold)


def _claim(ledger: Ledger, fires: list[claims.Fire], replica: str = "r1") -> list[claims.Claim]:
    return claims.claim_all(ledger, fires, replica=replica, lease_seconds=60)


def test_a_burst_is_won_once_and_a_repeated_fire_counts_once(store):
    burst = [_fire(store, f"agent-{n}", NINE) for n in range(5)]
    first = _claim(store, [*burst, burst[0]])
    assert [c.won for c in first] == [True] * 5 + [False]
    assert all(c.missed is None and c.waits_for is None for c in first[:5])
    again = _claim(store, [_fire(store, f"agent-{n}", NINE) for n in range(5)], replica="r2")
    assert not any(c.won for c in again)
    assert {store.entry(c.run_id)["status"] for c in first[:5]} == {"running"}


def test_only_a_run_in_progress_holds_its_agent(store):
    [earlier] = _claim(store, [_fire(store, "digest", NINE)])
    [waits] = _claim(store, [_fire(store, "digest", NINE + timedelta(minutes=1))])
    assert waits.won and waits.waits_for is not None
    assert waits.waits_for.run_id == earlier.run_id and waits.waits_for.fire_time == NINE
    # A fire older than a run in progress is missed at once, its entry closed and chained.
    [older] = _claim(store, [_fire(store, "digest", NINE - timedelta(minutes=1))])
    assert older.missed == (
        f"a later fire of this agent had been claimed first: run {earlier.run_id} of the fire at "
        f"{NINE.isoformat()}, on replica r1"
    )
    assert store.entry(older.run_id)["status"] == "missed"
    assert store.verify().ok
    # Its entry closed, the earlier run holds nothing, though its claim is not marked done.
    store.close_run(earlier.run_id, "ok")
    store.close_run(waits.run_id, "ok")
    [free] = _claim(store, [_fire(store, "digest", NINE + timedelta(minutes=2))])
    assert free.won and free.waits_for is None and free.missed is None


def test_a_hold_closes_the_fire_as_missed_in_its_claim(store):
    def backing_off() -> str:
        return "backing off after 3 failed runs in a row"

    [held, free] = _claim(
        store, [_fire(store, "broken", NINE, hold=backing_off), _fire(store, "fine", NINE)]
    )
    assert held.missed == "backing off after 3 failed runs in a row"
    entry = store.entry(held.run_id)
    assert (entry["status"], entry["error"]) == ("missed", held.missed)
    assert free.missed is None and store.entry(free.run_id)["status"] == "running"
    assert claims.holders(store, "broken", NINE + timedelta(minutes=1)) == []
    assert store.verify().ok


def test_skipped_fires_share_one_missed_entry_that_each_claim_names(store):
    times = [NINE + timedelta(minutes=n) for n in range(4)]
    _claim(store, [_fire(store, "tick", times[1])], replica="other")  # another replica's
    won, run_id = claims.claim_missed(
        store,
        agent="tick",
        fire_times=times[:3],
        replica="r1",
        entry=lambda at: _fire(store, "tick", at).entry,
        reason=lambda fires: f"woke late ({len(fires) - 1} earlier fires coalesced into this one)",
    )
    assert won == [times[0], times[2]]
    entry = store.entry(run_id)
    assert (entry["status"], entry["scheduled_for"]) == ("missed", times[2])
    assert entry["error"] == "woke late (1 earlier fires coalesced into this one)"
    assert store.verify().ok


def test_an_expired_claims_run_gives_back_its_daily_budget_reservations(store):
    """A replica that died mid-call held a reservation: closing its run as interrupted drops it
    in the same write, so it no longer counts against the agent's day until it expires."""
    now = datetime.now(UTC)
    [dead] = claims.claim_all(
        store, [_fire(store, "spender", NINE)], replica="gone", lease_seconds=-1
    )  # a lease that has run out already
    taken, _ = budget.reserve(
        store, agent="spender", day=now.date(), run_id=dead.run_id, amount=Decimal("0.40"),
        limit=Decimal(1), now=now, expires_at=now + timedelta(hours=1),
    )  # fmt: skip
    assert taken is not None
    assert claims.expire(store) == [dead.run_id]
    assert store.entry(dead.run_id)["status"] == "interrupted"
    assert budget.standing(store, "spender", now.date(), now).reserved == 0
    assert store.verify().ok
