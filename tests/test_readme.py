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
    from meshagent.loader import parse_agent

    readme = (ROOT / "README.md").read_text()
    example = re.search(r"```yaml\n(# yaml-language-server.*?)```", readme, re.S).group(1)
    spec = parse_agent(example, filename="README.md", env={})
    assert spec.name == "standup-digest"
    assert [use.action for use in spec.context + spec.deliver] == [
        "jira.search",
        "slack.post_message",
    ]
