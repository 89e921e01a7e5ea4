"""Nonces: claimed once across every replica on one database, kept until their own expiry,
purged after it; claims of many callers written together."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select

from meshagent.exceptions import LedgerError
from meshagent.ledger import Ledger
from meshagent.ledger import nonces as nonce_module
from meshagent.ledger.nonces import NonceClaims, claim, nonce_key, purge, store_path
from meshagent.ledger.schema import nonces

NOW = datetime(2026, 12, 3, 9, 0, tzinfo=UTC)
LATER = NOW + timedelta(minutes=6)


def _rows(ledger: Ledger) -> int:
    query = select(func.count()).select_from(nonces)
    return ledger.read(lambda c: c.execute(query).scalar_one())


def _claimed(claims: NonceClaims) -> int:
    """The claims where ``claims`` keeps them: its own file beside a SQLite ledger's, or the
    ledger's table."""
    if claims.store is None:
        return _rows(claims.ledger)
    with contextlib.closing(sqlite3.connect(claims.store)) as connection:
        return connection.execute("SELECT count(*) FROM ledger_nonces").fetchone()[0]


def test_a_key_is_the_kind_and_a_fixed_length_hash():
    key = nonce_key("slack-signature", "v0=" + "a" * 64)
    assert key.startswith("slack-signature:") and len(key) == len("slack-signature:") + 64
    assert nonce_key("slack-signature", "x" * 10_000) != key
    assert len(nonce_key("k", "é\udc80")) == 66  # any text, even a lone surrogate


def test_a_key_is_claimed_once_until_it_expires(ledger):
    assert claim(ledger, {"a": LATER, "b": LATER}, now=NOW) == {"a", "b"}
    assert claim(ledger, {"a": LATER, "c": LATER}, now=NOW) == {"c"}
    assert claim(ledger, {"a": LATER}, now=LATER - timedelta(seconds=1)) == set()
    # Expired and not yet purged: claimed again, kept until its new expiry.
    assert claim(ledger, {"a": LATER + timedelta(hours=1)}, now=LATER) == {"a"}
    assert claim(ledger, {"a": LATER}, now=LATER + timedelta(minutes=1)) == set()


def test_purge_deletes_only_what_expired(ledger):
    claim(ledger, {"old": NOW, "new": LATER}, now=NOW - timedelta(hours=1))
    assert purge(ledger, now=NOW + timedelta(seconds=1)) == 1
    assert _rows(ledger) == 1
    assert claim(ledger, {"new": LATER, "old": LATER}, now=NOW) == {"old"}


