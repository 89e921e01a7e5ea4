"""`meshagent demo` end to end: sandbox, example agents, a simulated week, the report."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from meshagent.cli.demo import SHIPPED_EXAMPLES, demo_period
from meshagent.cli.invocation import meshagent_command
from meshagent.cli.main import app
from meshagent.config import load_config
from meshagent.ledger import reports
from meshagent.ledger.flags import flags
from meshagent.ledger.schema import entries, outcomes
from meshagent.ledger.store import Ledger

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Demo:
    cwd: Path
    output: str
    own: Path


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    """One demo run, shared by the tests that read what it printed and wrote (it takes seconds)."""
    tmp_path = tmp_path_factory.mktemp("demo")
    home = tmp_path / "home"
    with pytest.MonkeyPatch.context() as monkeypatch:
        for name in list(os.environ):
            if name.startswith("MESHAGENT_"):
                monkeypatch.delenv(name)
        monkeypatch.setenv("HOME", str(home))
        monkeypatch.setenv("XDG_DATA_HOME", str(home / ".local" / "share"))
        monkeypatch.chdir(tmp_path)  # no agents/ here: the examples shipped with the package run
        own = tmp_path / "mine.db"
        monkeypatch.setenv("MESHAGENT_LEDGER_URL", f"sqlite:///{own}")
        monkeypatch.setenv("COLUMNS", "80")
        result = CliRunner().invoke(app, ["demo", "--dir", str(tmp_path / "demo")])
        assert result.exit_code == 0, result.output
        yield Demo(tmp_path, result.output, own)


def test_demo_plays_a_week_and_shows_what_bought_nothing(demo):
    tmp_path = demo.cwd
    text = " ".join(demo.output.split())
    assert "the example agents shipped with MeshAgent (no agents/ here)" in text
    assert "Left out (they read the web, which the demo never reaches)" in text
    assert "a week of schedules" in text and "Cost against value" in text
    assert "Runs that bought nothing: everything-watcher" in text
    assert "dashboard --user demo-admin" in text
    assert not demo.own.exists()  # the user's own ledger is never touched
    # the honest agent and the gamer side by side, with what tells them apart
    pair = text.split("An honest agent and a gamer, side by side", 1)[1].split("Tokenmaxxing", 1)[0]
    assert "standup-digest" in pair and "everything-watcher" in pair
    assert "no one took any" in pair and "e.g. " in pair  # cells wrap at 80 columns
    assert "no_outcome $" in pair
    assert "Tokenmaxxing flags: every flag (admin: demo-admin)" in text
    assert "fix:" in text and "innocent:" in text and "skip_if_unchanged" in text

    config = load_config(tmp_path / "demo" / "meshagent.toml", env={})
    with Ledger.open(config.ledger_url) as ledger:
        count = ledger.read(
            lambda c: dict(c.execute(select(entries.c.status, func.count()).group_by(
                entries.c.status)).all())
        )  # fmt: skip
        found = flags(ledger, period=demo_period(datetime.now(UTC)), settings=config.flags,
                      viewer="demo-admin", privacy=config.privacy)  # fmt: skip
        assert ledger.verify().ok
        verdicts = ledger.read(
            lambda c: dict(c.execute(select(outcomes.c.verdict, func.count()).group_by(
                outcomes.c.verdict)).all())
        )  # fmt: skip
        by_agent = reports.summary(ledger, by="agent", period=demo_period(datetime.now(UTC)),
                                   viewer="demo-admin", privacy=config.privacy)  # fmt: skip
    # verdicts recorded as the follow-up pass would: some output taken up, some not
    assert verdicts.get("accepted", 0) >= 1
    assert set(verdicts) <= {"accepted", "ignored", "pending", "rejected"}
    assert verdicts.get("rejected") == 1  # the write its owner rejected
    rows = {row.group: by_agent.evidence_of(row) for row in by_agent.rows}
    assert rows["standup-digest"].accepted_outcomes >= 1
    assert rows["everything-watcher"].accepted_outcomes == 0
    assert count["ok"] > 2000  # every five minutes for a week, and the examples
    assert count.get("skipped_unchanged", 0) >= 1  # quiet days cost nothing
    rules = {(flag.rule, flag.subject) for flag in found}
    assert ("no_outcome", "everything-watcher") in rules
    assert ("unchanged_rerun", "everything-watcher") in rules
    assert not any(subject == "standup-digest" and rule == "no_outcome" for rule, subject in rules)
    # its first run comes before the simulated week, so an unchanged day skips, never re-runs
    assert ("unchanged_rerun", "standup-digest") not in rules


def test_the_demo_shows_one_approved_and_one_rejected_write(demo):
    from meshagent.ledger import approvals

    text = " ".join(demo.output.split())
    assert "Approvals: stale-ticket-nudger staged its Jira comments" in text
    assert "Comment on PAY-8: approved by dave@example.com: written once" in text
    assert "Comment on PAY-5: rejected by dave@example.com (parked on purpose" in text
    config = load_config(demo.cwd / "demo" / "meshagent.toml", env={})
    with Ledger.open(config.ledger_url) as ledger:
        statuses = sorted(a.status for a in approvals.listing(ledger))
        assert statuses.count("executed") == 1 and statuses.count("rejected") == 1
        assert set(statuses) <= {"executed", "rejected", "pending", "expired"}


def test_a_configured_agents_dir_that_is_missing_is_an_error(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MESHAGENT_CONFIG", raising=False)
    monkeypatch.setenv("MESHAGENT_AGENTS_DIR", str(tmp_path / "typo"))
    result = CliRunner().invoke(app, ["demo", "--dir", str(tmp_path / "demo")])
    assert result.exit_code == 2
    message = " ".join(result.output.split())
    assert f"agents_dir is {tmp_path / 'typo'}, which is not a directory" in message
    assert "MESHAGENT_AGENTS_DIR" in message and "unset it" in message
    assert not (tmp_path / "demo").exists()  # nothing written


def test_the_wheel_ships_the_example_agents_as_files(tmp_path):
    # In a clone meshagent/examples is a link to agents/; the wheel must hold the files.
    source = tmp_path / "source"
    for name in ("meshagent", "connectors", "agents"):
        shutil.copytree(ROOT / name, source / name, symlinks=True,
                        ignore=shutil.ignore_patterns("__pycache__"))  # fmt: skip
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    assert (source / "meshagent" / "examples").is_symlink()
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(tmp_path), source],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert built.returncode == 0, built.stderr[-2000:]
    [wheel] = tmp_path.glob("meshagent-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        shipped = {
            Path(name).name: archive.read(name)
            for name in archive.namelist()
            if name.startswith("meshagent/examples/") and name.endswith(".yaml")
        }
    in_clone = {path.name: path.read_bytes() for path in (ROOT / "agents").glob("*.yaml")}
    assert shipped == in_clone and len(shipped) >= 5
    assert SHIPPED_EXAMPLES.name == "examples"  # where the demo looks for them


def printed_commands(output: str, command: str) -> list[str]:
    """The lines of `output` that are commands to paste: they start with the meshagent command."""
    return [line.strip() for line in output.splitlines() if line.strip().startswith(command)]


def test_every_command_the_demo_prints_works_when_pasted(demo, monkeypatch):
    command = meshagent_command(cwd=demo.cwd)
    lines = printed_commands(demo.output, command)
    verbs = [
        [w for w in ("dashboard", "ledger", "init") if w in shlex.split(line)] for line in lines
    ]
    assert verbs == [["dashboard"], ["ledger"], ["ledger"], ["init"]]
    for line in lines:  # one line each, at 80 columns too: nothing wrapped into the next line
        assert shlex.split(line)[-1] in (
            "demo-admin",
            "my-first-agent",
            str(datetime.now(UTC).date()),
        )
    dashboard, report, flag_list, init = lines
    for line in (report, flag_list, init):
        pasted = subprocess.run(
            line, shell=True, cwd=demo.cwd, capture_output=True, text=True, timeout=120,
            input="me@example.com\n",  # init asks for the owner where nothing names one
        )  # fmt: skip
        assert pasted.returncode == 0, (line, pasted.stdout, pasted.stderr)
    assert (demo.cwd / "agents" / "my-first-agent.yaml").exists()
    pasted = subprocess.run(report, shell=True, cwd=demo.cwd, capture_output=True, text=True)
    assert "everything-watcher" in pasted.stdout and "withheld" not in pasted.stdout
    # the same days as the demo's own table, with the same figures
    days = re.search(r"Cost against value, (\S+)", demo.output).group(1)
    assert f"Ledger by agent, {days}" in pasted.stdout
    watcher = re.search(r"everything-watcher\s*│\s*([\d,]+)", demo.output).group(1)
    assert re.search(rf"everything-watcher\s*│\s*{watcher}\s*│", pasted.stdout)
    # The dashboard serves until stopped: run its argv in-process, uvicorn.run replaced.
    import uvicorn

    seen: dict = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **options: seen.update(app=app, **options))
    monkeypatch.chdir(demo.cwd)
    result = CliRunner().invoke(app, shlex.split(dashboard)[1:], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert seen["port"] == 8765 and "viewing as demo-admin" in result.output


def test_the_printed_command_is_the_one_that_was_typed(tmp_path):
    script = tmp_path / ".venv" / "bin" / "meshagent"
    script.parent.mkdir(parents=True)
    script.write_text("#!/bin/sh\n")
    script.chmod(0o755)
    python = str(script.parent / "python")
    typed = meshagent_command(cwd=tmp_path, argv0=".venv/bin/meshagent", executable=python,
                              path="")  # fmt: skip
    assert typed == ".venv/bin/meshagent"  # the venv is not activated after the quickstart
    on_path = meshagent_command(cwd=tmp_path, argv0=str(script), executable=python,
                                path=str(script.parent))  # fmt: skip
    assert on_path == "meshagent"
    via_python = meshagent_command(cwd=tmp_path, argv0="-m", executable=python, path="")
    assert via_python == ".venv/bin/meshagent"
    elsewhere = meshagent_command(
        cwd=tmp_path / ".venv", argv0="x", executable="/opt/py dir/python", path=""
    )
    assert elsewhere == "'/opt/py dir/python' -m meshagent"


def test_the_dashboard_forecasts_what_the_demo_printed(demo):
    from starlette.testclient import TestClient

    from meshagent.dashboard import create_dashboard
    from meshagent.ledger.render import money

    forecast = demo.output.split("Spend forecast", 1)[1]
    printed = re.search(r"everything-watcher\s*│\s*([\d,.]+)\s*│[^│]*│[^│]*│\s*(\S+)", forecast)
    assert printed is not None, demo.output
    config = load_config(demo.cwd / "demo" / "meshagent.toml", env={})
    with TestClient(create_dashboard(config, local_user="demo-admin")) as client:
        rows = {row["agent"]: row for row in client.get("/api/agents").json()["rows"]}
    watcher = rows["everything-watcher"]
    assert watcher["forecast_usd"] is not None  # the tokenmaxxer's schedule is a file of its own
    assert money(Decimal(watcher["forecast_usd"])) == printed.group(2)


def test_a_running_demo_is_never_overwritten(tmp_path, monkeypatch):
    import fcntl

    monkeypatch.chdir(tmp_path)
    target = tmp_path / "demo"
    target.mkdir()
    (target / "ledger.db").write_text("the running demo's")
    with (target / ".running").open("a+") as running:
        fcntl.flock(running, fcntl.LOCK_EX | fcntl.LOCK_NB)
        result = CliRunner().invoke(app, ["demo", "--dir", str(target)])
    assert result.exit_code == 2
    assert result.output.endswith(
        f"error: a demo is already running in {target}: wait for it to finish, or give this one "
        "another --dir\n"
    )
    assert (target / "ledger.db").read_text() == "the running demo's"
