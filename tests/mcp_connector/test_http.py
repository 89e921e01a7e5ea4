"""MCP tools over streamable HTTP: headers from the environment, never from the files; a server
that refuses the client is named with its URL."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from meshagent.models import ScriptedChatModel
from tests.mcp_connector.conftest import HttpServer, Served, make_project

TOKEN = "mcp-bearer-0123456789abcdef"
KEY = "k3y-0123456789abcdefgh"  # in a variable whose name does not look secret


@pytest.fixture(scope="module")
def http(tmp_path_factory, runner) -> Iterator[tuple[HttpServer, Served]]:
    root = tmp_path_factory.mktemp("http")
    server = HttpServer(TOKEN, root / "calls.jsonl")
    headers = {"Authorization": "NOTES_MCP_AUTH", "X-Notes-Key": "NOTES_KEY"}
    settings = {"url": server.url, "headers_env": headers, "start_timeout_seconds": 60}
    project = make_project(root, {"notes": settings})
    project.env["NOTES_MCP_AUTH"] = f"Bearer {TOKEN}"
    project.env["NOTES_KEY"] = KEY
    served = Served(project, runner)
    yield server, served
    served.close()
    server.stop()


def test_the_header_comes_from_the_named_variable(http):
    server, served = http
    assert server.headers and all(h["authorization"] == f"Bearer {TOKEN}" for h in server.headers)
    assert all(h["x-notes-key"] == KEY for h in server.headers)
    assert TOKEN not in (served.project.config.agents_dir / "mcp.lock.json").read_text()
    assert served.runtime.registry.get("notes.lookup").kind == "read"


def test_a_call_over_http_is_granted_run_and_recorded_without_the_token(http):
    server, served = http
    spec = served.agent(
        """
        name: http-notes
        owner: alice@example.com
        team: payments
        model: scripted
        instructions: Write a note.
        tools:
          - notes.write_note: {space: [ENG]}
        value: {tag: toil-reduction, minutes_saved: 1}
        """
    )
    served.project.clear()
    # A header's value, raw: masked as the value of a variable headers_env names.
    note = {"space": "ENG", "title": "t", "body": f"see Bearer {TOKEN} or {KEY}"}
    model = ScriptedChatModel(
        responses=[{"tool_calls": [{"name": "notes_write_note", "args": note, "id": "n1"}]}, "ok"]
    )
    result = served.run(spec, model)
    assert result.status == "ok", result.error
    assert served.project.calls() == [("write_note", {**note, "count": 1})]
    [(kind, _, detail)] = served.events(result)
    assert kind == "tool_call" and TOKEN not in detail and KEY not in detail
    assert detail.count("***") == 2
    assert result.outcomes[0].url == "https://notes.example/ENG/1"


def test_a_server_that_refuses_the_client_is_named_with_its_url(http, tmp_path, runner):
    from meshagent.mcp.refresh import refresh

    server, _ = http
    project = make_project(tmp_path, {"notes": {"url": server.url, "start_timeout_seconds": 10}})
    found = runner.run(refresh(project.config, project.env))
    [failure] = found.failures
    assert failure.startswith(f"MCP server notes (url {server.url}) did not start: ")
    assert failure.endswith("(HTTP 401)")
