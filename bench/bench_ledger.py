"""Ledger benchmark (not a test): write rate through the API against the raw insert rate, the
latency of the weekly report by team over a million entries, and live runs writing as a fleet's
do, on SQLite and PostgreSQL.

Live runs: N asyncio tasks each open a run, write its usage twice and close it (with an outcome
and an event), waiting a random 0.2-1 s, 0.2-1 s and 0-0.5 s between (a fixed seed), so that
the group commit's transactions mix opens, usage writes and closes. Its makespan is printed
beside the longest task's waits alone, with the statements and transactions it took.

    python bench/bench_ledger.py [--backend sqlite|postgresql|both] [--entries N] [--total N]
                                 [--live N]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import psycopg
from sqlalchemy import event

from meshagent.config import PrivacySettings
from meshagent.ledger import BatchWriter, Cost, Ledger, Outcome, RunRecord, Usage, reports
from meshagent.ledger.chain import GENESIS, entry_hash
from meshagent.ledger.periods import Period
from meshagent.ledger.records import Event
from meshagent.ledger.rows import record_row
from meshagent.ledger.schema import entries, outcomes

PG = "host=127.0.0.1 port=5432 dbname=test user=postgres"
PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test?options=-csearch_path%3D{}"
START = datetime(2025, 1, 6, tzinfo=UTC)
ADMIN = PrivacySettings(admins=("bench",))


def make_records(count: int, seed: int) -> list[RunRecord]:
    """Runs of 200 agents owned by 400 people in 40 teams, spread over a year."""
    rng = random.Random(seed)
    result = []
    times = sorted(rng.randrange(365 * 86400) for _ in range(count))  # a ledger fills in time
    for at in times:
        agent = rng.randrange(200)
        owner = agent * 2 + rng.randrange(2)
        started = START + timedelta(seconds=at)
        tokens = rng.randrange(500, 5000)
        price = Decimal(tokens) * Decimal("0.00000015")
        result.append(
            RunRecord(
                agent=f"agent-{agent}",
                agent_version="v1",
                owner=f"person-{owner}",
                team=f"team-{owner % 40}",
                value_tag=("toil", "quality", "speed")[agent % 3],
                minutes_saved=10,
                status="ok",
                started_at=started,
                finished_at=started + timedelta(seconds=4),
                trigger_kind="schedule",
                scheduled_for=started,
                provider="openai",
                model_requested="openai:gpt-4.1-mini",
                model_answered="gpt-4.1-mini",
                usage=Usage(input_tokens=tokens, output_tokens=200, model_calls=1),
                cost=Cost(price, Decimal(0), Decimal("0.00003"), source="bench"),
                input_hash=uuid.uuid4().hex,
                outcomes=(Outcome("slack.message", f"C1/{at}"),),
            )
        )
    return result


def api_rate(ledger: Ledger, records: list[RunRecord]) -> float:
    started = time.perf_counter()
    with BatchWriter(ledger, max_entries=1000, max_delay=0.05) as writer:
        for record in records:
            writer.submit(record)
        writer.flush()
    return len(records) / (time.perf_counter() - started)


def raw_rate(ledger: Ledger, records: list[RunRecord]) -> float:
    """The same entry and outcome rows, executemany in one transaction per 1,000 rows."""
    rows = [record_row(record, str(uuid.uuid4())) for record in records]
    previous = GENESIS
    for seq, row in enumerate(rows, start=1):  # the same columns, chain values included
        row.update(seq=seq, prev_hash=previous, entry_hash=entry_hash(seq, previous, row))
        previous = row["entry_hash"]
    found = [
        {
            "run_id": row["run_id"],
            "kind": "slack.message",
            "ref": "C1/x",
            "url": None,
            "created_at": row["finished_at"],
        }
        for row in rows
    ]
    started = time.perf_counter()
    for at in range(0, len(rows), 1000):
        with ledger.engine.begin() as connection:
            connection.execute(entries.insert(), rows[at : at + 1000])
            connection.execute(outcomes.insert(), found[at : at + 1000])
    return len(rows) / (time.perf_counter() - started)


def report_latency(ledger: Ledger) -> float:
    week = Period.week((START + timedelta(days=180)).date())
    times = []
    for _ in range(5):
        started = time.perf_counter()
        reports.summary(ledger, by="team", period=week, viewer="bench", privacy=ADMIN)
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000


async def _live_run(ledger: Ledger, at: int, waits: tuple[float, float, float]) -> None:
    run_id = await ledger.aopen_run(f"agent-{at % 50}", owner=f"person-{at % 80}", team="t")
    await asyncio.sleep(waits[0])
    await ledger.arecord_usage(run_id, Usage(input_tokens=900, model_calls=1))
    await asyncio.sleep(waits[1])
    await ledger.arecord_usage(run_id, Usage(input_tokens=700, model_calls=1))
    await asyncio.sleep(waits[2])
    await ledger.aclose_run(
        run_id,
        "ok",
        usage=Usage(output_tokens=120),
        outcomes=[Outcome("slack.message", f"C1/{at}")],
        events=[Event("tool_call", "slack.post_message", f"call {at}")],
    )


def live(url: str, count: int) -> str:
    """Live runs (the module's note) on the ledger at `url`: what they took, as a line."""
    rng = random.Random(7)
    waits = [(rng.uniform(0.2, 1), rng.uniform(0.2, 1), rng.uniform(0, 0.5)) for _ in range(count)]
    floor = max(sum(each) for each in waits)
    with Ledger.open(url) as ledger:
        statements = 0

        def counted(*_args: object) -> None:
            nonlocal statements
            statements += 1

        event.listen(ledger.engine, "before_cursor_execute", counted)

        async def all_of_them() -> float:
            started = time.perf_counter()
            await asyncio.gather(*(_live_run(ledger, at, w) for at, w in enumerate(waits)))
            return time.perf_counter() - started

        took = asyncio.run(all_of_them())
        transactions = ledger.group_commit().transactions
        assert ledger.verify().ok
    return (
        f"{count:,} live runs (open, 2 usage writes, close): {took:.2f} s, the waits alone "
        f"{floor:.2f} s; {statements:,} statements in {transactions:,} transactions"
    )


def databases(backend: str, workdir: Path) -> tuple[str, str, list[str]]:
    if backend == "sqlite":
        return f"sqlite:///{workdir / 'api.db'}", f"sqlite:///{workdir / 'raw.db'}", []
    schemas = [f"bench_{uuid.uuid4().hex[:10]}" for _ in range(2)]
    with psycopg.connect(PG, autocommit=True) as connection:
        for schema in schemas:
            connection.execute(f'CREATE SCHEMA "{schema}"')
    return PG_URL.format(schemas[0]), PG_URL.format(schemas[1]), schemas


def bench(backend: str, count: int, total: int, live_runs: int) -> None:
    with tempfile.TemporaryDirectory() as workdir:
        api_url, raw_url, schemas = databases(backend, Path(workdir))
        try:
            if live_runs:
                print(f"{backend}: {live(api_url, live_runs)}")
            with Ledger.open(api_url) as api, Ledger.open(raw_url) as raw:
                records = make_records(count, seed=1)
                api_per_s = api_rate(api, records)
                raw_per_s = raw_rate(raw, make_records(count, seed=1))
                print(
                    f"{backend}: ledger API {api_per_s:,.0f} entries/s, raw executemany "
                    f"{raw_per_s:,.0f} rows/s, ratio {api_per_s / raw_per_s:.0%}"
                )
                for at in range(count, total, 100_000):
                    api_rate(api, make_records(min(100_000, total - at), seed=at))
                print(
                    f"{backend}: weekly report by team over {api.count():,} entries: "
                    f"{report_latency(api):.1f} ms (median of 5)"
                )
                assert api.verify().ok
        finally:
            if schemas:
                with psycopg.connect(PG, autocommit=True) as connection:
                    for schema in schemas:
                        connection.execute(f'DROP SCHEMA "{schema}" CASCADE')


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--entries", type=int, default=100_000)
    parser.add_argument("--total", type=int, default=1_000_000)
    parser.add_argument("--live", type=int, default=2000, help="live runs at once (0: none)")
    args = parser.parse_args()
    for backend in ("sqlite", "postgresql") if args.backend == "both" else (args.backend,):
        bench(backend, args.entries, args.total, args.live)


if __name__ == "__main__":
    main()
