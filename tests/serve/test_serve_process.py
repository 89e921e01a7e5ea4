"""`meshagent serve` as a process: health, metrics, SIGTERM, --check, and SQLite's one replica."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import httpx
from sqlalchemy import select
from typer.testing import CliRunner

from meshagent.cli.main import app
from meshagent.ledger.schema import entries
from meshagent.ledger.store import Ledger
from tests.serve.conftest import write_agent
from tests.serve.test_cluster import _free_port, _wait_ready


def _serve(tmp_path, env_extra: dict[str, str], port: int) -> subprocess.Popen:
    env = {**os.environ, **env_extra}
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "meshagent",
            "serve",
            "--port",
            str(port),
            "--agents",
            str(tmp_path / "agents"),
        ],  # fmt: skip
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def test_health_metrics_and_a_graceful_sigterm(tmp_path, sandbox):
    agents = tmp_path / "agents"
    agents.mkdir()
    write_agent(agents, "quick")
    write_agent(agents, "slow-reader", body="context:\n  - jira.issue: {key: PAY-2}\n")
    sandbox.jira_faults.latency = 0.4  # every Jira call takes a while: runs are in flight
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    port = _free_port()
    env = {"MESHAGENT_LEDGER_URL": url, "MESHAGENT_SERVE__SHUTDOWN_TIMEOUT_SECONDS": "0.5",
           "MESHAGENT_SERVE__MIN_INTERVAL_SECONDS": "1", **sandbox.env()}  # fmt: skip
    process = _serve(tmp_path, env, port)
    try:
        _wait_ready(port, process)
        assert httpx.get(f"http://127.0.0.1:{port}/healthz").text == "ok\n"
        ready = httpx.get(f"http://127.0.0.1:{port}/readyz").json()
        assert ready["ready"] and ready["agents"] == 2 and ready["agent_file_errors"] == []
        time.sleep(3.2)
        metrics = httpx.get(f"http://127.0.0.1:{port}/metrics")
        assert metrics.headers["content-type"].startswith("text/plain; version=0.0.4")
        text = metrics.text
        assert 'meshagent_runs_total{agent="quick",status="ok"}' in text
        assert 'meshagent_tokens_total{agent="quick",kind="input"}' in text
        assert "meshagent_scheduler_lag_seconds_count" in text
        assert "# TYPE meshagent_claims_total counter" in text
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode in (0, -signal.SIGTERM)
    assert "Traceback" not in output
    with Ledger.open(url) as ledger:
        rows = ledger.read(lambda c: c.execute(select(entries.c.agent, entries.c.status)).all())
    statuses = {status for _, status in rows}
    assert "running" not in statuses  # every run finished or was closed as interrupted
    assert ("quick", "ok") in rows


def test_a_second_sqlite_replica_refuses_to_start(tmp_path):
    agents = tmp_path / "agents"
    agents.mkdir()
    write_agent(agents, "solo", every="1h")
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    first_port = _free_port()
    first = _serve(tmp_path, {"MESHAGENT_LEDGER_URL": url}, first_port)
    try:
        _wait_ready(first_port, first)
        second = subprocess.run(
            [
                sys.executable,
                "-m",
                "meshagent",
                "serve",
                "--port",
                str(_free_port()),
                "--agents",
                str(agents),
            ],  # fmt: skip
            env={**os.environ, "MESHAGENT_LEDGER_URL": url},
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        first.send_signal(signal.SIGTERM)
        first.communicate(timeout=30)
    assert second.returncode == 2
    message = " ".join(second.stderr.split())
    assert f"another meshagent serve (pid {first.pid}) already runs the fleet" in message
    assert "PostgreSQL" in message


def test_serve_check_validates_and_exits(tmp_path, monkeypatch):
    agents = tmp_path / "agents"
    agents.mkdir()
    write_agent(agents, "fine", every="1h")
    monkeypatch.setenv("MESHAGENT_LEDGER_URL", f"sqlite:///{tmp_path / 'ledger.db'}")
    ok = CliRunner().invoke(app, ["serve", "--check", "--agents", str(agents)])
    assert ok.exit_code == 0, ok.output
    assert "ok: 1 agent, 1 scheduled trigger, ledger reachable" in ok.output
    (agents / "bad.yaml").write_text("name: bad\nowner: x\n", encoding="utf-8")
    bad = CliRunner().invoke(app, ["serve", "--check", "--agents", str(agents)])
    assert bad.exit_code == 1 and "bad.yaml" in bad.output
