"""Validation without servers: the loader, `meshagent validate` and `meshagent schema` read
mcp.lock.json; an unknown tool is an unknown action with the closest name suggested."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
from typer.testing import CliRunner

from meshagent.agentfile.loader import parse_agent, scan_agents
from meshagent.cli.main import app
from meshagent.exceptions import SpecError
from meshagent.mcp.lock import Lock, LockedTool
from meshagent.mcp.tools import registry_near

PAGE = {
    "type": "object",
    "properties": {"space": {"type": "string"}, "title": {"type": "string"},
                   "body": {"type": "string"}},
    "required": ["space", "title", "body"],
}  # fmt: skip
SEARCH = {"type": "object", "properties": {"query": {"type": "string"}}, "required": ["query"]}
TOOLS = {
    "create_page": LockedTool("create_page", "Create a page.", PAGE, {"readOnlyHint": False}),
    "search_pages": LockedTool("search_pages", "Search.", SEARCH, {"readOnlyHint": True}),
    "archive_page": LockedTool("archive_page", "Archive a page.", SEARCH, {}),
}
AGENT = """\
name: wiki-writer
owner: alice@example.com
team: payments
instructions: Write the page.
context:
  - wiki.search_pages: {query: standup}
deliver:
  - wiki.create_page: {space: ENG, title: "Standup {{today}}", body: "{{answer}}"}
