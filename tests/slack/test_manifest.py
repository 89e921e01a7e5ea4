"""`meshagent slack manifest`: the app manifest to paste into Slack, from the agents directory."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap

import yaml
from typer.testing import CliRunner

from meshagent.cli.slack import app
from meshagent.config import Config
from tests.slack.conftest import ASK, SCHEDULED_ONLY, STANDUP


def _project(tmp_path) -> Config:
    agents = tmp_path / "agents"
    agents.mkdir(parents=True)
    shutil.copy(STANDUP, agents / "standup-digest.yaml")
    (agents / "ask.yaml").write_text(textwrap.dedent(ASK), encoding="utf-8")
    (agents / "nightly.yaml").write_text(textwrap.dedent(SCHEDULED_ONLY), encoding="utf-8")
    return Config(root=tmp_path, ledger_url=f"sqlite:///{tmp_path / 'l.db'}")


def _manifest(tmp_path, *args: str):
    result = CliRunner().invoke(app, ["manifest", *args], obj={"config": _project(tmp_path)})
    return result


def test_socket_mode_manifest_lists_every_command(tmp_path):
    result = _manifest(tmp_path, "--name", "Mesh Bot")
    assert result.exit_code == 0, result.output
    manifest = yaml.safe_load(result.stdout)
    commands = manifest["features"]["slash_commands"]
    assert [c["command"] for c in commands] == ["/meshagent", "/ask", "/standup"]
    assert all("url" not in c for c in commands)
    assert commands[1]["description"] == "Answers a question about the payments team."
    assert commands[1]["usage_hint"] == "[question] [days=...]"
    assert manifest["display_information"]["name"] == "Mesh Bot"
    settings = manifest["settings"]
    assert settings["socket_mode_enabled"] is True
    assert settings["interactivity"] == {"is_enabled": True}
    assert settings["event_subscriptions"] == {"bot_events": ["reaction_added", "reaction_removed"]}
    scopes = manifest["oauth_config"]["scopes"]["bot"]
    for scope in ("commands", "chat:write", "reactions:read", "usergroups:read", "users:read"):
        assert scope in scopes


def test_http_manifest_points_everything_at_one_url(tmp_path):
    result = _manifest(tmp_path, "--url", "https://mesh.example.com/slack/events", "--json")
    assert result.exit_code == 0, result.output
    manifest = json.loads(result.stdout)
    url = "https://mesh.example.com/slack/events"
    assert {c["url"] for c in manifest["features"]["slash_commands"]} == {url}
    assert manifest["settings"]["event_subscriptions"]["request_url"] == url
    assert manifest["settings"]["interactivity"]["request_url"] == url
    assert manifest["settings"]["socket_mode_enabled"] is False
    bare = json.loads(_manifest(tmp_path / "b", "--url", "https://h.example", "--json").stdout)
    assert bare["settings"]["interactivity"]["request_url"] == "https://h.example/slack/events"


def test_a_url_must_be_https(tmp_path):
    result = _manifest(tmp_path, "--url", "http://mesh.example.com/slack/events")
    assert result.exit_code == 2
    assert "not an https:// URL" in result.output


def test_the_cli_module_does_not_load_slack_bolt():
    code = "import sys, meshagent.cli.slack; print('slack_bolt' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_meshagent_slack_manifest_as_a_user_types_it(tmp_path):
    _project(tmp_path)
    (tmp_path / "meshagent.toml").write_text('agents_dir = "agents"\n', encoding="utf-8")
    done = subprocess.run(
        [sys.executable, "-m", "meshagent", "slack", "manifest", "--url", "https://mesh.example"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    manifest = yaml.safe_load(done.stdout)
    commands = [c["command"] for c in manifest["features"]["slash_commands"]]
    assert commands == ["/meshagent", "/ask", "/standup"]
    assert manifest["settings"]["event_subscriptions"]["request_url"] == (
        "https://mesh.example/slack/events"
    )
    listed = subprocess.run(
        [sys.executable, "-m", "meshagent", "--help"], capture_output=True, text=True, timeout=60
    )
    assert "slack" in listed.stdout


def test_a_slash_name_slack_keeps_gets_no_command_and_a_warning(tmp_path):
    from tests.slack.test_commands import STATUS_AGENT

    config = _project(tmp_path)
    (tmp_path / "agents" / "status.yaml").write_text(STATUS_AGENT, encoding="utf-8")
    result = CliRunner().invoke(app, ["manifest"], obj={"config": config})
    assert result.exit_code == 0, result.output
    commands = [c["command"] for c in yaml.safe_load(result.stdout)["features"]["slash_commands"]]
    assert "/status" not in commands and "/standup" in commands
    assert (
        "warning: /status (status-page) left out: /status is one of Slack's built-in commands; "
        "run it with /meshagent run status"
    ) in result.stderr


def test_example_agents_descriptions_are_whole():
    """An unquoted ` #` starts a YAML comment: the command's description would stop there."""
    from meshagent.agentfile.loader import load_agent

    for path in sorted(STANDUP.parent.glob("*.yaml")):
        [line] = [ln for ln in path.read_text().splitlines() if ln.startswith("description: ")]
        written = line.removeprefix("description: ").strip().strip('"')
        assert load_agent(path, env={}).description == written, path.name
