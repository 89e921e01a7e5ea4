"""The `meshagent` command line through Typer's CliRunner, and the committed schema."""

from __future__ import annotations

import json
import re
from pathlib import Path

import jsonschema
import pytest
import yaml
from typer.testing import CliRunner

from meshagent import __version__
from meshagent.agentfile.loader import agent_files, load_agent
from meshagent.agentfile.schema import SCHEMA_FILENAME, agent_schema, schema_text
from meshagent.cli.main import app
from meshagent.config import PrivacySettings

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def project(tmp_path, monkeypatch):
    """An empty project directory with its own meshagent.toml, as the working directory."""
    (tmp_path / "meshagent.toml").write_text('agents_dir = "agents"\n')
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("COLUMNS", "200")
    for name in ("MESHAGENT_CONFIG", "MESHAGENT_AGENTS_DIR", "MESHAGENT_DEFAULT_MODEL"):
        monkeypatch.delenv(name, raising=False)
    # Who is at the keyboard: no git identity from this machine, $USER as a shell sets it.
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(tmp_path / "no-gitconfig"))
    monkeypatch.setenv("USER", "tester")
    return tmp_path


def run(*args: str):
    return CliRunner().invoke(app, list(args), catch_exceptions=False)


def test_version():
    result = run("--version")
    assert result.exit_code == 0
    assert result.output.strip() == f"meshagent {__version__}"


@pytest.mark.parametrize("command", ["init", "validate", "schema", "list"])
def test_every_command_has_useful_help(command):
    result = run(command, "--help")
    assert result.exit_code == 0
    assert "Usage: meshagent " + command in result.output
    (registered,) = [
        c for c in app.registered_commands if (c.name or c.callback.__name__) == command
    ]
    summary = registered.callback.__doc__.split(";")[0].split(",")[0]
    assert summary in " ".join(result.output.split())


def test_init_writes_an_agent_that_validates_and_lists(project):
    result = run("init", "deploy-digest", "--team", "payments", "--owner", "bob@example.com")
    assert result.exit_code == 0, result.output
    path = project / "agents" / "deploy-digest.yaml"
    assert path.read_text().startswith("# yaml-language-server: $schema=../meshagent.schema.json")
    assert (project / SCHEMA_FILENAME).exists()
    spec = load_agent(path)
    assert (spec.name, spec.team, spec.owner) == ("deploy-digest", "payments", "bob@example.com")
    assert run("validate").exit_code == 0
    listing = run("list")
    assert listing.exit_code == 0
    assert "deploy-digest" in listing.output and "payments" in listing.output
    assert "manual only" in listing.output  # no trigger until it reads and delivers something


def test_init_refuses_to_overwrite_and_refuses_bad_names(project):
    assert run("init", "a").exit_code == 0
    again = run("init", "a")
    assert again.exit_code == 1
    assert "already exists; not overwritten" in again.output
    bad = run("init", "Bad_Name")
    assert bad.exit_code == 1
    assert "'Bad_Name': use lowercase letters" in bad.output
    assert not (project / "agents" / "Bad_Name.yaml").exists()


def test_validate_reports_every_located_error_and_a_summary(project):
    agents = project / "agents"
    agents.mkdir()
    good = (ROOT / "tests" / "data" / "valid.yaml").read_text()
    (agents / "good.yaml").write_text(good)
    (agents / "bad.yaml").write_text(
        good.replace("name: status-digest", "name: bad")
        .replace("0 9 * * MON-FRI", "0 25 * * *")
        .replace("slash: status", "slash: bad")
        .replace("tag: toil-reduction", "tag: toil")
    )
    result = run("validate")
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert lines[0].startswith("agents/bad.yaml:14:15: triggers[0].schedule: '0 25 * * *' is not")
    assert lines[1].startswith("agents/bad.yaml:20:14: value.tag: unknown value tag 'toil'")
    assert lines[-1] == "2 errors in 1 of 2 files"


