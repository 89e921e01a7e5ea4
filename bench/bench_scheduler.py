"""Scheduler benchmark (not a test): a thousand agents due at one moment, and claims per second.

(a) N agents (default 1,000), all due at the same moment, through the real fleet
(`meshagent.fleet.scheduler.Fleet`: APScheduler's AsyncIOScheduler, the claims, the runtime)
on a SQLite ledger in a temporary directory, one replica, scripted model with 1 s latency and
`max_concurrent_model_calls` = N. Each fire is timed from its scheduled moment to its entry's
close (fire-to-finish, p50 and p99); the makespan is the moment to the last close. Beside it, the
same N jobs on APScheduler's default BackgroundScheduler (its ThreadPoolExecutor of 10 threads),
each calling the same scripted model: once with APScheduler's defaults (misfire_grace_time of
1 s: a job that cannot start within a second is skipped, with a log line), once with
misfire_grace_time=None (every job runs, ten at a time).

(b) Claims per second on PostgreSQL (127.0.0.1:5432, database `test`): 3 processes claim the same
fires (agents x fire times) with `meshagent.ledger.claims.claim_all`, one burst per fire time as
a replica does, each won fire opening its entry. Every fire must be won by exactly one process:
checked in the processes' wins and in the claims and entries tables, and printed.

    python bench/bench_scheduler.py [--quick] [--agents N] [--latency S] [--no-postgres]

Target: makespan of (a) 3 s or less. The figures are printed whether or not they meet it, with
the machine's load average (other work on the machine moves them).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import multiprocessing
import os
import platform
import tempfile
import threading
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from meshagent.config import Config
from meshagent.fleet.scheduler import Fleet
from meshagent.ledger import Ledger, claims
from meshagent.ledger.schema import claims as claims_table
from meshagent.ledger.schema import entries
from meshagent.models import ScriptedChatModel
from meshagent.runtime.runner import Runtime

try:  # run as a script: bench/ is on the path
    from bench_runtime import pg_schema, pg_version
except ImportError:  # imported as bench.bench_scheduler
    from bench.bench_runtime import pg_schema, pg_version

TARGET_MAKESPAN_S = 3.0
PROCESSES = 3
AGENT = """\
name: {name}
owner: bench@example.com
team: bench
model: scripted
instructions: Say what changed.
triggers:
  - every: 1h
value: {{tag: toil-reduction, minutes_saved: 1}}
"""


def load_average() -> str:
    try:
        return ", ".join(f"{n:.2f}" for n in os.getloadavg())
    except OSError:
        return "n/a"


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))]


def verdict(met: bool | None) -> str:
    return "NOT RUN" if met is None else ("MET" if met else "MISSED")


# -- (a) the fleet ---------------------------------------------------------------------------


async def bench_fleet(directory: Path, agents: int, latency: float) -> dict[str, Any]:
    folder = directory / "agents"
    folder.mkdir()
    for number in range(agents):
        name = f"bench-{number:04d}"
        (folder / f"{name}.yaml").write_text(AGENT.format(name=name), encoding="utf-8")
    url = f"sqlite:///{directory / 'fleet.db'}"
    config = Config(
        ledger_url=url,
        agents_dir=folder,
        max_concurrent_model_calls=max(agents, 1),
        serve={"reload_seconds": 3600},
    )
    warm = ScriptedChatModel(responses=["warm"] * 3)
    model = ScriptedChatModel(responses=["done"] * (2 * agents), latency=latency)
    runtime = Runtime(config, env={}, chat_model=model)
    fleet = Fleet(config, runtime)
    loaded = time.perf_counter()
    await fleet.start()
    loaded = time.perf_counter() - loaded
    try:
        # One run first, on a model of its own (imports, the ledger's statements): not timed.
        warm_runtime = Runtime(config, ledger=runtime.ledger, env={}, chat_model=warm)
        await warm_runtime.run(next(iter(fleet.specs.values())), trigger="api")
        moment = (datetime.now(UTC) + timedelta(seconds=3)).replace(microsecond=0)
        scheduler = fleet._scheduler  # the real scheduler: every job made due at the moment
        assert scheduler is not None
        for job in scheduler.get_jobs():
            job.modify(next_run_time=moment)
        deadline = time.monotonic() + 60 + 3 * agents * latency
        query = select(func.count()).where(
            entries.c.scheduled_for == moment, entries.c.status != "running"
        )
        while time.monotonic() < deadline:
            await asyncio.sleep(0.25)
            closed = runtime.ledger.read(lambda c: c.execute(query).scalar())
            if closed >= agents:
                break
        rows = runtime.ledger.read(
            lambda c: c.execute(
                select(entries.c.status, entries.c.started_at, entries.c.finished_at).where(
                    entries.c.scheduled_for == moment
                )
            ).all()
        )
    finally:
        await fleet.stop(timeout=10)
        runtime.ledger.close()
    finishes = [(end - moment).total_seconds() for _, _, end in rows if end is not None]
    claimed = [(start - moment).total_seconds() for _, start, _ in rows]
    return {
        "loaded": loaded,
        "statuses": Counter(status for status, _, _ in rows),
        "finishes": finishes,
        "claimed": claimed,
        "entries": len(rows),
    }


def bench_baseline(agents: int, latency: float, grace: float | None) -> dict[str, Any]:
    """The same jobs on APScheduler's BackgroundScheduler, its default 10-thread pool."""
    from apscheduler.events import EVENT_JOB_MISSED
    from apscheduler.schedulers.background import BackgroundScheduler
    from langchain_core.messages import HumanMessage

    model = ScriptedChatModel(responses=["done"] * agents, latency=latency)
    finished: list[float] = []
    missed: list[str] = []
    lock = threading.Lock()

    def job() -> None:
        model.invoke([HumanMessage("Say what changed.")])
        with lock:
            finished.append(time.time())

    options = {} if grace == 1.0 else {"job_defaults": {"misfire_grace_time": grace}}
    scheduler = BackgroundScheduler(**options)
    scheduler.add_listener(lambda event: missed.append(event.job_id), EVENT_JOB_MISSED)
    moment = datetime.now(UTC) + timedelta(seconds=2)
    for number in range(agents):
        scheduler.add_job(job, "date", run_date=moment, id=f"bench-{number:04d}")
    scheduler.start()
    deadline = time.monotonic() + 30 + agents * latency
    while time.monotonic() < deadline:
        time.sleep(0.1)
        with lock:
            if len(finished) + len(missed) >= agents:
                break
    scheduler.shutdown(wait=True)
    start = moment.timestamp()
    return {"finishes": [end - start for end in finished], "missed": len(missed)}