def test_replicas_racing_for_the_same_keys_claim_each_once(ledger):
    """Eight writers on their own connections (as replicas), each claiming the same 50 keys in
    its own order: every key is won exactly once, and no writer deadlocks another."""
    keys = [f"k{n:02d}" for n in range(50)]
    won: list[set[str]] = []
    start = threading.Barrier(8)
    others = [Ledger.open(ledger.url, migrate=False) for _ in range(8)]

    def race(at: int, mine: Ledger) -> None:
        start.wait()
        for step in range(5):
            chunk = keys[step * 10 : step * 10 + 10]
            ordered = chunk if at % 2 else chunk[::-1]
            won.append(claim(mine, dict.fromkeys(ordered, LATER), now=NOW, deadline=20))

    threads = [threading.Thread(target=race, args=pair) for pair in enumerate(others)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
    finally:
        for other in others:
            other.close()
    claimed = [key for batch in won for key in batch]
    assert len(won) == 40 and sorted(claimed) == keys


def test_claims_of_many_callers_share_transactions(ledger):
    claims = NonceClaims(ledger)

    async def burst() -> list[set[str]]:
        asks = [{f"k{n}": LATER, "shared": LATER} for n in range(200)]
        return await asyncio.gather(*(claims.claim(ask, now=NOW) for ask in asks))

    try:
        got = asyncio.run(burst())
    finally:
        claims.close()
    assert [n for n, mine in enumerate(got) if "shared" in mine] == [0]  # the first asker's
    assert all(f"k{n}" in mine for n, mine in enumerate(got))
    assert claims.batches < 200
    assert _claimed(claims) == 201
    # Closed, it starts again on the next claim.
    assert claims.submit({"again": LATER}, now=NOW).result(10) == {"again"}
    claims.close()


def test_claims_on_a_ledger_in_memory_go_to_that_ledger():
    with Ledger.open("sqlite://") as ledger:
        claims = NonceClaims(ledger)
        assert claims._engine is ledger.engine  # another engine would be another database
        claims.close()


def test_a_claim_the_database_cannot_take_fails_within_its_deadline(tmp_path):
    url = f"sqlite:///{tmp_path / 'locked.db'}"
    with Ledger.open(url, busy_timeout=0.05) as ledger:
        claims = NonceClaims(ledger, deadline=0.3)
        holder = sqlite3.connect(claims.store, isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")  # another writer holds the lock of the claims' file
        try:
            with pytest.raises(LedgerError, match="could not claim nonces"):
                claims.submit({"a": LATER}, now=NOW).result(10)
        finally:
            holder.rollback()
            holder.close()
        assert claims.submit({"a": LATER}, now=NOW).result(10) == {"a"}
        claims.close()


def test_a_writer_dropped_without_close_closes_its_connections(ledger):
    """Its engine is its own (commits that do not wait for the disk): garbage-collected with
    pooled connections still open, psycopg and sqlite3 would warn (an error under pytest)."""
    import gc

    writer = NonceClaims(ledger)
    assert writer.submit({"dropped": LATER}, now=NOW).result(timeout=10) == {"dropped"}
    pool = writer._engine.pool
    assert pool.checkedin() == 1  # the connection the claim used, kept in the pool
    with writer._cond:  # stop its thread as close() would, without close()'s dispose
        writer._closed = True
        writer._cond.notify()
    writer._thread.join()
    del writer
    gc.collect()
    assert pool.checkedin() == 0  # its connections closed, not left to the collector


def test_on_a_sqlite_file_one_turn_of_the_loop_is_one_transaction_made_on_the_loop(sqlite_url):
    with Ledger.open(sqlite_url) as ledger:
        claims = NonceClaims(ledger)

        async def turn() -> list[Any]:
            asks = [
                asyncio.ensure_future(claims.claim({f"k{n}": LATER}, now=NOW)) for n in range(50)
            ]
            asks[7].cancel()  # gave up before its turn: not claimed
            return await asyncio.gather(*asks, return_exceptions=True)

        try:
            got = asyncio.run(turn())
            assert claims.batches == 1 and claims._thread is None  # no thread was needed
            assert isinstance(got[7], asyncio.CancelledError)
            assert [mine for n, mine in enumerate(got) if n != 7] == [
                {f"k{n}"} for n in range(50) if n != 7
            ]
            assert _claimed(claims) == 49
            # Claimed again on the loop: refused, as another replica would be.
            assert asyncio.run(claims.claim({"k1": LATER, "k7": LATER}, now=NOW)) == {"k7"}
        finally:
            claims.close()


def test_claims_arriving_turn_by_turn_within_the_window_share_one_transaction(sqlite_url):
    """A loop busy with other work takes a burst's requests one per turn: their claims still
    go together, those of the next ``CLAIM_WINDOW_SECONDS``, and a later one goes alone."""
    with Ledger.open(sqlite_url) as ledger:
        claims = NonceClaims(ledger)

        async def trickle() -> list[set[str]]:
            asks = []
            for n in range(20):
                ask = {f"t{n}": LATER, "replayed": LATER}  # the same request, sent again
                asks.append(asyncio.ensure_future(claims.claim(ask, now=NOW)))
                await asyncio.sleep(0)  # each in a turn of its own
            got = await asyncio.gather(*asks)
            await asyncio.sleep(nonce_module.CLAIM_WINDOW_SECONDS * 5)
            return [*got, await claims.claim({"late": LATER}, now=NOW)]

        try:
            got = asyncio.run(trickle())
            # In one transaction, the replayed key is still the first asker's alone.
            assert got == [{"t0", "replayed"}] + [{f"t{n}"} for n in range(1, 20)] + [{"late"}]
            assert claims.batches == 2
        finally:
            claims.close()


def test_on_a_sqlite_file_claims_live_beside_it_and_never_wait_for_the_ledgers_writers(
    tmp_path,
):
    """The claims of a ledger in ledger.db are kept in ledger.db.nonces, which two replicas
    on that ledger share; a writer holding the ledger's own lock (the runs' commits) holds up
    no claim: it is made on the loop, at once."""
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    assert store_path(url) == tmp_path / "ledger.db.nonces"
    with Ledger.open(url) as ledger, Ledger.open(url) as replica:
        claims, rival = NonceClaims(ledger), NonceClaims(replica)
        holder = ledger.engine.raw_connection()
        holder.execute("BEGIN IMMEDIATE")  # a run's commit holds the ledger
        try:
            started = time.monotonic()
            assert asyncio.run(claims.claim({"a": LATER, "b": LATER}, now=NOW)) == {"a", "b"}
            assert time.monotonic() - started < 0.5
            assert claims._thread is None  # made on the loop, which met no other writer
            assert asyncio.run(rival.claim({"b": LATER, "c": LATER}, now=NOW)) == {"c"}
        finally:
            holder.rollback()
            holder.close()
            claims.close()
            rival.close()
        assert _claimed(claims) == 3
        assert _rows(ledger) == 0  # nothing in the ledger's own table


def test_a_claim_on_the_loop_answers_as_the_statement_of_claim_keys(tmp_path):
    """The loop's claims (keys still live read in one row, all written in one statement, in
    chunks of 400) answer what `claim_keys` answers, key by key: new keys, live ones, expired
    ones renewed, over a thousand keys at once."""
    first = [f"k{n:04d}" for n in range(1000)]
    steps = [
        ({key: LATER for key in first}, NOW),
        ({key: LATER for key in first[::3] + ["x", "y"]}, NOW + timedelta(minutes=1)),
        ({**{key: LATER + timedelta(hours=1) for key in first[::7]}, "x": LATER}, LATER),
        ({key: LATER + timedelta(hours=2) for key in first[::5]}, LATER + timedelta(minutes=30)),
    ]
    with (
        Ledger.open(f"sqlite:///{tmp_path / 'loop.db'}") as on_loop,
        Ledger.open(f"sqlite:///{tmp_path / 'statement.db'}") as by_statement,
    ):
        claims = NonceClaims(on_loop)
        try:
            for keys, now in steps:
                got = asyncio.run(claims.claim(keys, now=now))
                assert got == claim(by_statement, keys, now=now)
                assert claims._thread is None  # all of them made on the loop
        finally:
            claims.close()
        assert _claimed(claims) == _rows(by_statement) == 1002


def test_claims_in_the_ledgers_table_are_refused_once_the_file_of_claims_is_made(sqlite_url):
    """An upgrade forgets no request: what was claimed in the ledger's table before its claims
    file existed is copied into the file when it is made."""
    with Ledger.open(sqlite_url) as ledger:
        assert claim(ledger, {"before": LATER}, now=NOW) == {"before"}
        claims = NonceClaims(ledger)
        try:
            assert asyncio.run(claims.claim({"before": LATER, "new": LATER}, now=NOW)) == {"new"}
            # Made once: a replica opening it later copies nothing again (nor fails).
            again = NonceClaims(ledger)
            assert _claimed(again) == 2
            again.close()
        finally:
            claims.close()


def test_a_file_of_claims_that_cannot_be_made_is_a_clear_error(tmp_path):
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    (tmp_path / "ledger.db.nonces").mkdir()  # a directory where the file would go
    message = r"cannot open .*ledger\.db\.nonces, the ledger's file of nonces"
    with Ledger.open(url) as ledger, pytest.raises(LedgerError, match=message):
        NonceClaims(ledger)


def test_the_log_of_the_claims_file_is_checkpointed_by_the_thread(tmp_path, monkeypatch):
    """The loop's connection never copies the log back (that waits for the disk): every
    CHECKPOINT_EVERY commits the thread does, so the log stops growing."""

    def log_size(every: int, name: str) -> int:
        monkeypatch.setattr(nonce_module, "CHECKPOINT_EVERY", every)
        with Ledger.open(f"sqlite:///{tmp_path / name}") as ledger:
            claims = NonceClaims(ledger)

            async def turns() -> None:
                for n in range(300):
                    await claims.claim({f"k{n}": LATER}, now=NOW)
                    await asyncio.sleep(0.001)  # the thread's turn to checkpoint

            try:
                asyncio.run(turns())
                assert _claimed(claims) == 300
                return (tmp_path / f"{name}.nonces-wal").stat().st_size
            finally:
                claims.close()

    unbounded = log_size(10_000, "never.db")
    bounded = log_size(20, "often.db")
    assert bounded < unbounded / 4


@pytest.mark.postgres
def test_on_postgresql_claims_are_awaited_on_the_loop_and_go_to_the_thread_when_it_fails(
    pg_schema_url,
):
    """One statement per turn of the loop on its own asyncio connection; a connection the
    server closed (a restart, a kill) hands that turn's claims to the thread, and the next
    turn connects again. Another replica's claims are refused either way."""
    import psycopg

    from tests.ledger.conftest import PG_DSN

    with Ledger.open(pg_schema_url) as ledger, Ledger.open(pg_schema_url) as other:
        claims, rival = NonceClaims(ledger), NonceClaims(other)

        async def turn(asks: list[dict[str, datetime]], by: NonceClaims) -> list[set[str]]:
            return await asyncio.gather(*(by.claim(ask, now=NOW) for ask in asks))

        async def scenario() -> None:  # one loop, as a served app's
            got = await turn([{f"k{n}": LATER, "shared": LATER} for n in range(20)], claims)
            assert got == [{"k0", "shared"}] + [{f"k{n}"} for n in range(1, 20)]
            assert claims.batches == 1 and claims._thread is None
            backend = claims._loop_claims._connection.info.backend_pid  # type: ignore[union-attr]
            with psycopg.connect(PG_DSN, autocommit=True) as admin:
                admin.execute("SELECT pg_terminate_backend(%s)", [backend])
            assert await turn([{"k1": LATER, "k20": LATER}], claims) == [{"k20"}]
            assert claims._thread is not None  # that turn went to the thread
            assert await turn([{"k21": LATER}], claims) == [{"k21"}]  # on the loop again
            assert claims.batches == 3
            rivals = await turn([{"k21": LATER, "k2": LATER, "k22": LATER}], rival)
            assert rivals == [{"k22"}]

        try:
            asyncio.run(scenario())
            assert _rows(ledger) == 24
        finally:
            claims.close()
            rival.close()


@pytest.mark.postgres
@pytest.mark.parametrize("other_writer", ["rolls back", "commits"])
def test_on_postgresql_a_claim_held_up_by_another_writer_is_decided_by_that_writer(
    pg_schema_url, other_writer
):
    """The server cancels a claim that waits longer than half a second (nothing committed) and
    the thread waits for the other writer: its key is claimed if that writer rolls back, and
    refused if it commits. Never refused by a claim of its own given up on."""
    import psycopg

    from tests.ledger.conftest import PG_DSN

    schema = pg_schema_url.rsplit("%3D", 1)[1]
    with Ledger.open(pg_schema_url) as ledger:
        claims = NonceClaims(ledger)
        holder = psycopg.connect(PG_DSN, options=f"-csearch_path={schema}")
        try:
            holder.execute(
                "INSERT INTO ledger_nonces (key, expires_at) VALUES ('held', %s)", [LATER]
            )

            async def scenario() -> set[str]:
                asked = asyncio.ensure_future(claims.claim({"held": LATER}, now=NOW))
                await asyncio.sleep(1.0)  # past the server's half second
                assert not asked.done()
                holder.commit() if other_writer == "commits" else holder.rollback()
                return await asked

            got = asyncio.run(scenario())
            assert got == ({"held"} if other_writer == "rolls back" else set())
            assert claims._thread is not None  # the thread took it over
        finally:
            holder.close()
            claims.close()