def test_validate_named_files_ok(project):
    path = project / "one.yaml"
    path.write_text((ROOT / "tests" / "data" / "valid.yaml").read_text())
    result = run("validate", str(path))
    assert result.exit_code == 0
    assert result.output.strip() == "ok: 1 agent in 1 file valid"


def test_list_with_errors_exits_1(project):
    (project / "agents").mkdir()
    (project / "agents" / "x.yaml").write_text("name: [")
    result = run("list")
    assert result.exit_code == 1
    assert "agents/x.yaml:2:1: invalid YAML" in result.output


def test_bad_config_is_reported_with_its_line(project):
    (project / "meshagent.toml").write_text('agents_dir = "agents"\nledger_ur = "x"\n')
    result = run("validate")
    assert result.exit_code == 2
    assert (
        "meshagent.toml:2: unknown setting 'ledger_ur'; did you mean 'ledger_url'?" in result.output
    )


def test_schema_to_stdout_and_file(project):
    result = run("schema")
    assert json.loads(result.output)["title"] == "MeshAgent agent file"
    assert run("schema", "-o", "s.json").exit_code == 0
    assert (project / "s.json").read_text() == result.output


def test_committed_schema_is_current():
    from meshagent.actions import default_registry
    from meshagent.mcp.lock import find_lock
    from meshagent.mcp.tools import registry_for

    committed = (ROOT / SCHEMA_FILENAME).read_text()
    # With the MCP tools of agents/mcp.lock.json, as `meshagent schema` writes it in the repo.
    registry = registry_for(find_lock(ROOT / "agents"), {}, default_registry())
    assert committed == schema_text(registry), (
        "meshagent.schema.json is stale: run `meshagent schema -o meshagent.schema.json`"
    )


def test_committed_schema_accepts_every_example_agent():
    schema = json.loads((ROOT / SCHEMA_FILENAME).read_text())
    validator = jsonschema.Draft202012Validator(schema)
    files = agent_files(ROOT / "agents")
    assert files, "agents/ holds no example agents"
    for path in files:
        errors = list(validator.iter_errors(yaml.safe_load(path.read_text())))
        assert errors == [], f"{path}: {errors[0].message}"


def test_schema_rejects_what_the_loader_rejects():
    validator = jsonschema.Draft202012Validator(agent_schema())
    good = yaml.safe_load((ROOT / "tests" / "data" / "valid.yaml").read_text())
    assert list(validator.iter_errors(good)) == []
    for broken in (
        {**good, "contxt": []},
        {**good, "context": [{"http.gte": {"url": "https://x.example.com"}}]},
        {**good, "context": [{"http.get": {"urll": "https://x.example.com"}}]},
        {**good, "value": {"tag": "toil"}},
        {k: v for k, v in good.items() if k != "instructions"},
    ):
        assert list(validator.iter_errors(broken)), broken


def test_schema_descriptions_come_from_field_docstrings():
    schema = agent_schema()
    assert re.search(
        "crontab", schema["$defs"]["ScheduleTrigger"]["properties"]["schedule"]["description"]
    )
    assert schema["properties"]["skip_if_unchanged"]["description"].startswith("Skip the model")


TEN_MISTAKES = {
    "bad-name.yaml": ("name: status-digest", "name: Status_Digest"),
    "bad-cron.yaml": ('"0 9 * * MON-FRI"', '"0 9 * * MON-FRY"'),
    "bad-zone.yaml": ("timezone: Europe/Berlin", "timezone: Mars/Olympus"),
    "bad-every.yaml": ("every: 2h", "every: 0m"),
    "bad-action.yaml": ("  - http.get: {url: ", "  - http.fetch: {url: "),
    "bad-grant.yaml": ('{url_prefixes: ["https://status.example.com/api/"]}', "{url_prefixes: 7}"),
    "bad-tag.yaml": ("tag: toil-reduction", "tag: vanity"),
    "bad-budget.yaml": ("max_model_calls: 6", "max_model_calls: 0"),
    "bad-field.yaml": ("skip_if_unchanged: true", "skip_if_unchanged: true\nretries: 3"),
    "bad-model.yaml": ("model: openai:gpt-4.1-mini", "model: gpt4"),
}


