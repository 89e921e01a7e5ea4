"""MCP tools over stdio, end to end: a real server written with the SDK, its tools locked,
granted, called, recorded; its connection started once, restarted with backoff, timed out."""

from __future__ import annotations

import pytest

from meshagent.config.mcp import McpServerSettings
from meshagent.exceptions import ConfigError, ConnectorError
from meshagent.mcp.connection import McpConnection, McpUnavailable
from meshagent.mcp.lock import changes, read_lock
from meshagent.mcp.refresh import refresh
from meshagent.models import ScriptedChatModel
from tests.mcp_connector.conftest import SECRET, make_project, stdio_settings

NOTES = """
    name: notes
    owner: alice@example.com
    team: payments
    model: scripted
    instructions: Look the record up, then write a note.
    tools:
      - tools.lookup: {}
      - tools.write_note: {space: [ENG], title: {prefix: "Standup "}}
    value: {tag: toil-reduction, minutes_saved: 1}
"""


def scripted(*calls, then: str = "Done.") -> ScriptedChatModel:
    return ScriptedChatModel(responses=[*({"tool_calls": [c]} for c in calls), then])


def test_refresh_locks_every_tool_with_its_schema_and_annotations(stdio):
    lock = read_lock(stdio.project.config.agents_dir / "mcp.lock.json")
    tools = lock.servers["tools"]
    assert {"lookup", "write_note", "file_note", "crash"} <= set(tools)
    assert tools["lookup"].description == "Look up a record by its id."
    assert tools["lookup"].annotations == {"readOnlyHint": True}
    assert tools["write_note"].annotations == {}
    schema = tools["write_note"].input_schema
    assert schema["required"] == ["space", "title", "body"]
    assert schema["properties"]["count"]["type"] == "integer"
    registry = stdio.runtime.registry
    assert registry.get("tools.lookup").kind == "read"
    assert registry.get("tools.write_note").kind == "write"  # no readOnlyHint: a write


def test_a_refresh_against_a_changed_server_says_what_changed(stdio, runner):
    env = {**stdio.project.env, "TEST_MCP_VARIANT": "2"}
    found = runner.run(refresh(stdio.project.config, env, write=False))
    assert found.changes == [
        "- tools.big: tool removed",
        "+ tools.extra: new tool",
        "~ tools.lookup: description changed: 'Look up a record by its id.' -> "
        "'Look up one record by id.'",
    ]
    assert not found.written
    assert changes(found.lock, found.lock) == []


def test_only_the_variables_named_in_env_reach_the_server(stdio):
    spec = stdio.agent(
        """
        name: env-reader
        owner: alice@example.com
        team: payments
        model: scripted
        instructions: Say which variables the server has.
        context:
          - tools.env_names: {}
        value: {tag: toil-reduction, minutes_saved: 1}
        """
    )
    model = ScriptedChatModel(responses=["ok"])
    assert stdio.run(spec, model).status == "ok"
    prompt = model.calls[0][-1].content
    assert "TEST_MCP_VARIANT" in prompt and "TEST_MCP_CALLS" in prompt
    assert "NOTES_API_TOKEN" not in prompt and "PATH" in prompt  # PATH: the SDK's default


def test_a_server_that_cannot_start_is_named_with_its_command_and_stderr(tmp_path, runner):
    crash = "import sys; print('boom: no config found', file=sys.stderr); sys.exit(3)"
    settings = {"command": ["python3", "-c", crash], "start_timeout_seconds": 20}
    project = make_project(tmp_path, {"broken": settings})
    found = runner.run(refresh(project.config, project.env))
    [failure] = found.failures
    assert failure.startswith("MCP server broken (command python3 -c import sys;")
    assert "did not start" in failure
    assert failure.endswith("its stderr ended with:\n  boom: no config found")
    assert not found.written and not (project.config.agents_dir / "mcp.lock.json").exists()


def test_refresh_without_servers_says_how_to_declare_one(tmp_path, runner):
    project = make_project(tmp_path, {})
    with pytest.raises(ConfigError, match=r"add \[mcp.NAME\] with command or url"):
        runner.run(refresh(project.config, project.env))


def test_a_granted_call_runs_and_one_outside_its_grant_never_reaches_the_server(stdio):
    stdio.project.clear()
    model = scripted(
        {"name": "tools_lookup", "args": {"record_id": "R-7"}, "id": "c1"},
        {"name": "tools_write_note", "args": {"space": "OPS", "title": "Standup 1", "body": "b"},
         "id": "c2"},  # fmt: skip
        {"name": "tools_write_note",
         "args": {"space": "ENG", "title": "Standup 1", "body": f"key {SECRET}"}, "id": "c3"},
    )  # fmt: skip
    result = stdio.run(stdio.agent(NOTES), model)
    assert result.status == "ok", result.error
    assert [name for name, _ in stdio.project.calls()] == ["lookup", "write_note"]
    assert stdio.project.calls()[1][1]["space"] == "ENG"
    kinds = [(kind, name) for kind, name, _ in stdio.events(result)]
    assert kinds == [
        ("tool_call", "tools.lookup"),
        ("tool_refused", "tools.write_note"),
        ("tool_call", "tools.write_note"),
    ]
    refused = stdio.events(result)[1][2]
    assert refused.startswith('space: "OPS" is not one of the granted values ("ENG")')
    written = stdio.events(result)[2][2]
    assert SECRET not in written and "***" in written  # the environment's secret, masked
    [outcome] = result.outcomes
    assert (outcome.kind, outcome.url) == ("tools.write_note", "https://notes.example/ENG/1")
    [stored] = stdio.ledger.outcomes(result.run_id)
    assert (stored.kind, stored.url) == ("tools.write_note", "https://notes.example/ENG/1")


