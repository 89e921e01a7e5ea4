"""Dashboard benchmark (not a test): the render time of every page over a 1,000,000-entry ledger.

The SQLite ledger is seeded fast: the entries, outcomes, feedback and events go in with
executemany, and the daily rollup is summed in Python and written the same way (no hash chain:
nothing here verifies it). The seeded file is kept and reused while its parameters match.

    python bench/bench_dashboard.py [--entries N] [--db PATH] [--repeat N] [--fresh]

Each page is requested through the ASGI app in-process (HTTP parsing, routing, queries,
templates and SVG charts included), as an admin and as a member whose view is folded: first cold
(empty caches: a page waits at most 150 ms for flags, forecast and trend, then says they are
being computed), then, once those are computed, warm (median and worst of --repeat).
"""

from __future__ import annotations

import argparse
import random
import sqlite3
import statistics
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from meshagent.config import Config, PrivacySettings
from meshagent.ledger import Ledger
from meshagent.ledger.schema import DAILY_KEYS, DAILY_SUMS, entries

TODAY = date(2025, 6, 25)  # a Wednesday: "this week" is three days old
SPAN_DAYS = 365
PEOPLE = 400
TEAMS = 40
AGENTS = 250
SLASH_AGENTS = 50  # the last agents run on /commands, triggered by anyone
TAGS = ("toil-reduction", "incident-response", "customer-support", "code-quality", "planning")
MODELS = {  # USD per token (input, output); None: a model without a known price
    "gpt-4.1-mini": (4e-7, 1.6e-6),
    "gpt-4.1": (2e-6, 8e-6),
    "claude-sonnet-4": (3e-6, 1.5e-5),
    "internal-llm": None,
}
MONEY = 10**10  # the ledger keeps USD on SQLite as integer units of 1e-10
ADMIN = "admin@example.com"
MEMBER = "person-120@example.com"  # owns three busy agents


def _moment(value: datetime) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S.%f")


def _world(rng: random.Random) -> tuple[list[str], list[dict[str, Any]]]:
    """People in teams of very different sizes, and the agents they own."""
    weights = [1 + (i % 7) ** 2 for i in range(TEAMS)]  # some teams of one or two people
    team_of = [f"team-{rng.choices(range(TEAMS), weights)[0]:02d}" for _ in range(PEOPLE)]
    people = [f"person-{i:03d}@example.com" for i in range(PEOPLE)]
    agents = []
    for index in range(AGENTS):
        owner = rng.randrange(PEOPLE)
        model = rng.choices(list(MODELS), [60, 20, 17, 3])[0]
        agents.append(
            {
                "agent": f"agent-{index:03d}",
                "owner": people[owner],
                "team": team_of[owner],
                "value_tag": TAGS[index % len(TAGS)],
                "model": model,
                "slash": index >= AGENTS - SLASH_AGENTS,
                "tokens": rng.randrange(800, 12_000),
                "minutes": rng.choice((0, 5, 10, 15, 30)),
                "weight": rng.uniform(0.2, 3.0),
            }
        )
    return people, agents