def test_ten_different_mistakes_give_ten_located_errors(project):
    agents = project / "agents"
    agents.mkdir()
    valid = (ROOT / "tests" / "data" / "valid.yaml").read_text()
    for index, (filename, (old, new)) in enumerate(sorted(TEN_MISTAKES.items())):
        assert old in valid, old
        text = valid.replace(old, new).replace("status-digest", f"agent-{index}")
        (agents / filename).write_text(text.replace("slash: status", f"slash: cmd-{index}"))
    result = run("validate", "agents")
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert lines[-1] == "10 errors in 10 of 10 files"
    errors = lines[:-1]
    assert len(errors) == 10
    assert {line.split(":", 1)[0] for line in errors} == {f"agents/{f}" for f in TEN_MISTAKES}
    for line in errors:
        assert re.match(r"agents/[a-z-]+\.yaml:\d+:\d+: [\w.\[\]]+: .+", line), line


def test_ledger_forecast_multiplies_fires_by_median_cost(project, monkeypatch):
    from decimal import Decimal

    from meshagent.ledger import Cost, Ledger

    agents = project / "agents"
    agents.mkdir()
    valid = (ROOT / "tests" / "data" / "valid.yaml").read_text()
    # weekdays at 09:00 only: drop the 2-hourly trigger
    (agents / "a.yaml").write_text(valid.replace("  - every: 2h\n", ""))
    url = f"sqlite:///{project / 'ledger.db'}"
    monkeypatch.setenv("MESHAGENT_LEDGER_URL", url)
    monkeypatch.setenv("MESHAGENT_PRIVACY__ADMINS", "boss@example.com")
    with Ledger.open(url) as ledger:
        for cents in ("0.10", "0.20", "0.90"):
            run_id = ledger.open_run("status-digest", owner="alice@example.com", team="platform")
            cost = Cost(Decimal(cents), Decimal(0), Decimal(0))
            ledger.close_run(run_id, "ok", cost=cost)
    result = run("ledger", "--viewer", "boss@example.com", "forecast")
    assert result.exit_code == 0, result.output
    row = next(line for line in result.output.splitlines() if "status-digest" in line)
    cells = [cell.strip() for cell in row.strip("│ ").split("│")]
    assert cells[1].isdigit()  # whole fires per month: a month has no half run
    fires = float(cells[1])
    assert 20 <= fires <= 23  # weekdays in 30 days
    assert cells[2:4] == ["3", "$0.20"]
    assert cells[4] == f"${Decimal('0.20') * Decimal(str(fires)):.2f}"
    hidden = run("ledger", "--viewer", "eve@example.com", "forecast")
    assert "status-digest" not in hidden.output


def test_init_writes_a_starter_test_that_passes(project):
    import subprocess
    import sys

    assert run("init", "ops-digest", "--team", "ops").exit_code == 0
    test = project / "agents" / "test_ops_digest.py"
    assert 'AGENT = Path(__file__).with_name("ops-digest.yaml")' in test.read_text()
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(test)],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "3 passed" in done.stdout


def test_init_takes_the_owner_from_people_me_git_user_or_asks(project, monkeypatch):
    (project / "gitconfig").write_text("[user]\n\temail = dev@example.com\n")
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(project / "gitconfig"))
    from_git = run("init", "one")
    assert from_git.exit_code == 0, from_git.output
    assert load_agent(project / "agents" / "one.yaml").owner == "dev@example.com"
    assert "owner: dev@example.com (git's user.email); --owner sets another" in from_git.output
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(project / "none"))
    assert "owner: tester ($USER)" in run("init", "two").output
    monkeypatch.delenv("USER")  # a container: no $USER, no git identity
    asked = CliRunner().invoke(app, ["init", "three"], input="erin@example.com\n")
    assert asked.exit_code == 0, asked.output
    assert "Who owns this agent" in asked.output
    assert load_agent(project / "agents" / "three.yaml").owner == "erin@example.com"
    (project / "meshagent.toml").write_text('agents_dir = "agents"\n[people]\nme = "me@x.org"\n')
    assert "owner: me@x.org ([people] me in meshagent.toml)" in run("init", "four").output