# -- (b) claims on PostgreSQL ---------------------------------------------------------------


def claimer(url: str, agents: int, moments: list[datetime], barrier: Any, out: Any) -> None:
    """One replica's share: a burst per moment, every agent's fire, as the fleet claims them.
    The processes start each burst together; between bursts (not timed) each marks the claims
    it won done, as a replica does when their runs end."""
    ledger = Ledger.open(url)
    replica = f"bench:{os.getpid()}"
    won: list[tuple[str, str]] = []
    spans: list[float] = []
    try:
        for moment in moments:
            fires = []
            for number in range(agents):
                agent = f"bench-{number:04d}"
                entry = ledger.entry_values(
                    agent,
                    trigger_kind="schedule",
                    scheduled_for=moment,
                    idempotency_key=claims.fire_key(agent, moment),
                )
                fires.append(claims.Fire(agent, moment, entry))
            barrier.wait()
            started = time.perf_counter()
            found = claims.claim_all(ledger, fires, replica=replica, lease_seconds=60)
            spans.append(time.perf_counter() - started)
            mine = [fire for fire, got in zip(fires, found, strict=True) if got.won]
            won += [(fire.agent, fire.fire_time.isoformat()) for fire in mine]
            claims.finish(ledger, [(fire.agent, fire.fire_time) for fire in mine])
        out.put((replica, spans, won))
    finally:
        ledger.close()


def bench_claims(url: str, agents: int, bursts: int) -> dict[str, Any]:
    Ledger.open(url).close()  # the schema exists before the processes race
    base = datetime(2026, 1, 1, tzinfo=UTC)
    moments = [base + timedelta(minutes=n) for n in range(bursts)]
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(PROCESSES)
    out = context.Queue()
    processes = [
        context.Process(target=claimer, args=(url, agents, moments, barrier, out))
        for _ in range(PROCESSES)
    ]
    for process in processes:
        process.start()
    results = [out.get(timeout=600) for _ in processes]
    for process in processes:
        process.join(timeout=60)
    # A burst lasts until its last process is done with it.
    wall = sum(max(spans[n] for _, spans, _ in results) for n in range(bursts))
    fires = agents * bursts
    wins = Counter(key for _, _, won in results for key in won)
    with Ledger.open(url) as ledger:
        claim_rows = ledger.read(
            lambda c: c.execute(select(func.count()).select_from(claims_table)).scalar()
        )
        opened = ledger.read(
            lambda c: c.execute(select(func.count()).select_from(entries)).scalar()
        )
    return {
        "fires": fires,
        "wall": wall,
        "per_process": sorted((replica, len(won)) for replica, _, won in results),
        "doubles": sum(1 for count in wins.values() if count > 1),
        "unclaimed": fires - len(wins),
        "claim_rows": claim_rows,
        "entries": opened,
    }


# -- report ---------------------------------------------------------------------------------


