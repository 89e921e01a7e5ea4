"""`meshagent run` and `meshagent sandbox` as a user types them."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from meshagent.cli.main import app
from meshagent.ledger.store import Ledger

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def project(tmp_path, monkeypatch, sandbox):
    shutil.copytree(ROOT / "agents", tmp_path / "agents")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MESHAGENT_LEDGER_URL", f"sqlite:///{tmp_path / 'ledger.db'}")
    for name, value in sandbox.env().items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("COLUMNS", "120")
    return tmp_path


def run(*args: str):
    return CliRunner().invoke(app, list(args), catch_exceptions=False)


def _plain(text: str) -> str:
    return " ".join(text.split())


def test_run_posts_and_prints_answer_usage_and_run_id(project, sandbox):
    result = run("run", "standup-digest")
    assert result.exit_code == 0, result.output
    [posted] = sandbox.slack.posted_to("#payments-standup")
    text = _plain(result.output)
    assert "standup-digest: answer" in text and "PAY-3 Move card-vault" in text
    assert "delivered" in text and "slack.message" in text
    assert "model calls │ 1" in text and "cost │ $0.00" in text
    run_id = re.search(r"status ok run ([0-9a-f-]{36})", text).group(1)
    with Ledger.open(os.environ["MESHAGENT_LEDGER_URL"]) as ledger:
        entry = ledger.entry(run_id)
        assert entry["trigger_kind"] == "cli" and entry["status"] == "ok"
        assert [o.ref for o in ledger.outcomes(run_id)] == [f"C0PAYSTAND:{posted.ts}"]


def test_run_shows_the_framework_share_of_the_prompt(project, sandbox):
    result = run("run", "standup-digest")
    assert result.exit_code == 0, result.output
    text = _plain(result.output)
    run_id = re.search(r"status ok run ([0-9a-f-]{36})", text).group(1)
    with Ledger.open(os.environ["MESHAGENT_LEDGER_URL"]) as ledger:
        share = ledger.prompt_share(run_id)
        sent = ledger.entry(run_id)["input_tokens"]
    assert share["tokens"] == share["headings"] > 0 and share["model_calls"] == 1
    percent = round(100 * share["tokens"] / sent)
    assert f"of which the framework's │ ~{share['tokens']:,} ({percent}%)" in text
    assert f"from │ headings {share['headings']:,} over 1 model call" in text


def test_dry_run_says_what_it_would_deliver_and_posts_nothing(project, sandbox):
    result = run("run", "agents/standup-digest.yaml", "--dry-run")
    assert result.exit_code == 0, result.output
    assert sandbox.slack.writes() == []
    text = _plain(result.output)
    assert "would deliver (dry run)" in text
    assert "slack.post_message #payments-standup" in text


def test_unknown_agent_suggests_the_closest(project):
    result = run("run", "standup-digets")
    assert result.exit_code == 2
    assert "no agent named 'standup-digets' in agents; did you mean 'standup-digest'?" in (
        _plain(result.output)
    )


def test_bad_input_and_unknown_model_are_one_line_errors(project):
    bad = run("run", "standup-digest", "--input", "nonsense")
    assert bad.exit_code == 2 and "--input takes NAME=VALUE, got 'nonsense'" in bad.output
    extra = run("run", "standup-digest", "-i", "team=x")
    assert extra.exit_code == 2
    assert "agent standup-digest: unknown input 'team'" in _plain(extra.output)
    model = run("run", "standup-digest", "--model", "openai:gpt-4.1-mini")
    assert model.exit_code == 2 and "set OPENAI_API_KEY" in model.output


def test_a_failing_run_exits_1_with_its_reason(project, sandbox):
    sandbox.jira_faults.fail_next(100, status=500)
    result = run("run", "standup-digest")
    assert result.exit_code == 1
    text = _plain(result.output)
    assert "status failed" in text and "HTTP 500: Internal server error." in text
    assert "Traceback" not in result.output


def test_sandbox_command_prints_the_variables_and_stops_on_sigint(tmp_path):
    process = subprocess.Popen(
        [sys.executable, "-m", "meshagent", "sandbox", "--jira", "cloud"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=tmp_path,
    )
    lines = []
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        lines.append(line)
        if "Ctrl-C stops it" in line:
            break
    env = dict(
        line.removeprefix("export ").strip().split("=", 1)
        for line in lines
        if line.startswith("export ")
    )
    assert set(env) == {
        "SLACK_BOT_TOKEN",
        "SLACK_API_URL",
        "JIRA_URL",
        "JIRA_EMAIL",
        "JIRA_API_TOKEN",
        "WIKI_MCP_URL",  # the team wiki, an MCP server
    }
    import httpx

    answer = httpx.post(
        env["SLACK_API_URL"] + "auth.test",
        headers={"Authorization": f"Bearer {env['SLACK_BOT_TOKEN']}"},
    ).json()
    assert answer["ok"] and answer["user_id"] == "U0MESHBOT"
    process.send_signal(signal.SIGINT)
    rest, _ = process.communicate(timeout=15)
    assert process.returncode == 0
    assert "Sandbox stopped (0 messages posted, 0 issues created)." in rest


def test_sandbox_command_reports_a_bad_seed(tmp_path):
    seed = tmp_path / "seed.yaml"
    seed.write_text("slack:\n  channels: [\n", encoding="utf-8")
    result = run("sandbox", "--seed", str(seed))
    assert result.exit_code == 2
    assert f"{seed}:3:1: invalid YAML" in _plain(result.output)


def test_a_dry_run_says_so_also_when_nothing_would_be_delivered(project):
    assert run("init", "quiet-one", "--owner", "me@example.com").exit_code == 0
    result = run("run", "quiet-one", "--dry-run")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == "dry run: read and thought, wrote nothing"
    text = _plain(result.output)
    assert "dry run: nothing would be delivered (the agent has no deliver:)" in text
    assert re.search(r"status ok \(dry run\) run [0-9a-f-]{36}", text)
    assert "dry run" not in _plain(run("run", "quiet-one").output)


def test_a_run_is_recorded_as_the_person_at_the_keyboard(project, monkeypatch):
    (project / "meshagent.toml").write_text('[people]\nme = "erin@example.com"\n')
    result = run("run", "standup-digest", "--dry-run")
    run_id = re.search(r"run ([0-9a-f-]{36})", _plain(result.output)).group(1)
    with Ledger.open(os.environ["MESHAGENT_LEDGER_URL"]) as ledger:
        assert ledger.entry(run_id)["triggered_by"] == "erin@example.com"