def test_the_starter_agent_runs_by_hand_and_works_against_the_sandbox(
    project, run_agent_file, sandbox
):
    assert run("init", "pay-digest", "--team", "payments").exit_code == 0
    path = project / "agents" / "pay-digest.yaml"
    starter = load_agent(path)
    assert (starter.context, starter.deliver, starter.triggers) == ([], [], [])
    # Its commented examples work as they are, once uncommented.
    path.write_text(re.sub(r"(?m)^# (context:|deliver:|triggers:|  )", r"\1", path.read_text()))
    spec = load_agent(path)
    assert [use.action for use in spec.context + spec.deliver] == [
        "jira.search",
        "slack.post_message",
    ]
    assert len(spec.triggers) == 1
    result = run_agent_file(path)
    assert result.status == "ok", result.error
    assert sandbox.slack.posted_to("#payments")[-1].text == result.answer


def _ledger_of_two(project, monkeypatch) -> None:
    """alice owns two agents in a team of one; bob one in another team of one."""
    from decimal import Decimal

    from meshagent.ledger import Cost, Ledger

    url = f"sqlite:///{project / 'ledger.db'}"
    monkeypatch.setenv("MESHAGENT_LEDGER_URL", url)
    with Ledger.open(url) as ledger:
        for agent, owner, team in (
            ("pay-digest", "alice@example.com", "payments"),
            ("pay-nudger", "alice@example.com", "payments"),
            ("ops-digest", "bob@example.com", "ops"),
        ):
            run_id = ledger.open_run(agent, owner=owner, team=team)
            ledger.close_run(run_id, "ok", cost=Cost(Decimal("0.01"), Decimal(0), Decimal(0)))


def test_a_solo_user_sees_their_own_runs_in_full_in_every_report(project, monkeypatch):
    _ledger_of_two(project, monkeypatch)
    (project / "meshagent.toml").write_text(
        'agents_dir = "agents"\n[people]\nme = "alice@example.com"\n'
    )
    for by in ("agent", "team", "owner"):
        result = run("ledger", "report", "--by", by)
        assert result.exit_code == 0, result.output
        text = " ".join(result.output.split())
        assert "viewing as alice@example.com ([people] me in meshagent.toml)" in text
        assert "Your agents' 2 runs in full" in text
        assert "1 run of 1 person withheld" in text and "ops-digest" not in text
    by_agent = " ".join(run("ledger", "report", "--by", "agent").output.split())
    assert "pay-digest" in by_agent and "pay-nudger" in by_agent
    assert "fewer than 5 people ([privacy] min_group_size) could be singled out" in by_agent
    # --viewer goes before the command, and names another person
    bob = " ".join(run("ledger", "--viewer", "bob@example.com", "report").output.split())
    assert "ops" in bob and "payments" not in bob and "viewing as" not in bob


def test_a_report_with_every_row_withheld_says_what_and_why(project, monkeypatch):
    _ledger_of_two(project, monkeypatch)
    monkeypatch.delenv("USER")  # nobody at the keyboard
    result = run("ledger", "report", "--by", "owner")
    text = " ".join(result.output.split())
    assert "no runs recorded" not in text
    assert "3 runs of 2 people withheld: a person's row is shown only to them" in text
    assert "no viewer: set [people] me in meshagent.toml or use ledger --viewer NAME" in text


def test_the_viewer_defaults_to_git_then_user(project, monkeypatch):
    from meshagent.cli.people import Person, current_person
    from meshagent.config import load_config

    config = load_config()
    assert current_person(config) == Person("tester", "$USER")
    assert current_person(config, env={}) is None
    (project / "gitconfig").write_text("[user]\n\temail = dev@example.com\n")
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(project / "gitconfig"))
    assert current_person(config) == Person("dev@example.com", "git's user.email")