def _runs(count: int, seed: int) -> Iterator[tuple[dict[str, Any], list, list, list]]:
    """(entry, outcomes, feedback, events) of `count` runs over the year up to TODAY."""
    rng = random.Random(seed)
    people, agents = _world(rng)
    weights = [agent["weight"] for agent in agents]
    start = datetime(TODAY.year, TODAY.month, TODAY.day, tzinfo=UTC) - timedelta(days=SPAN_DAYS - 1)
    span = SPAN_DAYS * 86_400 - 3_600
    offsets = sorted(rng.randrange(span) for _ in range(count))
    last_hash: dict[str, str] = {}
    for offset, agent in zip(offsets, rng.choices(agents, weights, k=count), strict=True):
        started = start + timedelta(seconds=offset)
        finished = started + timedelta(seconds=rng.randrange(2, 90))
        run_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        status = rng.choices(("ok", "failed", "skipped_unchanged", "over_budget"), [93, 4, 2, 1])[0]
        tokens_in = (
            int(agent["tokens"] * rng.uniform(0.5, 1.5)) if status != "skipped_unchanged" else 0
        )
        if rng.random() < 0.002:
            tokens_in *= 12  # the odd runaway run
        tokens_out = tokens_in // rng.randrange(4, 12)
        price = MODELS[agent["model"]]
        if price is None:
            cost_in = cost_out = cost = None
        else:
            cost_in = int(tokens_in * price[0] * MONEY)
            cost_out = int(tokens_out * price[1] * MONEY)
            cost = cost_in + cost_out
        same = rng.random() < 0.03 and agent["agent"] in last_hash
        input_hash = last_hash[agent["agent"]] if same else f"{rng.getrandbits(64):016x}"
        last_hash[agent["agent"]] = input_hash
        triggered_by = rng.choice(people) if agent["slash"] else None
        entry = {
            "run_id": run_id,
            "process": "bench",
            "agent": agent["agent"],
            "agent_version": "v1",
            "owner": agent["owner"],
            "team": agent["team"],
            "trigger_kind": "slash" if agent["slash"] else "schedule",
            "triggered_by": triggered_by,
            "scheduled_for": None if agent["slash"] else _moment(started),
            "started_at": _moment(started),
            "finished_at": _moment(finished),
            "status": status,
            "provider": "openai",
            "model_requested": f"openai:{agent['model']}",
            "model_answered": agent["model"],
            "model_calls": 1,
            "tool_calls": 1,
            "input_tokens": tokens_in,
            "cache_read_tokens": 0,
            "cache_write_tokens": 0,
            "output_tokens": tokens_out,
            "reasoning_tokens": 0,
            "usage_estimated": 0,
            "cost_input_usd": cost_in,
            "cost_cache_usd": None if cost is None else 0,
            "cost_output_usd": cost_out,
            "cost_usd": cost,
            "price_source": None if cost is None else "bench",
            "value_tag": agent["value_tag"],
            "minutes_saved": agent["minutes"] * 100,
            "input_hash": input_hash,
            "error": "model timed out" if status == "failed" else None,
        }
        found: list[tuple] = []
        votes: list[tuple] = []
        steps: list[tuple] = []
        if status == "ok" and rng.random() < 0.65:
            if rng.random() < 0.5:
                ts = f"{offset}.{rng.randrange(10**6):06d}"
                url = f"https://example.slack.com/archives/C0BENCH/p{ts.replace('.', '')}"
                found.append((run_id, "slack.message", f"C0BENCH:{ts}", url, _moment(finished)))
            else:
                key = f"OPS-{offset}"
                url = f"https://example.atlassian.net/browse/{key}"
                found.append((run_id, "jira.issue", key, url, _moment(finished)))
            if rng.random() < 0.05:
                for person in rng.sample(people, rng.randrange(1, 4)):
                    vote = 1 if rng.random() < 0.7 else -1
                    votes.append((run_id, person, vote, None, _moment(finished)))
        if rng.random() < 0.1:
            steps.append((run_id, _moment(started), "tool_call", "jira.search", "3 issues"))
            if rng.random() < 0.2:
                steps.append((run_id, _moment(started), "tool_refused", "slack.delete", "denied"))
        yield entry, found, votes, steps


def seed(path: Path, count: int, seed_value: int = 7) -> None:
    """Create a ledger of `count` entries at `path` (its schema through Ledger.open)."""
    path.unlink(missing_ok=True)
    Ledger.open(f"sqlite:///{path}").close()
    connection = sqlite3.connect(path, isolation_level=None)
    connection.execute("PRAGMA synchronous=OFF")
    names = [c.name for c in entries.columns if c.name not in {"id", "idempotency_key"}]
    names = [n for n in names if n not in {"seq", "prev_hash", "entry_hash", "price_version"}]
    insert_entry = (
        f"INSERT INTO ledger_entries ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})"
    )
    daily: dict[tuple, list[int]] = {}
    batch: list[tuple] = []
    outcome_rows: list[tuple] = []
    vote_rows: list[tuple] = []
    event_rows: list[tuple] = []

    def flush() -> None:
        connection.execute("BEGIN")
        connection.executemany(insert_entry, batch)
        connection.executemany(
            "INSERT INTO ledger_outcomes (run_id, kind, ref, url, created_at) "
            "VALUES (?, ?, ?, ?, ?)",
            outcome_rows,
        )
        connection.executemany(
            "INSERT INTO ledger_feedback (run_id, person, vote, comment, created_at) "
            "VALUES (?, ?, ?, ?, ?)",
            vote_rows,
        )
        connection.executemany(
            "INSERT INTO ledger_events (run_id, at, kind, name, detail) VALUES (?, ?, ?, ?, ?)",
            event_rows,
        )
        connection.execute("COMMIT")
        for rows in (batch, outcome_rows, vote_rows, event_rows):
            rows.clear()

    for entry, found, votes, steps in _runs(count, seed_value):
        batch.append(tuple(entry[name] for name in names))
        outcome_rows += found
        vote_rows += votes
        event_rows += steps
        key = (
            entry["started_at"][:10],
            entry["agent"],
            entry["owner"],
            entry["team"],
            entry["value_tag"],
            entry["model_answered"],
            entry["triggered_by"] or entry["owner"],
        )
        sums = daily.setdefault(key, [0] * len(DAILY_SUMS))
        pos = sum(1 for vote in votes if vote[2] == 1)
        values = (
            1,
            int(bool(found)),
            entry["input_tokens"],
            0,
            0,
            entry["output_tokens"],
            0,
            entry["cost_usd"] or 0,
            int(entry["cost_usd"] is None),
            entry["minutes_saved"] if found else 0,
            pos,
            len(votes) - pos,
        )
        for index, value in enumerate(values):
            sums[index] += value
        if len(batch) >= 20_000:
            flush()
    flush()
    columns = [*DAILY_KEYS, *DAILY_SUMS]
    connection.execute("BEGIN")
    connection.executemany(
        f"INSERT INTO ledger_daily ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})",
        [(*key, *sums) for key, sums in daily.items()],
    )
    connection.execute("DELETE FROM ledger_chain")
    connection.execute(
        "INSERT INTO ledger_chain (id, seq, hash) VALUES (1, ?, ?)", (count, "0" * 64)
    )
    connection.execute("COMMIT")
    connection.execute("ANALYZE")
    connection.close()


