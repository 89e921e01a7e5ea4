"""The dashboard under `meshagent serve`: mounted at /dashboard, with the same privacy rules."""

from __future__ import annotations

import multiprocessing
import threading
import time
from typing import Any

import httpx
from starlette.testclient import TestClient

from meshagent.config import DashboardSettings
from meshagent.dashboard.views import jsonable, row_dict
from meshagent.fleet.server import create_app
from meshagent.ledger import Ledger, reports
from meshagent.runtime.runner import Runtime
from tests.serve.test_cluster import _free_port, _wait_ready
from tests.serve.test_serve_process import _serve

from .world import ADMIN, TEAMS, TODAY, WEEK

MEMBER = TEAMS["big"][0]
WEEK_QUERY = f"?date={TODAY}"  # the seeded week, whatever today is


def _left(before: set[Any]) -> list[Any]:
    """The dashboard's threads and worker processes started since `before` that still run."""
    threads = [t for t in threading.enumerate() if t.name.startswith("dashboard")]
    return [item for item in [*threads, *multiprocessing.active_children()] if item not in before]


def test_serve_mounts_the_dashboard_with_the_configured_header_and_privacy(world, tmp_path):
    settings = world.config.model_copy(
        update={
            "agents_dir": tmp_path,
            "dashboard": DashboardSettings(viewer_header="X-Auth-Email"),
        }
    )
    before = {*threading.enumerate(), *multiprocessing.active_children()}
    with Ledger.open(world.url) as ledger:
        app = create_app(settings, runtime=Runtime(settings, ledger=ledger, env={}), slack=False)
        with TestClient(app, base_url="http://testserver") as client:

            def overview(**headers: str) -> dict:
                answer = client.get(f"/dashboard/api/overview{WEEK_QUERY}", headers=headers)
                assert answer.status_code == 200
                return answer.json()

            as_member = overview(**{"X-Auth-Email": MEMBER})
            assert as_member["viewer"] == {"name": MEMBER, "admin": False, "mode": "header"}
            folded = reports.summary(
                ledger, by="team", period=WEEK, viewer=MEMBER, privacy=settings.privacy
            )
            assert as_member["teams"] == [
                jsonable({**row_dict(row), "value_per_dollar": folded.value_of(row)})
                for row in folded.rows
            ]
            groups = [row["group"] for row in as_member["teams"]]
            assert "tiny" not in groups and groups[-1] == "other"

            # The default header means nothing once another one is configured.
            spoofed = overview(**{"X-Forwarded-User": ADMIN})
            assert spoofed["viewer"]["mode"] == "anonymous"
            assert "tiny" not in [row["group"] for row in spoofed["teams"]]

            as_admin = overview(**{"X-Auth-Email": ADMIN})
            assert as_admin["viewer"]["admin"] is True
            assert "tiny" in [row["group"] for row in as_admin["teams"]]

            solo_run = f"/dashboard/api/runs/{world.ids['solo']}"
            assert client.get(solo_run, headers={"X-Auth-Email": MEMBER}).status_code == 404
            assert client.get(solo_run, headers={"X-Auth-Email": ADMIN}).status_code == 200

            page = client.get(f"/dashboard/{WEEK_QUERY}", headers={"X-Auth-Email": MEMBER})
            assert page.status_code == 200
            assert 'href="/dashboard/static/dashboard.css"' in page.text
            assert 'data-group="tiny"' not in page.text and 'data-group="other"' in page.text
            assert client.get("/dashboard/static/dashboard.css").status_code == 200
            spec = client.get("/dashboard/openapi.json").json()
            assert spec["servers"] == [{"url": "/dashboard"}]
            assert _left(before)  # the flags were computed in the background
    deadline = time.monotonic() + 10
    while _left(before) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _left(before) == [], "serve's shutdown leaves the dashboard's threads or processes"


def test_meshagent_serve_answers_at_slash_dashboard(world, tmp_path):
    (tmp_path / "agents").mkdir()
    port = _free_port()
    env = {"MESHAGENT_LEDGER_URL": world.url, "MESHAGENT_DASHBOARD__VIEWER_HEADER": "X-Auth-Email"}
    process = _serve(tmp_path, env, port)
    try:
        _wait_ready(port, process)
        base = f"http://127.0.0.1:{port}/dashboard"

        def get(path: str, person: str, header: str = "X-Auth-Email") -> httpx.Response:
            return httpx.get(f"{base}{path}", headers={header: person})

        assert get("/api/viewer", MEMBER).json() == {
            "name": MEMBER,
            "admin": False,
            "mode": "header",
        }
        assert get("/api/viewer", MEMBER, "X-Forwarded-User").json()["mode"] == "anonymous"
        page = get(f"/{WEEK_QUERY}", MEMBER)
        assert page.status_code == 200 and "<h1>Overview</h1>" in page.text
        # No meshagent.toml here, so no admins: team tiny is folded for everyone but its
        # member, who sees their own agents' runs in full.
        assert 'data-group="tiny"' not in page.text and 'data-group="other"' in page.text
        solo = get(f"/{WEEK_QUERY}", TEAMS["tiny"][0])
        assert 'data-group="tiny"' in solo.text and 'data-group="other"' in solo.text
    finally:
        process.terminate()
        process.communicate(timeout=30)


def test_readyz_waits_for_the_dashboard_workers_to_boot(world, tmp_path):
    settings = world.config.model_copy(update={"agents_dir": tmp_path})
    with Ledger.open(world.url) as ledger:
        app = create_app(settings, runtime=Runtime(settings, ledger=ledger, env={}), slack=False)
        with TestClient(app, base_url="http://testserver") as client:
            # A spawned worker imports the ledger's packages first: far longer than this takes.
            first = client.get("/readyz")
            assert first.status_code == 503
            assert first.json()["problems"] == ["the dashboard's worker processes are starting"]
            deadline = time.monotonic() + 60
            while client.get("/readyz").status_code != 200:
                assert time.monotonic() < deadline, client.get("/readyz").json()
                time.sleep(0.05)
            assert client.get("/readyz").json()["problems"] == []
