"""README's promises: the test command CI runs is the one README gives."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def commands(text: str) -> list[str]:
    return re.findall(r"```bash\n(.*?)\n```", text, re.S)


def test_quickstart_has_exactly_two_commands():
    quickstart = (ROOT / "README.md").read_text().split("## Quickstart", 1)[1].split("\n## ", 1)[0]
    assert len(commands(quickstart)) == 2


def test_ci_runs_the_readme_test_command_word_for_word():
    quickstart = (ROOT / "README.md").read_text().split("## Quickstart", 1)[1]
    test_command = commands(quickstart)[1]
    ci_lines = (ROOT / ".ci" / "run").read_text().splitlines()
    assert test_command in ci_lines


def test_ci_installs_from_scratch_and_starts_postgres():
    ci = (ROOT / ".ci" / "run").read_text()
    assert "python3 -m venv .venv" in ci
    assert "pip install --quiet -e '.[dev]'" in ci
    assert "pg_ctlcluster --skip-systemctl-redirect" in ci


def test_the_agent_file_example_is_valid():
    from meshagent.agentfile.loader import parse_agent

    readme = (ROOT / "README.md").read_text()
    example = re.search(r"```yaml\n(# yaml-language-server.*?)```", readme, re.S).group(1)
    spec = parse_agent(example, filename="README.md", env={})
    assert spec.name == "standup-digest"
    assert [use.action for use in spec.context + spec.deliver] == [
        "jira.search",
        "slack.post_message",
    ]


def block_after(heading: str) -> list[str]:
    """The lines of the first plain code block under `heading`, comments dropped."""
    section = (ROOT / "README.md").read_text().split(heading + "\n", 1)[1]
    code = re.search(r"```\n(.*?)\n```", section, re.S).group(1)
    return [line.split("  #")[0].strip() for line in code.splitlines() if line.strip()]


def test_the_first_agent_and_the_ledger_commands_work_as_pasted(tmp_path, monkeypatch):
    """README's walk-through, pasted into a shell in a fresh project beside the quickstart's
    virtualenv, then each "Read the ledger" command (the dashboard in-process: it serves)."""
    import os
    import shlex
    import subprocess
    import sys

    (tmp_path / ".venv").symlink_to(Path(sys.prefix))
    first = block_after("## Write your first agent")
    assert first[0] == "source .venv/bin/activate"
    ledger = block_after("## Read the ledger")
    pasted = [line for line in ledger if " dashboard" not in line]
    env = {**os.environ, "USER": "erin", "GIT_CONFIG_GLOBAL": str(tmp_path / "none")}
    done = subprocess.run(
        ["bash", "-e", "-c", "\n".join([*first, *pasted])],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "3 passed" in done.stdout and "dry run: read and thought, wrote nothing" in done.stdout
    assert "viewing as erin ($USER)" in done.stderr
    assert "deploy-digest" in done.stdout  # erin's own agent, in full in her report

    import uvicorn
    from typer.testing import CliRunner

    from meshagent.cli.main import app

    seen: dict = {}
    monkeypatch.setattr(uvicorn, "run", lambda application, **options: seen.update(options))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("USER", "erin")
    for line in [*ledger, *block_after("## The dashboard")]:
        if " dashboard" in line:
            result = CliRunner().invoke(app, shlex.split(line)[1:], catch_exceptions=False)
            who = line.split("--user ")[1].split()[0] if "--user" in line else "erin"
            assert result.exit_code == 0 and f"viewing as {who}" in result.output


def test_readme_names_every_system_package_the_tests_need():
    from tests.dashboard.test_browser import SYSTEM_PACKAGES

    readme = " ".join((ROOT / "README.md").read_text().split())
    assert f"`{SYSTEM_PACKAGES}`" in readme
    ci = (ROOT / ".ci" / "run").read_text()
    assert "export CI=true" in ci
    for package in SYSTEM_PACKAGES.split("-y ", 1)[1].split():
        assert package in ci or package == "postgresql", package