def test_context_and_deliver_calls_are_recorded_and_a_dry_run_sends_no_write(stdio):
    spec = stdio.agent(
        """
        name: note-taker
        owner: alice@example.com
        team: payments
        model: scripted
        instructions: Summarise the record.
        context:
          - tools.lookup: {record_id: R-9}
        deliver:
          - tools.write_note: {space: ENG, title: "Note {{today}}", body: "{{answer}}"}
        value: {tag: toil-reduction, minutes_saved: 1}
        """
    )
    stdio.project.clear()
    planned = stdio.run(spec, ScriptedChatModel(responses=["R-9 is open."]), dry_run=True)
    assert planned.status == "ok", planned.error
    assert [name for name, _ in stdio.project.calls()] == ["lookup"]  # the write was not sent
    [plan] = planned.outcomes
    assert plan.planned and plan.reference.startswith("tools.write_note ")
    [(_, _, read), (kind, _, detail)] = stdio.events(planned)
    assert '"record_id": "R-9"' in read
    assert kind == "tool_planned" and '"body": "R-9 is open."' in detail
    done = stdio.run(spec, ScriptedChatModel(responses=["R-9 is open."]))
    assert [name for name, _ in stdio.project.calls()] == ["lookup", "lookup", "write_note"]
    assert stdio.project.calls()[-1][1]["body"] == "R-9 is open."
    assert [e[0] for e in stdio.events(done)] == ["tool_call", "tool_call"]
    assert done.outcomes[0].url == "https://notes.example/ENG/1"


def test_the_connection_is_kept_between_runs(stdio):
    spec = stdio.agent(NOTES)
    clients = stdio.runtime.clients
    before = clients.made
    for _ in range(2):
        model = scripted({"name": "tools_lookup", "args": {"record_id": "R-1"}, "id": "c1"})
        assert stdio.run(spec, model).status == "ok"
    assert clients.made == before  # made by an earlier test of the module, used again


def _connection(stdio, **settings):
    return McpConnection(
        "tools", McpServerSettings(**stdio_settings(**settings)), stdio.project.env
    )


def test_a_failed_server_is_restarted_after_a_backoff(stdio, runner):
    connection = _connection(stdio)

    async def scenario():
        from meshagent.mcp.calls import _call

        settings = connection.settings
        try:
            with pytest.raises(ConnectorError, match="the connection failed"):
                await _call(connection, "tools.crash", "crash", {}, settings)
            with pytest.raises(ConnectorError, match=r"failed 1 time\(s\) in a row; next start in"):
                await _call(connection, "tools.lookup", "lookup", {"record_id": "1"}, settings)
            connection.retry_at = 0  # the backoff has passed
            result = await _call(connection, "tools.lookup", "lookup", {"record_id": "1"}, settings)
            return result, connection.starts
        finally:
            await connection.aclose()

    result, starts = runner.run(scenario())
    assert not result.is_error and starts == 2


def test_backoff_doubles_with_each_failure_in_a_row():
    connection = McpConnection("x", McpServerSettings(url="http://127.0.0.1:9/mcp"), {})
    waits = []
    for _ in range(9):
        connection.failed("down")
        waits.append(round(connection.retry_at - __import__("time").monotonic()))
    assert waits[:4] == [0, 1, 2, 4] and waits[-1] == 60


def test_a_call_past_its_timeout_fails_and_the_run_goes_on(stdio, runner):
    connection = _connection(stdio, timeout_seconds=0.5)

    async def scenario():
        from meshagent.mcp.calls import _call

        try:
            await _call(connection, "tools.slow", "slow", {"seconds": 5}, connection.settings)
        finally:
            await connection.aclose()

    with pytest.raises(ConnectorError, match=r"gave no answer within 0.5s \(timeout_seconds\)"):
        runner.run(scenario())


@pytest.mark.parametrize(
    ("call", "message"),
    [
        ({"name": "tools_big", "args": {"size": 200_000}, "id": "b1"},
         "the answer is 200,002 bytes, over max_result_bytes of 100,000 ([mcp.tools])"),
        ({"name": "tools_fail", "args": {"reason": "no"}, "id": "f1"},
         "the tool answered an error: "),
    ],
)  # fmt: skip
def test_an_oversized_or_failed_answer_fails_the_call_not_the_run(stdio, call, message):
    spec = stdio.agent(
        NOTES.replace("- tools.lookup: {}", "- tools.big: {}\n      - tools.fail: {}")
    )
    result = stdio.run(spec, scripted(call))
    assert result.status == "ok" and result.answer == "Done."
    [(kind, _, detail)] = stdio.events(result)
    assert kind == "tool_failed" and message in detail


