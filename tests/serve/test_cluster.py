"""Three `meshagent serve` replicas on one PostgreSQL ledger: each fire runs exactly once,
and none is lost when a replica is killed with SIGKILL halfway."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy import select

from meshagent.ledger.schema import entries
from meshagent.ledger.store import Ledger
from meshagent.scheduler import ANCHOR
from tests.serve.conftest import write_agent

AGENTS = 50
INTERVAL = 2  # seconds
RUN_SECONDS = 32


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _start(url: str, agents, port: int, log) -> subprocess.Popen:
    env = {
        **os.environ,
        "MESHAGENT_LEDGER_URL": url,
        "MESHAGENT_SERVE__CLAIM_LEASE_SECONDS": "3",
        "MESHAGENT_SERVE__MIN_INTERVAL_SECONDS": "1",
        "MESHAGENT_SERVE__MISFIRE_GRACE_SECONDS": "60",
        "MESHAGENT_SERVE__SHUTDOWN_TIMEOUT_SECONDS": "10",
    }
    command = [sys.executable, "-m", "meshagent", "serve", "--port", str(port),
               "--agents", str(agents), "--log-level", "warning"]  # fmt: skip
    return subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)


def _wait_ready(port: int, process: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            output = process.stdout.read() if process.stdout else ""
            raise AssertionError(f"a replica exited during start-up:\n{output}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"replica on port {port} never became ready")


def _expected(start: datetime, end: datetime) -> list[datetime]:
    step = timedelta(seconds=INTERVAL)
    first = ANCHOR + step * -(-int((start - ANCHOR).total_seconds()) // INTERVAL)
    fires = []
    while first <= end:
        fires.append(first)
        first += step
    return fires


@pytest.mark.postgres
def test_three_replicas_run_every_fire_exactly_once_despite_a_sigkill(tmp_path, pg_schema_url):
    agents = tmp_path / "agents"
    agents.mkdir()
    for number in range(AGENTS):
        write_agent(agents, f"fleet-{number:02d}", every=f"{INTERVAL}s")
    Ledger.open(pg_schema_url).close()  # the schema exists before the replicas race
    ports = [_free_port() for _ in range(3)]
    logs = [(tmp_path / f"replica-{n}.log").open("w") for n in range(3)]
    replicas = [_start(pg_schema_url, agents, port, log)
                for port, log in zip(ports, logs, strict=True)]  # fmt: skip
    try:
        for port, process in zip(ports, replicas, strict=True):
            _wait_ready(port, process)
        start = datetime.now(UTC) + timedelta(seconds=1)
        time.sleep(RUN_SECONDS / 2)
        victim = replicas[1]
        victim.send_signal(signal.SIGKILL)
        victim.wait(timeout=10)
        time.sleep(RUN_SECONDS / 2)
        end = datetime.now(UTC) - timedelta(seconds=1)
        metrics = [httpx.get(f"http://127.0.0.1:{port}/metrics").text
                   for port in (ports[0], ports[2])]  # fmt: skip
        for process in (replicas[0], replicas[2]):
            process.send_signal(signal.SIGTERM)
        for process in (replicas[0], replicas[2]):
            # uvicorn shuts down gracefully, then re-raises the signal it caught
            assert process.wait(timeout=30) in (0, -signal.SIGTERM)
    finally:
        for process in replicas:
            if process.poll() is None:
                process.kill()
        for log in logs:
            log.close()

    for n in (0, 2):
        assert "Traceback" not in (tmp_path / f"replica-{n}.log").read_text()
    with Ledger.open(pg_schema_url) as ledger:
        query = select(entries.c.agent, entries.c.scheduled_for, entries.c.status)
        rows = ledger.read(lambda c: c.execute(query).all())
    per_fire = Counter((agent, fire) for agent, fire, _ in rows)
    assert max(per_fire.values()) == 1  # nothing ran twice
    expected = _expected(start, end)
    assert len(expected) >= RUN_SECONDS // INTERVAL - 2
    missing = [
        (f"fleet-{n:02d}", fire)
        for n in range(AGENTS)
        for fire in expected
        if (f"fleet-{n:02d}", fire) not in per_fire
    ]
    assert missing == [], f"{len(missing)} fires have no entry, e.g. {missing[:3]}"
    statuses = Counter(status for _, _, status in rows)
    assert statuses["running"] == 0  # the victim's runs were closed by the survivors
    assert statuses["ok"] >= 0.5 * len(rows), statuses  # the rest: missed, interrupted
    won = sum(int(line.rsplit(" ", 1)[1]) for text in metrics for line in text.splitlines()
              if line.startswith('meshagent_claims_total{result="won"}'))  # fmt: skip
    lost = sum(int(line.rsplit(" ", 1)[1]) for text in metrics for line in text.splitlines()
               if line.startswith('meshagent_claims_total{result="lost"}'))  # fmt: skip
    assert won > 0 and lost > 0  # the survivors really competed for the same fires
