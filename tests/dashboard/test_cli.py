"""`meshagent dashboard`: uvicorn in local single-user mode, and the URL printed."""

from __future__ import annotations

from typing import Any

import pytest
from starlette.testclient import TestClient
from typer.testing import CliRunner

from meshagent.cli.dashboard import serve_dashboard
from meshagent.cli.main import app as cli

from .world import ADMIN, config


@pytest.fixture
def served(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """What uvicorn.run was given, instead of running it."""
    import uvicorn

    seen: dict[str, Any] = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **options: seen.update(app=app, **options))
    return seen


def test_serve_dashboard_runs_uvicorn_as_the_local_user(tmp_path, served, capsys):
    settings = config(f"sqlite:///{tmp_path / 'ledger.db'}")
    serve_dashboard(settings, host="127.0.0.1", port=8765, user=ADMIN)
    assert (served["host"], served["port"]) == ("127.0.0.1", 8765)
    assert "http://127.0.0.1:8765/" in capsys.readouterr().out
    with TestClient(served["app"]) as client:
        viewer = client.get("/api/viewer", headers={"X-Forwarded-User": "someone"}).json()
        assert viewer == {"name": ADMIN, "admin": True, "mode": "local"}
        assert client.get("/").status_code == 200


def test_the_meshagent_dashboard_command(tmp_path, served, monkeypatch):
    (tmp_path / "meshagent.toml").write_text('agents_dir = "agents"\n')
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MESHAGENT_LEDGER_URL", f"sqlite:///{tmp_path / 'ledger.db'}")
    result = CliRunner().invoke(
        cli, ["dashboard", "--port", "9911", "--user", "alice"], catch_exceptions=False
    )
    assert result.exit_code == 0, result.output
    assert "http://127.0.0.1:9911/" in result.output and "alice" in result.output
    with TestClient(served["app"]) as client:
        assert client.get("/api/viewer").json()["name"] == "alice"
        assert client.get("/agents").status_code == 200


def test_the_forecast_reads_the_agents_directory(tmp_path):
    from meshagent.dashboard import create_dashboard
    from meshagent.ledger import Ledger

    from .world import MONDAY, TODAY, run

    agents = tmp_path / "agents"
    agents.mkdir()
    (agents / "hourly.yaml").write_text(
        "name: hourly\nowner: ops@example.com\nteam: platform\nmodel: offline\n"
        "instructions: Say what changed.\ntriggers:\n  - every: 1h\n"
        "value: {tag: toil-reduction}\n"
    )
    settings = config(f"sqlite:///{tmp_path / 'ledger.db'}").model_copy(
        update={"agents_dir": agents}
    )
    with Ledger.open(settings.ledger_url) as ledger:
        ledger.write_records([run("hourly", "ops@example.com", "big", MONDAY)])
        app = create_dashboard(settings, ledger=ledger, local_user=ADMIN, today=lambda: TODAY)
        with TestClient(app) as client:
            (row,) = client.get("/api/agents").json()["rows"]
    assert row["fires_per_month"] == 720.0
    assert row["forecast_usd"] == "8.6400"  # 720 fires x $0.0120, the median cost per run


def test_an_unreachable_ledger_is_one_line_and_exit_2(tmp_path, served, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MESHAGENT_LEDGER_URL", "postgresql+psycopg://u@127.0.0.1:1/x")
    result = CliRunner().invoke(cli, ["dashboard", "--port", "0", "--user", "alice"])
    assert result.exit_code == 2, result.output
    assert result.output.startswith("error: cannot open the ledger at postgresql+psycopg://")
    assert "Traceback" not in result.output and "http://" not in result.output
    assert not served  # uvicorn never ran


def test_a_busy_port_fails_before_the_url_is_announced(tmp_path, served, monkeypatch):
    import socket

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MESHAGENT_LEDGER_URL", f"sqlite:///{tmp_path / 'ledger.db'}")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = CliRunner().invoke(cli, ["dashboard", "--port", str(port), "--user", "alice"])
    assert result.exit_code == 2
    assert result.output == (
        f"error: cannot listen on 127.0.0.1:{port}: address already in use; stop what is using "
        "it, or choose another --port (or --host)\n"
    )
    assert not served


def test_the_dashboard_links_the_people_aliases_when_it_opens_the_ledger(tmp_path, served):
    from meshagent.config import PeopleSettings
    from meshagent.ledger.people import person_of
    from meshagent.ledger.store import Ledger

    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    aliases = {"alice@example.com": ("U0ALICE01", "alice")}
    settings = config(url).model_copy(update={"people": PeopleSettings(aliases=aliases)})
    serve_dashboard(settings, host="127.0.0.1", port=8765, user=ADMIN)
    with TestClient(served["app"]) as client:
        assert client.get("/").status_code == 200
    with Ledger.open(url) as ledger:
        person = person_of(ledger, "U0ALICE01")
        assert person is not None and person.name == "alice@example.com"
        assert person_of(ledger, "alice").id == person.id
