"""A daily budget holds across concurrent runs and replicas (issue #17, item 6).

The attack: 50 runs of one agent whose max_usd_per_day affords four calls, started together from
two processes on one ledger. Checked against what was spent, every run passes before any of
them spends; with reservations the day ends at most one call's cost over the budget.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import func, select

from meshagent.ledger.schema import entries, reservations
from meshagent.ledger.store import Ledger
from meshagent.models import ScriptedChatModel
from meshagent.runtime.model_calls import DEFAULT_OUTPUT_CAP
from meshagent.runtime.runner import RunResult
from tests.ledger.conftest import pg_schema_url, pg_shared, sqlite_url  # noqa: F401
from tests.security.budget_runner import LIMIT, answers, run_many, runtime, spec

ROOT = Path(__file__).resolve().parents[2]
RUNS = 50


def _start(url: str, runs: int, start_at: float, latency: float, *more: str) -> subprocess.Popen:
    command = [sys.executable, "-m", "tests.security.budget_runner", url, str(runs),
               str(start_at), str(latency), *more]  # fmt: skip
    return subprocess.Popen(
        command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


def _spent(url: str) -> tuple[Decimal, Decimal, Counter]:
    """The agent's total cost, its costliest run, and its runs by status."""
    with Ledger.open(url) as ledger:
        query = select(entries.c.status, entries.c.cost_usd).where(entries.c.agent == "spender")
        rows = ledger.read(lambda c: c.execute(query).all())
    costs = [Decimal(cost or 0) for _, cost in rows]
    return sum(costs, Decimal(0)), max(costs, default=Decimal(0)), Counter(s for s, _ in rows)