def test_an_unreachable_http_server_is_named_with_its_url(runner):
    connection = McpConnection(
        "wiki", McpServerSettings(url="http://127.0.0.1:9/mcp", start_timeout_seconds=5), {}
    )
    with pytest.raises(McpUnavailable, match=r"^MCP server wiki \(url http://127.0.0.1:9/mcp\)"):
        runner.run(connection.client())
    runner.run(connection.aclose())


def test_an_mcp_write_under_approve_is_staged_not_sent(stdio):
    spec = stdio.agent(
        """
        name: approved-notes
        owner: alice@example.com
        team: payments
        model: scripted
        instructions: Write the note.
        deliver:
          - tools.write_note: {space: ENG, title: "Note", body: "{{answer}}"}
        approve: {writes: [tools.write_note]}
        value: {tag: toil-reduction, minutes_saved: 1}
        """
    )
    stdio.project.clear()
    result = stdio.run(spec, ScriptedChatModel(responses=["the note"]))
    assert result.status == "ok", result.error
    assert stdio.project.calls() == []  # waits for a person
    from meshagent.ledger.approvals import of_run

    staged = of_run(stdio.ledger, result.run_id)
    assert [(a.action, a.payload["body"]) for a in staged] == [("tools.write_note", "the note")]


def test_a_deliver_grant_holds_what_a_slash_user_fills_in(stdio):
    spec = stdio.agent(
        """
        name: titled-notes
        owner: alice@example.com
        team: payments
        model: scripted
        instructions: Write the note.
        inputs:
          title: {type: string, required: true}
        deliver:
          - tools.write_note: {space: ENG, title: "{{title}}", body: "{{answer}}"}
            grant: {title: {prefix: "Standup "}}
        value: {tag: toil-reduction, minutes_saved: 1}
        """
    )
    stdio.project.clear()
    refused = stdio.run(
        spec, ScriptedChatModel(responses=["x"]), inputs={"title": "Standup/../../admin"}
    )
    assert refused.status == "denied" and stdio.project.calls() == []
    [(kind, name, detail)] = stdio.events(refused)
    assert (kind, name) == ("tool_refused", "tools.write_note")
    assert detail == "title: \"Standup/../../admin\" holds a '.' or '..' path segment"
    done = stdio.run(spec, ScriptedChatModel(responses=["x"]), inputs={"title": "Standup 3"})
    assert done.status == "ok" and stdio.project.calls()[-1][1]["title"] == "Standup 3"


def test_meshagent_mcp_refresh_writes_the_lock_and_check_compares(tmp_path, monkeypatch):
    import sys

    from typer.testing import CliRunner

    from meshagent.cli.main import app
    from tests.mcp_connector.conftest import SERVER

    for name in [n for n in __import__("os").environ if n.startswith("MESHAGENT_")]:
        monkeypatch.delenv(name)
    (tmp_path / "agents").mkdir()
    (tmp_path / "meshagent.toml").write_text(
        f'[mcp.tools]\ncommand = ["{sys.executable}", "{SERVER}"]\nenv = ["TEST_MCP_VARIANT"]\n'
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TEST_MCP_VARIANT", "1")
    wrote = CliRunner().invoke(app, ["mcp", "refresh"])
    assert wrote.exit_code == 0, wrote.output
    said = wrote.output.strip()
    assert "+ tools: new server, 8 tools (big, crash, env_names, fail, file_note, lookup, " in said
    assert said.endswith("mcp.lock.json: 1 server(s), 8 tools, 1 change(s)")
    assert (tmp_path / "agents" / "mcp.lock.json").is_file()
    monkeypatch.setenv("TEST_MCP_VARIANT", "2")
    checked = CliRunner().invoke(app, ["mcp", "refresh", "--check"])
    assert checked.exit_code == 1
    assert "- tools.big: tool removed" in checked.output
    assert "is not current: run `meshagent mcp refresh`" in " ".join(checked.output.split())


def test_a_run_whose_server_is_not_declared_stops_before_it_spends(stdio):
    from meshagent.exceptions import ConfigError
    from meshagent.runtime.runner import Runtime

    bare = stdio.project.config.model_copy(update={"mcp": {}})
    runtime = Runtime(bare, ledger=stdio.ledger, env=stdio.project.env,
                      registry=stdio.runtime.registry)  # fmt: skip
    entries = stdio.ledger.count()
    with pytest.raises(ConfigError) as raised:
        stdio.runner.run(runtime.run(stdio.agent(NOTES)))
    assert str(raised.value) == (
        "agent notes cannot run: tools.lookup, tools.write_note: declare the server in "
        "meshagent.toml: [mcp.tools] with command or url"
    )
    assert stdio.ledger.count() == entries  # no entry opened: nothing was spent
