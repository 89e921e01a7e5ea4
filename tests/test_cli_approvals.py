"""`meshagent approvals` and what `meshagent run` says of staged writes, as a user types them."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from datetime import timedelta

import pytest
from typer.testing import CliRunner

from meshagent.cli.main import app
from meshagent.ledger import approvals as store
from meshagent.ledger.store import Ledger
from tests.slack.approvals_kit import NUDGE as KIT_NUDGE

# The approval kit's agent, staging two comments, with an approver named by Slack handle.
NUDGE = KIT_NUDGE.replace("key = PAY-8", "key in (PAY-8, PAY-5)").replace(
    "bob@example.com", '"@bob"'
)


@pytest.fixture
def project(tmp_path, monkeypatch, sandbox):
    (tmp_path / "agents").mkdir()
    (tmp_path / "agents" / "nudge.yaml").write_text(NUDGE)
    (tmp_path / "meshagent.toml").write_text(
        textwrap.dedent(f"""\
        ledger_url = "sqlite:///{tmp_path / "ledger.db"}"
        [people]
        me = "dave@example.com"
        """)
    )
    monkeypatch.chdir(tmp_path)
    for name, value in sandbox.env().items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("COLUMNS", "200")
    return tmp_path


def run(*args: str, me: str | None = None):
    env = {"MESHAGENT_PEOPLE__ME": me} if me else {}
    return CliRunner().invoke(app, list(args), catch_exceptions=False, env=env)


def _ledger(project) -> Ledger:
    return Ledger.open(f"sqlite:///{project / 'ledger.db'}")


def _staged(project, sandbox) -> list[str]:
    result = run("run", "nudge")
    assert result.exit_code == 0, result.output
    assert sandbox.jira.comments_added == []
    return re.findall(r"approvals approve (ap[0-9a-f]{12})", result.output)


def test_run_says_what_it_staged_and_the_printed_command_decides_it(project, sandbox):
    result = run("run", "nudge")
    assert result.exit_code == 0, result.output
    assert "2 writes staged for approval" in result.output
    assert "Comment on PAY-8 (jira.add_comment)" in result.output
    approve = [line.strip() for line in result.output.splitlines() if " approve ap" in line]
    assert len(approve) == 2
    # pasted into a shell, in the same directory, as the person who ran it
    done = subprocess.run(approve[0], shell=True, capture_output=True, text=True, env=os.environ)
    assert done.returncode == 0, done.stderr
    assert "approved request" in done.stdout
    assert len(sandbox.jira.comments_added) == 1


def test_list_gives_the_requests_the_person_may_decide(project, sandbox):
    ids = _staged(project, sandbox)
    listed = run("approvals", "list", "--format", "json")
    assert listed.exit_code == 0, listed.output
    rows = json.loads(listed.output)
    assert sorted(r["id"] for r in rows) == sorted(ids)
    assert {r["agent"] for r in rows} == {"nudge"} and {r["status"] for r in rows} == {"pending"}
    assert {r["action"] for r in rows} == {"jira.add_comment"}
    assert {r["payload"]["key"] for r in rows} == {"PAY-8", "PAY-5"}
    # the table, in a fresh process (the CLI's console takes the terminal's width once); in a
    # narrow terminal the ids stay whole, to be copied into the next command
    for columns in ("200", "70"):
        command = [sys.executable, "-m", "meshagent", "approvals", "list"]
        env = {**os.environ, "COLUMNS": columns}
        table = subprocess.run(command, capture_output=True, text=True, env=env)
        assert table.returncode == 0, table.stderr
        assert all(i in table.stdout for i in ids), table.stdout
        if columns == "200":
            assert "Comment on PAY-5" in table.stdout, table.stdout
    assert json.loads(run("approvals", "list", "--format", "json", me="erin@example.com")
                      .output) == []  # fmt: skip
    # "@bob" is bob in Slack (asked in a DM) and by email here: one person
    assert len(sandbox.slack.dms_to("bob")) == 2
    as_bob = json.loads(run("approvals", "list", "--format", "json", me="bob@example.com").output)
    assert sorted(r["id"] for r in as_bob) == sorted(ids)


def test_list_prints_commands_that_decide_and_says_when_nothing_waits(project, sandbox):
    _staged(project, sandbox)
    table = run("approvals", "list")
    reject = [line.strip() for line in table.output.splitlines() if " reject ap" in line]
    assert len(reject) == 1
    # pasted into a shell, as the person who listed it
    done = subprocess.run(reject[0], shell=True, capture_output=True, text=True, env=os.environ)
    assert done.returncode == 0, done.stderr
    assert sandbox.jira.comments_added == []
    rows = json.loads(run("approvals", "list", "--all", "--format", "json").output)
    assert sorted(r["status"] for r in rows) == ["pending", "rejected"]
    erin = run("approvals", "list", me="erin@example.com")
    assert erin.exit_code == 0
    assert "no approval requests waiting for erin@example.com to decide" in erin.output
    assert "┃" not in erin.output  # no empty table


def test_approve_and_reject_as_the_current_person(project, sandbox):
    first, second = _staged(project, sandbox)
    shown = run("approvals", "show", first)
    assert shown.exit_code == 0 and '"body": "Is this still on track?"' in shown.output
    done = run("approvals", "approve", first)
    assert done.exit_code == 0, done.output
    assert [key for key, _ in sandbox.jira.comments_added] == [
        store.get(_ledger(project), first).payload["key"]
    ]
    rejected = run("approvals", "reject", second, "--reason", "parked on purpose")
    assert rejected.exit_code == 0, rejected.output
    with _ledger(project) as ledger:
        assert store.get(ledger, first).status == "executed"
        assert store.get(ledger, first).decided_by == "dave@example.com"
        assert (store.get(ledger, second).status, store.get(ledger, second).reason) == (
            "rejected",
            "parked on purpose",
        )
    assert len(sandbox.jira.comments_added) == 1
    # the Slack requests show who decided
    assert any("Approved by dave@example.com" in u.text for u in sandbox.slack.updated)


def test_clear_errors(project, sandbox):
    first, second = _staged(project, sandbox)
    unknown = run("approvals", "approve", "ap000000000000")
    assert unknown.exit_code == 3 and "no approval request 'ap000000000000'" in unknown.output
    stranger = run("approvals", "approve", first, me="erin@example.com")
    assert stranger.exit_code == 4
    assert "you (erin@example.com) may not decide request" in stranger.output
    assert run("approvals", "approve", first).exit_code == 0
    again = run("approvals", "reject", first)
    assert again.exit_code == 6 and "already decided: executed by dave@example.com" in again.output
    with _ledger(project) as ledger:  # the second request's time runs out
        store.expire_due(ledger, now=store.get(ledger, second).expires_at + timedelta(seconds=1))
    late = run("approvals", "approve", second)
    assert late.exit_code == 5 and "expired" in late.output
    assert len(sandbox.jira.comments_added) == 1
