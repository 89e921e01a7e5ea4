"""Light commands start fast: `meshagent --version`, `validate`, `list` and `schema` import none of
LangChain, SQLAlchemy, the Slack stack or the connectors' client libraries (issue 20), and
`meshagent run` of an agent without tools on a current ledger imports no agent loop, web server,
Slack app or Alembic.

Each command runs in a fresh interpreter, through the Typer app as the `meshagent` script runs
it, and prints the top-level packages it has imported."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

#: Imported by none of the light commands.
HEAVY = frozenset(
    {
        "langchain",
        "langchain_core",
        "langchain_openai",
        "langgraph",
        "langsmith",
        "sqlalchemy",
        "alembic",
        "psycopg",
        "slack_sdk",
        "slack_bolt",
        "aiohttp",
        "httpx",
        "jira",
        "requests",
        "uvicorn",
        "starlette",
    }
)
#: Not imported by a run of an agent without tools, which needs none of them.
NOT_FOR_A_RUN = frozenset(
    {"langgraph", "langchain", "uvicorn", "starlette", "slack_bolt", "alembic"}
)

PROBE = """
import json, sys
sys.argv = ["meshagent", *json.loads(sys.argv[1])]
from meshagent.cli.main import app
try:
    app(prog_name="meshagent", standalone_mode=False)
except SystemExit as exc:
    code = exc.code
else:
    code = 0
print(json.dumps({"code": code, "modules": sorted(sys.modules)}), file=sys.stderr)
"""


def imported_by(*argv: str, env: dict[str, str] | None = None) -> tuple[int, set[str], str]:
    """The exit code of ``meshagent ARGV`` in a fresh interpreter, the top-level packages it
    imported, and what it printed (`submodules` holds every module of the last call)."""
    done = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(argv)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    found = json.loads(done.stderr.strip().splitlines()[-1])
    submodules.clear()
    submodules.update(found["modules"])
    return found["code"], {name.split(".")[0] for name in found["modules"]}, done.stdout


#: Every module the last `imported_by` saw imported, by its dotted name.
submodules: set[str] = set()


@pytest.mark.parametrize(
    "argv",
    [("--version",), ("validate", "agents"), ("list", "agents"), ("schema",)],
    ids=["version", "validate", "list", "schema"],
)
def test_light_commands_import_no_heavy_library(argv):
    code, modules, printed = imported_by(*argv)
    assert code == 0, printed
    assert printed.strip()  # the command did its work (version, ok, the table, the schema)
    assert not modules & HEAVY, f"meshagent {' '.join(argv)} imported {sorted(modules & HEAVY)}"
    if argv[0] == "validate":
        assert "valid" in printed
    if argv[0] == "--version":
        assert "rich" not in modules  # nothing to render: the version is plain text


def test_the_probe_sees_what_a_command_imports():
    """The check can fail: `meshagent ledger` reads the ledger through SQLAlchemy."""
    code, modules, _ = imported_by("ledger", "--help")
    assert code == 0
    assert "sqlalchemy" in modules


def test_a_run_without_tools_imports_no_agent_loop_server_or_scheduler(tmp_path):
    import os

    from meshagent.ledger.store import Ledger
    from meshagent.sandbox import Sandbox

    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    Ledger.open(url).close()  # a ledger at the newest revision: the run needs no Alembic
    with Sandbox() as box:
        env = {
            **os.environ,
            **box.env(),
            "MESHAGENT_LEDGER_URL": url,
            "HOME": str(tmp_path),
        }
        code, modules, printed = imported_by("run", "standup-digest", env=env)
        assert code == 0, printed
        assert box.slack.posted_to("#payments-standup")  # it really ran and delivered
    assert {"langchain_core", "sqlalchemy"} <= modules  # what a run needs
    assert not modules & NOT_FOR_A_RUN, sorted(modules & NOT_FOR_A_RUN)
    assert "langchain_core.tools.base" not in submodules  # tools are bound in agent mode only
    # Nor checks the arguments of the MCP tool that a later file of the directory calls.
    assert "jsonschema" not in modules
    assert "langchain_core.language_models.chat_models" in submodules  # (the check can fail)


def test_a_run_by_name_reads_only_the_files_that_can_define_the_agent(tmp_path):
    """`meshagent run hello` beside an agent that calls an MCP tool checks no MCP arguments,
    which needs jsonschema: it reads only hello's file. Validating the directory does."""
    import os
    import shutil

    agents = tmp_path / "agents"
    agents.mkdir()
    for name in ("standup-wiki-page.yaml", "mcp.lock.json"):  # a wiki tool's arguments
        shutil.copy(ROOT / "agents" / name, agents / name)
    (agents / "hello.yaml").write_text(
        "name: hello\nowner: alice@example.com\nteam: payments\nmodel: offline\n"
        "instructions: Say hello.\nvalue: {tag: toil-reduction, minutes_saved: 1}\n"
    )
    env = {
        **os.environ,
        "HOME": str(tmp_path),
        "MESHAGENT_AGENTS_DIR": str(agents),
        "MESHAGENT_LEDGER_URL": f"sqlite:///{tmp_path / 'ledger.db'}",
    }
    code, modules, printed = imported_by("run", "hello", env=env)
    assert code == 0, printed
    assert "status ok" in printed
    assert "jsonschema" not in modules
    code, modules, printed = imported_by("validate", env=env)
    assert code == 0, printed
    assert "jsonschema" in modules  # the check can fail: the wiki agent's arguments need it