def _error_messages() -> list[str]:
    """Every message the package raises as a literal, f-string fields shown as {...}."""
    import ast

    found = []
    for path in sorted((ROOT / "meshagent").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if not (isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call)):
                continue
            for arg in node.exc.args[:1]:
                if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                    found.append(arg.value)
                elif isinstance(arg, ast.JoinedStr):
                    found.append(
                        "".join(
                            part.value if isinstance(part, ast.Constant) else "{...}"
                            for part in arg.values
                        )
                    )
    return found


def test_every_error_message_is_printed_as_text_never_as_markup():
    import io

    from rich.console import Console

    from meshagent.cli.printer import print_error

    messages = _error_messages()
    assert len(messages) > 100
    messages += [
        "pip install 'meshagent[anthropic]'",
        "admins listed under [privacy] admins",
        "[bold]not bold[/bold] [red] and a path /tmp/[x]/a.db",
    ]
    for message in messages:
        console = Console(file=io.StringIO(), width=40, color_system=None)
        print_error(console, message)
        assert console.file.getvalue() == f"error: {message}\n"


def test_bracketed_words_survive_on_the_command_line(project, monkeypatch):
    import importlib.util

    _ledger_of_two(project, monkeypatch)
    flags = " ".join(run("ledger", "--viewer", "eve@example.com", "flags").output.split())
    assert "admins listed under [privacy] admins in meshagent.toml" in flags
    if importlib.util.find_spec("langchain_anthropic") is None:
        assert run("init", "x").exit_code == 0
        monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test")
        ran = run("run", "x", "--model", "anthropic:claude-sonnet-4-5")
        assert "pip install 'meshagent[anthropic]'" in " ".join(ran.output.split())


def test_serve_on_a_busy_port_stops_before_the_scheduler_starts(project, monkeypatch):
    import socket

    monkeypatch.setenv("MESHAGENT_LEDGER_URL", f"sqlite:///{project / 'ledger.db'}")
    started = []
    monkeypatch.setattr("meshagent.fleet.server.create_app", lambda *a, **k: started.append(a))
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = CliRunner().invoke(app, ["serve", "--port", str(port)])
    assert result.exit_code == 2
    assert f"error: cannot listen on 127.0.0.1:{port}: address already in use" in result.output
    assert "serving" not in result.output and not started


def test_each_project_keeps_its_own_ledger_beside_its_settings(tmp_path, monkeypatch):
    from meshagent.config import load_config

    for name in ("MESHAGENT_CONFIG", "MESHAGENT_LEDGER_URL"):
        monkeypatch.delenv(name, raising=False)
    urls = []
    for project in ("one", "two"):
        (tmp_path / project / "sub").mkdir(parents=True)
        (tmp_path / project / "meshagent.toml").write_text('agents_dir = "agents"\n')
        urls.append(load_config(cwd=tmp_path / project / "sub").ledger_url)
    assert urls == [
        f"sqlite:///{tmp_path / p / '.meshagent' / 'ledger.db'}" for p in ("one", "two")
    ]
    monkeypatch.chdir(tmp_path / "one")
    monkeypatch.setenv("USER", "tester")
    assert run("ledger", "report").exit_code == 0
    assert (tmp_path / "one" / ".meshagent" / "ledger.db").exists()
    assert not (tmp_path / "two" / ".meshagent").exists()
    (tmp_path / "none").mkdir()  # no meshagent.toml anywhere: the user's data directory
    elsewhere = load_config(cwd=tmp_path / "none").ledger_url
    assert elsewhere.endswith("/meshagent/ledger.db") and ".meshagent" not in elsewhere


def _every_command(group=None, path=()):
    """Every command's argv, the groups' too: ("ledger", "report"), ("slack", "manifest")..."""
    import typer.main

    group = group or typer.main.get_command(app)
    yield path
    if hasattr(group, "list_commands"):  # asked as click does: a group may add one when asked
        context = typer.Context(group)
        for name in group.list_commands(context):
            yield from _every_command(group.get_command(context, name), (*path, name))