def figures(label: str, finishes: list[float], extra: str = "") -> str:
    if not finishes:
        return f"  {label:<44} {'-':>8} {'-':>8} {'-':>9}  {extra}"
    return (
        f"  {label:<44} {percentile(finishes, 0.5):7.2f}s {percentile(finishes, 0.99):7.2f}s "
        f"{max(finishes):8.2f}s  {extra}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="200 agents and 5 bursts")
    parser.add_argument("--agents", type=int, help="agents due at the same moment (1,000)")
    parser.add_argument("--latency", type=float, default=1.0, help="model seconds per call")
    parser.add_argument("--bursts", type=int, help="fire times claimed in (b) (10)")
    parser.add_argument("--no-postgres", action="store_true", help="skip (b)")
    parser.add_argument(
        "--no-full-baseline",
        action="store_true",
        help="skip the baseline that runs every job (N/10 x latency seconds)",
    )
    options = parser.parse_args()
    logging.getLogger("apscheduler").setLevel(logging.ERROR)  # 990 "was missed by" lines
    agents = options.agents or (200 if options.quick else 1000)
    bursts = options.bursts or (5 if options.quick else 10)
    postgres = None if options.no_postgres else pg_version()
    print("MeshAgent scheduler benchmark" + (" (--quick)" if options.quick else ""))
    print(
        f"machine: {os.cpu_count()} CPUs, {platform.machine()}, Python "
        f"{platform.python_version()}; load average before: {load_average()}"
    )
    verdicts: list[tuple[str, str, str, str]] = []

    with tempfile.TemporaryDirectory(prefix="meshagent-bench-") as directory:
        fleet = asyncio.run(bench_fleet(Path(directory), agents, options.latency))
    print(
        f"\n(a) {agents} agents due at the same moment, scripted model {options.latency:g} s, "
        f"one replica, SQLite ledger (fleet start with {agents} agent files: "
        f"{fleet['loaded']:.1f} s, not timed)"
    )
    print(f"  {'':<44} {'p50':>8} {'p99':>8} {'makespan':>9}  (fire-to-finish)")
    statuses = ", ".join(f"{k} {v}" for k, v in sorted(fleet["statuses"].items()))
    print(figures("meshagent Fleet (AsyncIOScheduler + claims)", fleet["finishes"], statuses))
    if fleet["claimed"]:
        print(
            f"  {'':<44} every fire taken up (its entry made for its claim) by "
            f"{max(fleet['claimed']):.2f} s after the moment"
        )
    baseline = bench_baseline(agents, options.latency, 1.0)
    print(
        figures(
            "APScheduler BackgroundScheduler, defaults",
            baseline["finishes"],
            f"ran {len(baseline['finishes'])}, skipped {baseline['missed']} (misfire grace 1 s)",
        )
    )
    if not options.no_full_baseline:
        full = bench_baseline(agents, options.latency, None)
        print(
            figures(
                "  the same, misfire_grace_time=None",
                full["finishes"],
                f"ran {len(full['finishes'])}, skipped {full['missed']}",
            )
        )
    complete = fleet["entries"] == agents and len(fleet["finishes"]) == agents
    makespan = max(fleet["finishes"]) if fleet["finishes"] else float("inf")
    verdicts.append(
        (
            f"(a) makespan, {agents} agents due at once",
            f"{makespan:.2f} s" + ("" if complete else f" ({len(fleet['finishes'])} closed)"),
            f"<= {TARGET_MAKESPAN_S:g} s",
            verdict(complete and makespan <= TARGET_MAKESPAN_S),
        )
    )

    print(f"\n(b) claims on PostgreSQL {postgres or ''} from {PROCESSES} processes, the same fires")
    if options.no_postgres or postgres is None:
        print("  skipped" if options.no_postgres else "  PostgreSQL at 127.0.0.1:5432 unreachable")
        verdicts.append(("(b) no double claim", "not run", "0 doubles", verdict(None)))
    else:
        with pg_schema() as url:
            found = bench_claims(url, agents, bursts)
        fires, wall = found["fires"], found["wall"]
        print(
            f"  {fires} fires ({agents} agents x {bursts} fire times, a burst each), "
            f"{PROCESSES * fires} claim attempts in {wall:.2f} s"
        )
        print(
            f"  {PROCESSES * fires / wall:,.0f} claim attempts/s, {fires / wall:,.0f} fires "
            "claimed/s (a burst timed from its common start to its last process's commit; "
            "each won fire opens its entry in the same transaction)"
        )
        print(f"  won per process: {', '.join(f'{r} {n}' for r, n in found['per_process'])}")
        print(
            f"  double claims: {found['doubles']}, fires nobody won: {found['unclaimed']}, "
            f"claim rows: {found['claim_rows']}, entries: {found['entries']} (of {fires})"
        )
        exact = (
            found["doubles"] == 0
            and found["unclaimed"] == 0
            and found["claim_rows"] == fires
            and found["entries"] == fires
        )
        verdicts.append(
            (
                "(b) every fire claimed exactly once",
                f"{found['doubles']} doubles, {found['unclaimed']} unclaimed",
                "0 and 0",
                verdict(exact),
            )
        )

    print(f"\nload average after: {load_average()}")
    print("\ntargets")
    for label, value, target, met in verdicts:
        print(f"  {label:<44} {value:>22}  target {target:<10} {met}")


if __name__ == "__main__":
    main()