def _attack(url: str, processes: int) -> tuple[Decimal, Decimal, Counter]:
    Ledger.open(url).close()  # the schema exists before the processes race
    start_at = time.time() + 4  # both have imported and connected by then
    runners = [_start(url, RUNS // processes, start_at, 0.5) for _ in range(processes)]
    outputs = [runner.communicate(timeout=120)[0] for runner in runners]
    for runner, output in zip(runners, outputs, strict=True):
        assert runner.returncode == 0, output
        assert "Traceback" not in output, output
    return _spent(url)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def backend_url(request: pytest.FixtureRequest) -> str:
    return request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "pg_schema_url")


def test_fifty_runs_from_two_processes_stay_within_one_call_of_the_budget(backend_url):
    spent, costliest, statuses = _attack(backend_url, processes=2)
    budget = Decimal(LIMIT)
    print(f"spent ${spent} of a ${budget} budget; runs: {dict(statuses)}")
    assert sum(statuses.values()) == RUNS
    assert statuses["ok"] >= 1
    assert spent <= budget + costliest, f"spent ${spent} of a ${budget} daily budget"
    assert statuses["ok"] + statuses["over_budget"] == RUNS


def _held(url: str) -> int:
    """How many reservations the ledger holds."""
    with Ledger.open(url) as ledger:
        query = select(func.count()).select_from(reservations)
        return ledger.read(lambda c: c.execute(query).scalar())


def test_fifty_runs_at_once_in_one_process_on_sqlite(tmp_path):
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    statuses = asyncio.run(run_many(url, RUNS, time.time(), 0.2))
    spent, costliest, by_status = _spent(url)
    print(f"spent ${spent} of a ${LIMIT} budget; runs: {dict(by_status)}")
    assert Counter(statuses) == by_status and by_status["ok"] >= 1
    assert spent <= Decimal(LIMIT) + costliest
    assert _held(url) == 0  # every call's reservation became its cost


def _one_run(url: str, clock=None) -> RunResult:
    model = ScriptedChatModel(responses=answers(1))
    runner = runtime(url, model, clock=clock)
    try:
        return asyncio.run(runner.run(spec()))
    finally:
        runner.ledger.close()


def test_a_crashed_runs_reservation_holds_until_recovery_or_expiry(backend_url):
    Ledger.open(backend_url).close()
    # One run whose call may cost $0.05 (5,000 output tokens) of the $0.02 budget, in another
    # process, hanging in its model call until it is killed.
    crashing = _start(backend_url, 1, time.time(), 600, "5000")
    try:
        deadline = time.monotonic() + 60
        while _held(backend_url) == 0:
            assert crashing.poll() is None, crashing.communicate()[0]
            assert time.monotonic() < deadline, "the run never reserved"
            time.sleep(0.1)
        refused = _one_run(backend_url)  # the other process's call in flight holds the day
        assert refused.status == "over_budget" and "held by calls in flight" in refused.error
    finally:
        crashing.send_signal(signal.SIGKILL)
        crashing.communicate(timeout=30)  # reaped, its pipe closed
    assert _one_run(backend_url).status == "over_budget"  # dead, but not yet known to be
    # Its run's time limit (60 s) and the grace after it passed: the reservation counts no more.
    later = datetime.now(UTC) + timedelta(seconds=125)
    assert _one_run(backend_url, clock=lambda: later).status == "ok"
    with Ledger.open(backend_url) as ledger:
        [crashed] = ledger.recover()
        assert ledger.entry(crashed)["status"] == "interrupted"
    assert _held(backend_url) == 0  # recovery released what the dead run held
    spent, _, _ = _spent(backend_url)
    assert _one_run(backend_url).status == "ok" and spent < Decimal(LIMIT)


def test_a_model_without_a_price_cannot_run_under_a_daily_budget(tmp_path):
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    model = ScriptedChatModel(responses=answers(1))
    unpriced = spec().model_copy(update={"model": "openai:acme-unpriced"})
    runner = runtime(url, model)
    try:
        result = asyncio.run(runner.run(unpriced))
    finally:
        runner.ledger.close()
    assert result.status == "over_budget" and not model.calls
    assert result.error == (
        f"max_usd_per_day of ${LIMIT} cannot be kept: the price of openai:acme-unpriced is "
        'unknown (add [prices."openai:acme-unpriced"] to meshagent.toml)'
    )


def test_each_call_of_a_run_reserves_and_the_next_write_settles_it(sandbox, ledger, monkeypatch):
    from meshagent.ledger import budget
    from tests.runtime.conftest import agent, make_runtime
    from tests.runtime.test_runtime import TRIAGE

    seen: list[budget.Standing] = []
    reserve = budget.reserve

    def watched(ledger_, **options):
        seen.append(budget.standing(ledger_, options["agent"], options["day"], options["now"]))
        return reserve(ledger_, **options)

    monkeypatch.setattr(budget, "reserve", watched)
    comment = {"name": "jira_add_comment", "args": {"key": "PAY-3", "body": "Blocked on legal"}}
    model = ScriptedChatModel(
        responses=[
            {"tool_calls": [comment], "usage": {"output_tokens": 100}},
            {"content": "Commented on PAY-3.", "usage": {"output_tokens": 100}},
        ]
    )
    spec_ = agent(
        TRIAGE.replace("model: scripted", "model: openai:acme-budget").replace(
            "budget: {max_model_calls: 4}",
            "budget: {max_model_calls: 4, max_usd_per_day: 1}\n    "
            "model_settings: {max_output_tokens: 200}",
        )
    )
    runtime_ = make_runtime(sandbox, ledger, model, prices={"openai:acme-budget": {
        "input_per_mtok": "1", "output_per_mtok": "10"}})  # fmt: skip
    result = asyncio.run(runtime_.run(spec_))
    assert result.status == "ok", result.error
    assert len(seen) == 2 and ledger.entry(result.run_id)["cost_usd"] == result.cost_usd
    assert seen[0] == budget.Standing(Decimal(0), 0, Decimal(0))
    # At the second call the first one's reservation has become its cost, in one write.
    assert seen[1].reserved == 0 and 0 < seen[1].spent < result.cost_usd
    assert _held(ledger.url) == 0


def test_reports_never_count_a_reservation_as_spend(tmp_path):
    from meshagent.config import PrivacySettings
    from meshagent.ledger import budget, reports
    from meshagent.ledger.periods import Period

    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    assert _one_run(url).status == "ok"
    now = datetime.now(UTC)
    with Ledger.open(url) as ledger:
        taken, _ = budget.reserve(
            ledger, agent="spender", day=now.date(), run_id="in-flight", amount=Decimal("0.01"),
            limit=Decimal(1), now=now, expires_at=now + timedelta(minutes=5),
        )  # fmt: skip
        assert taken is not None
        admin = PrivacySettings(min_group_size=1, admins=("root@example.com",))
        report = reports.summary(
            ledger, by="agent", period=Period.day(now.date()), viewer="root@example.com",
            privacy=admin,
        )  # fmt: skip
    [row] = report.rows
    assert row.cost_usd == _spent(url)[0] < Decimal("0.01")


def test_a_real_client_is_held_to_the_output_its_call_reserved(tmp_path):
    """ChatOpenAI takes max_tokens: the cap the reservation priced is sent with the request, so
    the provider cannot answer past it; an agent without a daily budget sends none."""
    from tests.runtime.openai_server import OpenAIServer, answer, usage

    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    budgeted = spec().model_copy(update={"model": "openai:gpt-4o-mini"})
    free = budgeted.model_copy(update={"budget": budgeted.budget.model_copy(
        update={"max_usd_per_day": None})})  # fmt: skip
    # No max_output_tokens, and more tokens per run than any model writes in one answer.
    defaulted = budgeted.model_copy(update={
        "model_settings": budgeted.model_settings.model_copy(update={"max_output_tokens": None}),
        "budget": budgeted.budget.model_copy(update={"max_tokens_per_run": 200_000}),
    })  # fmt: skip
    with OpenAIServer() as server:
        server.script(*[answer("done", usage(40, 5))] * 3)
        runner = runtime(url, server.chat_model())
        try:
            for agent in (budgeted, free, defaulted):
                assert asyncio.run(runner.run(agent)).status == "ok"
        finally:
            runner.ledger.close()
        held, unheld, default = server.requests
    assert held["max_completion_tokens"] == 500  # model_settings.max_output_tokens
    assert "max_completion_tokens" not in unheld and "max_tokens" not in unheld
    assert default["max_completion_tokens"] == DEFAULT_OUTPUT_CAP


def test_a_reservation_leaves_the_ledgers_other_writes_durable(tmp_path):
    """A reservation's SQLite commit skips the disk; the connection goes back to the pool as
    durable as the ledger's writes are (synchronous FULL, with sync=full)."""
    from meshagent.ledger import budget

    now = datetime.now(UTC)
    with Ledger.open(f"sqlite:///{tmp_path / 'ledger.db'}?sync=full") as ledger:
        for _ in range(2):
            budget.reserve(
                ledger, agent="spender", day=now.date(), run_id="run", amount=Decimal("0.01"),
                limit=Decimal(1), now=now, expires_at=now + timedelta(minutes=5),
            )  # fmt: skip
        with ledger.engine.connect() as connection:
            assert connection.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL


def test_a_day_with_spending_of_unknown_cost_refuses_further_calls(tmp_path):
    """Tokens without a price are an unknown cost, never $0: the day cannot be held to a limit."""
    from meshagent.ledger.records import Usage

    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    with Ledger.open(url) as ledger:
        unpriced = ledger.open_run("spender")
        ledger.close_run(unpriced, "ok", usage=Usage(input_tokens=900, output_tokens=100))
        assert ledger.entry(unpriced)["cost_usd"] is None
    refused = _one_run(url)
    assert (refused.status, refused.error) == (
        "over_budget",
        f"max_usd_per_day of ${LIMIT} cannot be kept today: a run of today spent tokens at an "
        "unknown price (a price override in meshagent.toml prices later runs)",
    )
