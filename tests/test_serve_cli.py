"""`meshagent serve` as an operator reads it: one line per finished run, nothing else noisy."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

import httpx

from tests.serve.test_cluster import _free_port, _wait_ready

AGENT = """\
name: {name}
owner: ops@example.com
team: platform
model: offline
instructions: Say what changed.
triggers:
  - {trigger}
value: {{tag: experiment}}
"""


def test_serve_logs_one_line_per_run_and_stops_quietly_on_ctrl_c(tmp_path):
    agents = tmp_path / "agents"
    agents.mkdir()
    (agents / "ticker.yaml").write_text(AGENT.format(name="ticker", trigger="every: 1s"))
    morning = 'schedule: "0 9 * * MON-FRI"\n    timezone: Europe/Berlin'
    (agents / "morning.yaml").write_text(AGENT.format(name="morning", trigger=morning))
    port = _free_port()
    env = {
        **os.environ,
        "MESHAGENT_LEDGER_URL": f"sqlite:///{tmp_path / 'ledger.db'}",
        "MESHAGENT_SERVE__MIN_INTERVAL_SECONDS": "1",
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "meshagent", "serve", "--port", str(port), "--agents", str(agents)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True,  # Ctrl-C reaches the whole group: the dashboard's worker too
    )  # fmt: skip
    try:
        _wait_ready(port, process)
        root = httpx.get(f"http://127.0.0.1:{port}/", follow_redirects=False)
        assert (root.status_code, root.headers["location"]) == (307, "/dashboard/")
        time.sleep(2.5)
    finally:
        os.killpg(process.pid, signal.SIGINT)
        output, _ = process.communicate(timeout=60)
    assert "serving 2 agents" in output
    runs = [line for line in output.splitlines() if "meshagent.fleet.scheduler: run " in line]
    assert len(runs) >= 2, output
    for line in runs:
        assert re.search(
            r"run ticker ok: [\d,]+ tokens, \$0\.00, 0 outcomes \[run [0-9a-f-]{36}\]$", line
        ), line
    job = next(line for line in output.splitlines() if 'Added job "morning' in line)
    assert re.search(r'"morning \(0 9 \* \* MON-FRI Europe/Berlin, next .+\)"', job), job
    for noise in ("alembic", "Traceback", "KeyboardInterrupt", "leaked semaphore"):
        assert noise not in output, noise