def test_help_renders_cleanly_at_80_columns(monkeypatch):
    from importlib.metadata import version

    from packaging.requirements import Requirement

    pyproject = (ROOT / "pyproject.toml").read_text()
    pinned = Requirement(re.search(r'"(typer[^"]*)"', pyproject).group(1))
    assert version("typer") in pinned.specifier  # the range whose help was checked
    monkeypatch.setenv("COLUMNS", "80")
    paths = list(_every_command())
    assert ("ledger", "report") in paths and ("dashboard",) in paths
    for path in paths:
        result = run(*path, "--help")
        assert result.exit_code == 0, path
        assert "<bool>" not in result.output, path  # a flag takes no value
        assert all(len(line) <= 80 for line in result.output.splitlines()), path
    ledger_help = " ".join(run("ledger", "--help").output.replace("│", " ").split())
    assert "(default: [people] me, git's" in ledger_help  # brackets are text, not markup


def test_counts_agree_with_their_nouns_and_names_are_never_broken(project, monkeypatch):
    agents = project / "agents"
    agents.mkdir()
    valid = (ROOT / "tests" / "data" / "valid.yaml").read_text()
    long_name = "dependency-release-watch-payments"
    (agents / "a.yaml").write_text(valid.replace("name: status-digest", f"name: {long_name}"))
    assert run("validate").output.strip() == "ok: 1 agent in 1 file valid"
    monkeypatch.setenv("COLUMNS", "80")
    listing = run("list").output
    assert listing.splitlines()[0].strip() == "1 agent"
    assert long_name in listing  # on one line, not folded mid-word
    assert "$2.00/day" in listing


def test_ledger_export_into_head_exits_0(project):
    import subprocess
    import sys

    from meshagent.ledger import Ledger
    from tests.ledger.helpers import record

    url = f"sqlite:///{project / 'ledger.db'}"
    with Ledger.open(url) as ledger:
        ledger.write_records([record() for _ in range(3000)])
    shell = f"set -o pipefail; {sys.executable} -m meshagent ledger export | head -n 1"
    done = subprocess.run(
        ["bash", "-c", shell],
        cwd=project,
        env={**__import__("os").environ, "MESHAGENT_LEDGER_URL": url},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == "" and done.stdout.count("\n") == 1


def test_every_command_init_prints_works_when_pasted(project):
    import shlex
    import subprocess

    from meshagent.cli.invocation import meshagent_command

    result = run("init", "deploy-digest", "--team", "payments")
    assert result.exit_code == 0, result.output
    command = meshagent_command(cwd=project)
    printed = [line.strip() for line in result.output.splitlines() if line.startswith("  ")]
    assert [shlex.split(line)[1:] for line in printed] == [
        ["validate", "agents/deploy-digest.yaml"],
        ["run", "agents/deploy-digest.yaml", "--dry-run"],
    ]
    for line in printed:
        assert line.startswith(command + " ")
        pasted = subprocess.run(
            line, shell=True, cwd=project, capture_output=True, text=True, timeout=120
        )
        assert pasted.returncode == 0, (line, pasted.stdout, pasted.stderr)


def test_a_broken_settings_file_is_reported_without_a_ledger_url_error(project):
    (project / "meshagent.toml").write_text("agents_dir = 3\n")
    result = run("validate")
    assert result.exit_code == 2
    assert "ledger_url" not in result.output and "agents_dir: expected a path" in result.output


def test_a_report_at_80_columns_cuts_no_name_and_no_figure(project, monkeypatch):
    import io

    from rich.console import Console

    from meshagent.ledger import Ledger, reports
    from meshagent.ledger.periods import Period
    from meshagent.ledger.render import report_table

    _ledger_of_two(project, monkeypatch)
    with Ledger.open(f"sqlite:///{project / 'ledger.db'}") as ledger:
        report = reports.summary(ledger, by="agent", period=Period.named("week"), viewer="root",
                                 privacy=PrivacySettings(admins=("root",)))  # fmt: skip
    for width in (80, 200):
        console = Console(file=io.StringIO(), width=width)
        console.print(report_table(report, width=width))
        text = console.file.getvalue()
        assert "…" not in text, text
        for name in ("pay-digest", "pay-nudger", "ops-digest"):
            assert name in text
        assert all(len(line) <= width for line in text.splitlines())