def _seeded(path: Path, count: int, fresh: bool) -> Path:
    marker = path.with_suffix(".seeded")
    wanted = f"{count} entries up to {TODAY}, v1"
    if fresh or not path.exists() or not marker.exists() or marker.read_text() != wanted:
        started = time.perf_counter()
        print(f"seeding {count:,} entries into {path} ...", flush=True)
        seed(path, count)
        marker.write_text(wanted)
        print(f"seeded in {time.perf_counter() - started:.1f} s", flush=True)
    return path


def _pages(client: Any, ledger: Ledger, viewer: str) -> dict[str, str]:
    """One URL per page, with the filters a person would use."""
    if viewer != ADMIN:
        agent, run_id = ledger.read(
            lambda c: c.exec_driver_sql(
                "SELECT agent, run_id FROM ledger_entries WHERE owner = ? "
                "ORDER BY started_at DESC LIMIT 1",
                (viewer,),
            ).one()
        )
        return {
            "overview": "/",
            "overview (month, one team)": "/?period=month&team=team-06",
            "agents": "/agents",
            "agents (month, sorted by cost)": "/agents?period=month&sort=cost",
            "agent detail (own agent)": f"/agents/{agent}",
            "run detail (own run)": f"/runs/{run_id}",
            "flags": "/flags",
            "api/overview": "/api/overview",
            "api/agents": "/api/agents",
        }
    agent = ledger.read(
        lambda c: c.exec_driver_sql(
            "SELECT agent FROM ledger_daily WHERE day >= ? GROUP BY agent ORDER BY sum(runs) DESC",
            (str(TODAY - timedelta(days=7)),),
        ).scalar()
    )
    run_id = ledger.read(
        lambda c: c.exec_driver_sql(
            "SELECT e.run_id FROM ledger_events e JOIN ledger_outcomes o ON o.run_id = e.run_id "
            "ORDER BY e.id DESC LIMIT 1"
        ).scalar()
    )
    return {
        "overview": "/",
        "overview (month, one team)": "/?period=month&team=team-06",
        "agents": "/agents",
        "agents (month, sorted by cost)": "/agents?period=month&sort=cost",
        "agent detail": f"/agents/{agent}",
        "run detail": f"/runs/{run_id}",
        "flags": "/flags",
        "api/overview": "/api/overview",
        "api/agents": "/api/agents",
    }


def _measure(client: Any, url: str, headers: dict[str, str], repeat: int) -> list[float]:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        response = client.get(url, headers=headers)
        times.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200, (url, response.status_code)
    return times


def bench(path: Path, repeat: int) -> None:
    """Cold (first request, empty caches) and warm (median) render times per page and viewer."""
    from starlette.testclient import TestClient

    from meshagent.dashboard import create_dashboard

    config = Config(
        ledger_url=f"sqlite:///{path}", privacy=PrivacySettings(admins=(ADMIN,), min_group_size=5)
    )
    with Ledger.open(config.ledger_url) as ledger:
        print(f"{ledger.count():,} entries in {path}; render times in ms")
        for viewer in (ADMIN, MEMBER):
            app = create_dashboard(
                config,
                ledger=ledger,
                today=lambda: TODAY,
                fires_per_month=lambda today: {f"agent-{i:03d}": 30.0 for i in range(AGENTS)},
            )
            headers = {"X-Forwarded-User": viewer}
            role = "admin: nothing folded" if viewer == ADMIN else "member: folded, own runs"
            print(f"\nviewer {viewer} ({role})")
            print(f"{'page':34} {'cold':>8} {'warm':>8} {'worst':>8}")
            with TestClient(app) as client:
                urls = _pages(client, ledger, viewer)
                cold = {name: _measure(client, url, headers, 1)[0] for name, url in urls.items()}
                settled = app.state.pages.memo.settle(600)
                for name, url in urls.items():
                    times = _measure(client, url, headers, repeat)
                    warm = statistics.median(times)
                    verdict = "ok" if warm <= 300 else "SLOW"
                    print(f"{name:34} {cold[name]:8.1f} {warm:8.1f} {max(times):8.1f}  {verdict}")
                if not settled:
                    print("(background computations did not finish in 600 s)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--db", type=Path, default=Path("/tmp/meshagent-bench-dashboard.db"))
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--fresh", action="store_true", help="Seed again even if the file exists.")
    args = parser.parse_args()
    bench(_seeded(args.db, args.entries, args.fresh), args.repeat)


if __name__ == "__main__":
    main()
