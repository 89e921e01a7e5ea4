"""The same dashboard over PostgreSQL, and pages that do not wait for slow results."""

from __future__ import annotations

import functools
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from meshagent.dashboard import create_dashboard
from meshagent.dashboard.views import jsonable, row_dict
from meshagent.ledger import Ledger, reports
from meshagent.ledger.flags import flag_report
from tests.ledger.conftest import pg_connect, pg_schema_url, pg_shared  # noqa: F401

from .world import ADMIN, FIRES, TEAMS, TODAY, WEEK, config, fill


@pytest.mark.postgres
@pytest.mark.parametrize("viewer", [ADMIN, TEAMS["big"][0], None])
def test_every_endpoint_on_postgresql(pg_schema_url, viewer):  # noqa: F811
    settings = config(pg_schema_url)
    with Ledger.open(pg_schema_url) as ledger:
        ids = fill(ledger)
        app = create_dashboard(
            settings, ledger=ledger, today=lambda: TODAY, fires_per_month=lambda t: FIRES
        )
        headers = {"X-Forwarded-User": viewer} if viewer else {}
        with TestClient(app, headers=headers) as client:
            for path in ("/", "/agents?period=month", "/agents/ask", "/flags", "/?team=big"):
                assert client.get(path).status_code == 200, path
            run = client.get(f"/api/runs/{ids['detailed']}")
            assert run.status_code == (404 if viewer is None else 200)
            body = client.get("/api/overview").json()
            report = reports.summary(
                ledger, by="team", period=WEEK, viewer=viewer, privacy=settings.privacy
            )
            assert body["teams"] == [
                jsonable({**row_dict(row), "value_per_dollar": report.value_of(row)})
                for row in report.rows
            ]


@pytest.mark.postgres
def test_a_read_running_when_the_dashboard_stops_ends_before_its_ledger_closes(
    pg_schema_url,  # noqa: F811
    monkeypatch,
):
    """The dashboard's shutdown waits for the ledger reads its threads are running: a read that
    outlived it would run on a closed ledger, open a connection that nobody closes, and leave
    it to the garbage collector (counted here in pg_stat_activity by application name)."""
    from meshagent.dashboard import queries

    name = f"meshagent_test_{uuid.uuid4().hex[:12]}"
    url = f"{pg_schema_url}&application_name={name}"
    began, release, ended = threading.Event(), threading.Event(), threading.Event()
    buckets = queries.buckets

    def held_buckets(*args: Any, **options: Any) -> Any:
        if not threading.current_thread().name.startswith("dashboard"):
            return buckets(*args, **options)  # the page's own read, not the weekly trend's
        began.set()
        release.wait(10)
        try:
            return buckets(*args, **options)
        finally:
            ended.set()

    monkeypatch.setattr(queries, "buckets", held_buckets)
    with Ledger.open(url) as ledger:
        fill(ledger)
        app = create_dashboard(
            config(url), ledger=ledger, today=lambda: TODAY, fires_per_month=lambda t: FIRES
        )
        with TestClient(app, headers={"X-Forwarded-User": ADMIN}) as client:
            assert client.get("/").status_code == 200  # the trend still being computed
            assert began.wait(10)
            threading.Timer(0.5, release.set).start()  # once the dashboard is stopping
    assert ended.wait(10)

    def connections() -> int:
        query = "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s"
        with pg_connect() as admin:
            return admin.execute(query, [name]).fetchone()[0]

    # The worker processes' connections end with them (terminated when the dashboard stops).
    deadline = time.monotonic() + 10
    while connections() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert connections() == 0
    assert ledger.engine.pool.checkedin() == 0  # nothing pooled again after the close


def slow_flags(ledger: Ledger, *, gate: str, **options: Any) -> Any:
    """The ledger's flags once `gate` exists (run in the dashboard's worker process)."""
    deadline = time.monotonic() + 10
    while not Path(gate).exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    return flag_report(ledger, **options)


def test_a_page_does_not_wait_for_slow_flags(world, monkeypatch, tmp_path):
    from meshagent.dashboard import pagebase

    gate = tmp_path / "go"
    monkeypatch.setattr(pagebase, "flag_report", functools.partial(slow_flags, gate=str(gate)))
    with TestClient(world.app(local_user=ADMIN)) as client:
        page = client.get("/flags")
        assert page.status_code == 200
        assert 'data-testid="pending"' in page.text
        assert '<meta http-equiv="refresh" content="3">' in page.text
        agent = client.get("/agents/noisy").text
        assert 'data-testid="pending"' in agent and "No tokenmaxxing flag" not in agent
        threading.Timer(0.2, gate.touch).start()
        agents = client.get("/api/agents")
        assert agents.json()["flags"]["state"] == "fresh"  # the API waits for them
        done = client.get("/flags")
        assert 'data-testid="pending"' not in done.text and "noisy" in done.text


def test_stale_flags_are_shown_with_their_time_and_no_reload(tmp_path, monkeypatch):
    from meshagent.dashboard import pagebase

    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    gate = tmp_path / "go"
    gate.touch()
    monkeypatch.setattr(pagebase, "flag_report", functools.partial(slow_flags, gate=str(gate)))
    with Ledger.open(url) as ledger:
        ids = fill(ledger)
        app = create_dashboard(
            config(url), ledger=ledger, today=lambda: TODAY, fires_per_month=lambda t: FIRES
        )
        with TestClient(app, headers={"X-Forwarded-User": ADMIN}) as client:
            assert client.get("/api/flags").json()["status"]["state"] == "fresh"  # computed
            fresh = client.get("/flags").text
            assert 'data-testid="stale"' not in fresh and 'http-equiv="refresh"' not in fresh
            gate.unlink()  # the next computation waits
            ledger.add_feedback(ids["noisy"], TEAMS["mid"][0], -1)  # the ledger moves on
            stale = client.get("/flags").text
            gate.touch()
            assert 'data-testid="stale"' in stale and "reload the page later" in stale
            assert 'http-equiv="refresh"' not in stale  # no reloading every 3 s on a busy ledger
            assert "noisy" in stale  # the flags it had
            assert client.get("/api/flags").json()["status"]["state"] == "fresh"
