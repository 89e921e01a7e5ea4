"""`meshagent demo` end to end: sandbox, example agents, a simulated week, the report."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

from sqlalchemy import func, select
from typer.testing import CliRunner

from meshagent.cli import app
from meshagent.config import load_config
from meshagent.demo import SHIPPED_EXAMPLES
from meshagent.ledger.flags import flags
from meshagent.ledger.periods import Period
from meshagent.ledger.schema import entries
from meshagent.ledger.store import Ledger

ROOT = Path(__file__).resolve().parents[1]


def test_demo_plays_a_week_and_shows_what_bought_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no agents/ here: the examples shipped with the package run
    for name in ("MESHAGENT_AGENTS_DIR", "MESHAGENT_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    own = tmp_path / "mine.db"
    monkeypatch.setenv("MESHAGENT_LEDGER_URL", f"sqlite:///{own}")
    monkeypatch.setenv("COLUMNS", "80")
    result = CliRunner().invoke(app, ["demo", "--dir", str(tmp_path / "demo")])
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "the example agents shipped with MeshAgent (no agents/ here)" in text
    assert "Left out (they read the web, which the demo never reaches)" in text
    assert "a week of schedules" in text and "Cost against value" in text
    assert "Runs that bought nothing: everything-watcher" in text
    assert "dashboard --user demo-admin" in text
    assert not own.exists()  # the user's own ledger is never touched

    config = load_config(tmp_path / "demo" / "meshagent.toml", env={})
    with Ledger.open(config.ledger_url) as ledger:
        count = ledger.read(
            lambda c: dict(c.execute(select(entries.c.status, func.count()).group_by(
                entries.c.status)).all())
        )  # fmt: skip
        found = flags(ledger, period=Period.named("month"), settings=config.flags,
                      viewer="demo-admin", privacy=config.privacy)  # fmt: skip
        assert ledger.verify().ok
    assert count["ok"] > 2000  # every five minutes for a week, and the examples
    assert count.get("skipped_unchanged", 0) >= 1  # quiet days cost nothing
    rules = {(flag.rule, flag.subject) for flag in found}
    assert ("no_outcome", "everything-watcher") in rules
    assert ("unchanged_rerun", "everything-watcher") in rules
    assert not any(subject == "standup-digest" and rule == "no_outcome" for rule, subject in rules)


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