value: {tag: toil-reduction}
"""


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "agents").mkdir()
    Lock({"wiki": TOOLS}).write(tmp_path / "agents" / "mcp.lock.json")
    (tmp_path / "meshagent.toml").write_text('[mcp.wiki]\nurl_env = "WIKI_MCP_URL"\n')
    for name in [n for n in __import__("os").environ if n.startswith("MESHAGENT_")]:
        monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def errors(project: Path, text: str) -> list[str]:
    (project / "agents" / "a.yaml").write_text(textwrap.dedent(text))
    result = scan_agents([project / "agents"])
    return [f"{i.line}: {i.path}: {i.message}" for i in result.issues]


def test_an_agent_using_locked_tools_validates_with_no_server(project):
    assert errors(project, AGENT) == []
    result = CliRunner().invoke(app, ["validate"])
    assert result.exit_code == 0, result.output
    assert "1 agent in 1 file valid" in result.output


def test_a_tool_missing_from_the_lock_is_an_unknown_action_with_the_closest(project):
    found = errors(project, AGENT.replace("wiki.create_page", "wiki.create_pages"))
    assert found == [
        "8: deliver[0]: unknown write action 'wiki.create_pages'; did you mean "
        "'wiki.create_page'? (valid: jira.add_comment, jira.assign, jira.create_issue, "
        "jira.transition, slack.add_reaction, slack.dm, slack.post_message, slack.reply, "
        "wiki.archive_page, wiki.create_page); if the server wiki has it now, run "
        "`meshagent mcp refresh`"
    ]


def test_a_declared_server_without_a_lock_says_to_refresh(project):
    (project / "agents" / "mcp.lock.json").unlink()
    (project / "agents" / "a.yaml").write_text(AGENT)
    result = CliRunner().invoke(app, ["validate"])
    assert result.exit_code == 1
    assert "the MCP server wiki has no tools in mcp.lock.json: run `meshagent mcp refresh`" in (
        " ".join(result.output.split())
    )


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (("- wiki.search_pages:", "- wiki.archive_page:"),
         "6: context[0]: wiki.archive_page is a write action; context takes read actions"),
        (('body: "{{answer}}"', 'body: "fixed"'),
         "8: deliver[0].wiki.create_page: no argument of wiki.create_page receives the agent's "
         'answer: write {{answer}} in the one that should (e.g. body: "{{answer}}")'),
        (("space: ENG, ", ""),
         "8: deliver[0].wiki.create_page: required argument 'space' is missing"),
        (("space: ENG", "space: [ENG]"),
         "8: deliver[0].wiki.create_page.space: expected text, got a list"),
        (("space: ENG", "spaec: ENG"),
         "8: deliver[0].wiki.create_page.spaec: not an argument of this tool (arguments: "
         "body, space, title)"),
    ],
)  # fmt: skip
def test_mistakes_in_mcp_actions_are_located(project, change, expected):
    found = errors(project, AGENT.replace(*change))
    assert any(line.startswith(expected) for line in found), found


def test_read_and_write_in_the_toml_override_the_annotations(project):
    (project / "meshagent.toml").write_text(
        '[mcp.wiki]\nurl_env = "WIKI_MCP_URL"\nread = ["archive_page"]\nwrite = ["search_pages"]\n'
    )
    from meshagent.config import load_config

    registry = registry_near(project / "agents", load_config())
    assert registry.get("wiki.archive_page").kind == "read"
    assert registry.get("wiki.search_pages").kind == "write"
    (project / "agents" / "a.yaml").write_text(AGENT)
    result = CliRunner().invoke(app, ["validate"])
    assert result.exit_code == 1
    assert "wiki.search_pages is a write action; context takes read actions" in result.output


def test_the_schema_completes_the_tools_and_their_arguments(project):
    result = CliRunner().invoke(app, ["schema"])
    schema = json.loads(result.output)
    deliver = schema["properties"]["deliver"]["items"]["anyOf"]
    [page] = [o for o in deliver if "wiki.create_page" in o["properties"]]
    arguments = page["properties"]["wiki.create_page"]
    assert sorted(arguments["properties"]) == ["body", "space", "title"]
    assert arguments["additionalProperties"] is False
    tools = schema["properties"]["tools"]["items"]["anyOf"]
    [grant] = [o for o in tools if "wiki.create_page" in o["properties"]]
    assert sorted(grant["properties"]["wiki.create_page"]["properties"]) == [
        "body", "space", "title"
    ]  # fmt: skip
    context = schema["properties"]["context"]["items"]["anyOf"]
    assert any("wiki.search_pages" in o["properties"] for o in context)
    assert not any("wiki.create_page" in o["properties"] for o in context)


def test_a_broken_lock_is_reported_with_its_file(project):
    (project / "agents" / "mcp.lock.json").write_text('{"version": 1, "servers": [}')
    (project / "agents" / "a.yaml").write_text(AGENT)
    result = CliRunner().invoke(app, ["validate"])
    assert result.exit_code == 2
    assert "mcp.lock.json:1: not valid JSON" in " ".join(result.output.split())


def test_parse_agent_takes_a_registry_with_the_lock(project):
    registry = registry_near(project / "agents")
    spec = parse_agent(AGENT, registry=registry)
    assert [u.action for u in spec.deliver] == ["wiki.create_page"]
    with pytest.raises(SpecError, match="unknown read action 'wiki.search_pages'"):
        parse_agent(AGENT)  # no lock: the installed connectors only


def test_a_deliver_grant_is_validated_and_located(project):
    text = AGENT.replace(
        'body: "{{answer}}"}\n',
        'body: "{{answer}}"}\n    grant: {spcae: [ENG], title: {prefix: ""}}\n',
    )
    assert errors(project, text) == [
        "9: deliver[0].grant.spcae: wiki.create_page has no argument 'spcae'; did you mean "
        "'space'? (arguments: body, space, title)",
        "9: deliver[0].grant.title: prefix: one non-empty text or a list of them",
    ]
    fine = AGENT.replace(
        'body: "{{answer}}"}\n', 'body: "{{answer}}"}\n    grant: {space: [ENG]}\n'
    )
    assert errors(project, fine) == []
    misplaced = AGENT.replace(
        "{query: standup}\n", "{query: standup}\n    grant: {query: [standup]}\n"
    )
    assert errors(project, misplaced) == [
        "7: context[0].grant: grant: is for deliver (a tool's grant is its parameters under "
        "tools, a context call's arguments are fixed)"
    ]


def test_a_tool_is_a_read_only_when_its_annotations_say_so_and_nothing_contradicts_them():
    def kind(annotations):
        tool = LockedTool("t", "", SEARCH, annotations)
        from meshagent.mcp.tools import mcp_connector

        return mcp_connector("s", {"t": tool}, None).actions[0].kind

    assert kind({"readOnlyHint": True}) == "read"
    assert kind({}) == "write"
    assert kind({"readOnlyHint": False, "destructiveHint": False}) == "write"
    assert kind({"readOnlyHint": "yes"}) == "write"
    assert kind({"readOnlyHint": True, "destructiveHint": True}) == "write"
