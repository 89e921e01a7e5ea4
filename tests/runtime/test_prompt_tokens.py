"""What a run sends the model, measured on the requests the provider received: the real
``ChatOpenAI`` against the local OpenAI-compatible server, context read over HTTP from a local
site and from the sandbox's Jira, a real SQLite ledger.

Text context goes in as text and JSON compact; tool schemas carry what steers the model and
nothing else, while arguments are still validated in full; the framework's share of the prompt
counts every token the author did not write, on every call, and is kept in the ledger and shown
on the dashboard's run page."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest
from langchain_core.tools import StructuredTool
from langchain_core.utils.function_calling import convert_to_openai_tool
from starlette.testclient import TestClient

from meshagent.actions import default_registry
from meshagent.agentfile.schema import agent_schema
from meshagent.config import Config
from meshagent.dashboard import create_dashboard
from meshagent.models import estimate_tokens
from meshagent.runtime.prompt import tool_schema
from tests.runtime.conftest import agent, make_runtime, run
from tests.runtime.local_site import local_site
from tests.runtime.openai_server import OpenAIServer, answer, tool_calls, usage

TEXT = 'PAY-1 Refunds appear twice — "blocked" on the bank\nPAY-2 Naïve retry loop\n'
BODY = {"issues": [{"key": "PAY-1", "summary": "Refunds appear twice — naïve"}]}
DROPPED = {"default", "minimum", "maximum", "exclusiveMinimum", "title", "minItems"}


@pytest.fixture
def site() -> Iterator[str]:
    pages = {
        "/digest.txt": ("text/plain; charset=utf-8", TEXT.encode()),
        "/digest.json": ("application/json", json.dumps(BODY, indent=2).encode()),
    }
    with local_site(pages) as base:
        yield base


@pytest.fixture
def openai_server() -> Iterator[OpenAIServer]:
    with OpenAIServer() as server:
        yield server


def _agent(body: str) -> Any:
    return agent(
        "name: digest\nowner: alice@example.com\nteam: payments\nmodel: openai:gpt-4o-mini\n"
        "instructions: Write a five-line digest of the issues below.\n"
        "value: {tag: toil-reduction, minutes_saved: 5}\n" + body
    )


def _run(openai_server, sandbox, ledger, spec, *replies):
    openai_server.script(*replies)
    result = run(make_runtime(sandbox, ledger, openai_server.chat_model()), spec)
    assert result.status == "ok", result.error
    return result


def _walk(node: Any) -> Iterator[str]:
    """Every key of a JSON document but property names (an argument may be called title)."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "properties":
                for spec in value.values():
                    yield from _walk(spec)
            else:
                yield key
                yield from _walk(value)
    elif isinstance(node, list):
        for item in node:
            yield from _walk(item)


# -- 1. context as text or compact JSON ---------------------------------------------------------


def test_text_context_goes_into_the_prompt_as_text(openai_server, sandbox, ledger, site):
    spec = _agent(f'context:\n  - http.get: {{url: "{site}/digest.txt"}}\n')
    _run(openai_server, sandbox, ledger, spec, answer("ok", usage(90, 2)))
    [request] = openai_server.requests
    assert request["messages"][1] == {"role": "user", "content": f"## http.get\n{TEXT}"}


def test_json_context_goes_in_compact(openai_server, sandbox, ledger, site):
    spec = _agent(f'context:\n  - http.get: {{url: "{site}/digest.json"}}\n')
    _run(openai_server, sandbox, ledger, spec, answer("ok", usage(90, 2)))
    [request] = openai_server.requests
    compact = '{"issues":[{"key":"PAY-1","summary":"Refunds appear twice — naïve"}]}'
    assert request["messages"][1]["content"] == f"## http.get\n{compact}"


def test_a_tool_result_is_text_as_text_and_json_compact(openai_server, sandbox, ledger, site):
    spec = _agent(f'tools:\n  - http.get: {{url_prefixes: ["{site}/"]}}\n')
    replies = [
        tool_calls(("http_get", {"url": f"{site}/digest.txt"}), spent=usage(200, 9)),
        tool_calls(("http_get", {"url": f"{site}/digest.json"}), spent=usage(240, 9)),
        answer("ok", usage(280, 2)),
    ]
    _run(openai_server, sandbox, ledger, spec, *replies)
    told = [m["content"] for m in openai_server.requests[-1]["messages"] if m["role"] == "tool"]
    compact = json.dumps(BODY, ensure_ascii=False, separators=(",", ":"))
    assert told == [TEXT, compact]


# -- 3. tool schemas: what steers the model -----------------------------------------------------


def test_tool_schemas_carry_what_steers_the_model_and_nothing_else(
    openai_server, sandbox, ledger, site
):
    grants = f'  - jira.search: {{projects: [PAY]}}\n  - http.get: {{url_prefixes: ["{site}/"]}}\n'
    spec = _agent(f"tools:\n{grants}")
    _run(openai_server, sandbox, ledger, spec, answer("ok", usage(300, 2)))
    [request] = openai_server.requests
    sent = {tool["function"]["name"]: tool["function"] for tool in request["tools"]}
    registry = default_registry()
    for name, function in sent.items():
        action = registry.get(name.replace("_", ".", 1))
        parameters = function["parameters"]
        assert function["description"] == action.description
        assert set(parameters["properties"]) == set(action.args.model_fields)  # every name
        required = [n for n, f in action.args.model_fields.items() if f.is_required()]
        assert sorted(parameters["required"]) == sorted(required)
        for field, schema in parameters["properties"].items():
            assert schema.get("description") == action.args.model_fields[field].description
            assert "type" in schema  # optional ones without the null choice: one type
        assert not DROPPED & set(_walk(parameters)), (name, DROPPED & set(_walk(parameters)))
        assert not [key for key in _walk(parameters) if key.startswith("x-")]  # editors' hints
    search = sent["jira_search"]["parameters"]["properties"]
    assert (search["fields"]["type"], search["fields"]["items"]) == ("array", {"type": "string"})
    assert search["limit"]["type"] == "integer"
    fetch = sent["http_get"]["parameters"]["properties"]
    assert fetch["format"]["enum"] == ["auto", "json", "text"]  # an enum steers: kept
    assert fetch["select"]["type"] == "array"

    # What that saves on every turn, against the action's full schema.
    def full(action_name: str) -> int:
        action = registry.get(action_name)
        tool = StructuredTool.from_function(
            coroutine=lambda **_: None,
            name=action_name.replace(".", "_"),
            description=action.description,
            args_schema=action.args,
        )
        return estimate_tokens(_compact(convert_to_openai_tool(tool)))

    before = full("jira.search") + full("http.get")
    after = estimate_tokens(_compact(request["tools"]))
    assert after < before, (before, after)


_BOUNDS = ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "minItems", "maxItems")


def test_argument_descriptions_say_only_what_the_schema_does_not():
    """Every token of a description goes with every turn of the loop: none restates the
    argument's name, its type, its default, its bounds or its enum, and none speaks to the agent
    file's author (under deliver, the editor's schema says where the answer goes)."""
    registry = default_registry()
    for name in registry.names():
        action = registry.get(name)
        for arg, spec in action.args.model_json_schema().get("properties", {}).items():
            told = spec.get("description", "")
            words = {w.strip(".").lower() for w in re.findall(r"[\w.-]+", told)}
            where = (name, arg, told)
            if told:
                assert words - {arg.lower(), arg.lower().rstrip("s")}, where  # more than its name
            assert not words & {"default", "defaults", "optional", "integer", "boolean"}, where
            assert "deliver" not in words, where
            enum = [str(value).lower() for value in spec.get("enum", [])]
            assert len(enum) < 2 or not set(enum) <= words, where
            default = spec.get("default")
            if isinstance(default, int | float | str) and str(default).lower() not in enum:
                assert str(default).lower() not in words - {""}, where
            for bound in _BOUNDS:
                assert bound not in spec or str(spec[bound]) not in words, where
    editor = json.dumps(agent_schema(registry))
    assert editor.count("Left out: the agent's answer.") == sum(
        1 for action in registry.actions() if action.answer_field
    )


def test_a_trimmed_schema_loosens_no_validation(openai_server, sandbox, ledger):
    spec = _agent("tools:\n  - jira.search: {projects: [PAY]}\n")
    replies = [
        tool_calls(("jira_search", {"jql": "status = Done", "limit": 5000}), spent=usage(200, 9)),
        tool_calls(("jira_search", {"jql": "status = Done", "sort": "key"}), spent=usage(240, 9)),
        answer("ok", usage(280, 2)),
    ]
    result = _run(openai_server, sandbox, ledger, spec, *replies)
    failed = [(e.kind, e.detail.partition(";")[0]) for e in ledger.events(result.run_id)]
    assert failed == [
        ("tool_failed", "invalid arguments: limit: Input should be less than or equal to 1000"),
        ("tool_failed", "invalid arguments: sort: Extra inputs are not permitted"),
    ]
    assert not [path for _, path in sandbox.jira.requests if "/search" in path]
    told = [m for m in openai_server.requests[-1]["messages"] if m["role"] == "tool"]
    assert told[0]["content"].startswith("Error: invalid arguments for jira_search: limit")


# -- 4. the framework's share -------------------------------------------------------------------


def _compact(data: Any) -> str:
    return json.dumps(data, ensure_ascii=False, separators=(",", ":"))


def _framework_in(request: dict[str, Any]) -> dict[str, int]:
    """What of one request the framework wrote, counted from what the provider received: the
    headings of the context message, the tool schemas, MeshAgent's refusal and error notes."""
    context = request["messages"][1]["content"]
    sections = context.split("\n\n")
    data = [section.partition("\n")[2] for section in sections]
    headings = estimate_tokens(context) - sum(estimate_tokens(part) for part in data)
    notes = [
        m["content"]
        for m in request["messages"]
        if m["role"] == "tool" and m["content"].startswith(("Refused", "Error"))
    ]
    return {
        "headings": headings,
        "tool_schemas": estimate_tokens(_compact(request["tools"])) if "tools" in request else 0,
        "tool_notes": sum(estimate_tokens(note) for note in notes),
    }


def test_the_framework_share_counts_what_the_author_did_not_write_on_every_call(
    openai_server, sandbox, ledger
):
    spec = _agent(
        "context:\n  - jira.search: {jql: 'project = PAY', fields: [summary, status]}\n"
        "inputs: {days: {type: integer, default: 14, description: Days.}}\n"
        "tools:\n  - jira.add_comment: {projects: [PAY]}\n  - jira.search: {projects: [PAY]}\n"
    )
    replies = [
        # A tool the agent was not granted: refused, and the refusal resent with the next call.
        tool_calls(
            ("slack_post_message", {"channel": "#general", "text": "hi"}), spent=usage(9, 1)
        ),
        tool_calls(("jira_search", {"jql": "key = PAY-3"}), spent=usage(9, 1)),
        answer("ok", usage(9, 1)),
    ]
    result = _run(openai_server, sandbox, ledger, spec, *replies)

    parts = [_framework_in(request) for request in openai_server.requests]
    expected = {kind: sum(part[kind] for part in parts) for kind in parts[0]}
    assert len(parts) == 3 and all(part["tool_schemas"] > 100 for part in parts)
    assert parts[0]["tool_notes"] == 0 < parts[1]["tool_notes"] == parts[2]["tool_notes"]
    total = sum(expected.values())
    assert result.framework_prompt_tokens == total
    assert ledger.prompt_share(result.run_id) == {**expected, "tokens": total, "model_calls": 3}
    assert "prompt" not in [event.kind for event in ledger.events(result.run_id)]  # no step
    assert result.framework_share.startswith(f"headings {expected['headings']:,}, tool schemas")


def test_fetch_think_counts_the_headings_only(openai_server, sandbox, ledger):
    spec = _agent("context:\n  - jira.search: {jql: 'project = PAY', fields: [summary]}\n")
    result = _run(openai_server, sandbox, ledger, spec, answer("ok", usage(500, 2)))
    [request] = openai_server.requests
    assert "tools" not in request
    headings = estimate_tokens("## jira.search\n")
    assert result.framework_prompt_tokens == _framework_in(request)["headings"] == headings
    assert ledger.prompt_share(result.run_id)["tool_schemas"] == 0


def test_an_agent_without_context_sends_its_instructions_as_the_one_turn(
    openai_server, sandbox, ledger
):
    """No placeholder turn: the instructions are the request, as a person would send it, on the
    first call of the tool loop and under the turns that follow; the framework's share is then
    the tool schemas alone."""
    spec = _agent("tools:\n  - jira.search: {projects: [PAY]}\n")
    replies = [
        tool_calls(("jira_search", {"jql": "status = Blocked"}), spent=usage(200, 9)),
        answer("ok", usage(240, 2)),
    ]
    result = _run(openai_server, sandbox, ledger, spec, *replies)
    first, second = openai_server.requests
    assert first["messages"] == [{"role": "user", "content": spec.instructions}]
    assert second["messages"][0] == first["messages"][0]
    assert [m["role"] for m in second["messages"]] == ["user", "assistant", "tool"]
    schemas = [estimate_tokens(_compact(request["tools"])) for request in (first, second)]
    share = ledger.prompt_share(result.run_id)
    assert share == {
        "tokens": sum(schemas),
        "headings": 0,
        "tool_schemas": sum(schemas),
        "tool_notes": 0,
        "model_calls": 2,
    }
    assert result.framework_prompt_tokens == sum(schemas)


def test_fetch_think_without_context_sends_the_instructions_alone(openai_server, sandbox, ledger):
    result = _run(openai_server, sandbox, ledger, _agent(""), answer("ok", usage(20, 2)))
    [request] = openai_server.requests
    assert request["messages"] == [{"role": "user", "content": _agent("").instructions}]
    assert result.framework_prompt_tokens == 0
    assert ledger.prompt_share(result.run_id)["model_calls"] == 1


def test_the_run_page_shows_the_framework_share(openai_server, sandbox, ledger):
    spec = _agent("tools:\n  - jira.search: {projects: [PAY]}\n")
    result = _run(openai_server, sandbox, ledger, spec, answer("ok", usage(400, 2)))
    app = create_dashboard(
        Config(ledger_url=ledger.url), ledger=ledger, local_user="alice@example.com"
    )
    with TestClient(app) as client:
        body = client.get(f"/api/runs/{result.run_id}").json()
        page = client.get(f"/runs/{result.run_id}").text
    share = body["framework_prompt"]
    assert share == ledger.prompt_share(result.run_id)
    assert share["tokens"] == result.framework_prompt_tokens > 100
    assert body["tool_calls"] == [] and all(s["kind"] != "prompt" for s in body["timeline"])
    tokens = f"~{share['tokens']:,} tokens"
    assert f"Framework share of the prompt: {tokens}" in page
    assert f"tool schemas {share['tool_schemas']:,} over 1 model call" in page


def test_null_stays_a_choice_where_it_means_something():
    """jira.assign's assignee is required and null unassigns: the model keeps that choice; an
    optional argument's null (the same as leaving it out) is not sent."""
    registry = default_registry()
    assign = tool_schema(registry.get("jira.assign").args.model_json_schema())
    assert assign["properties"]["assignee"]["anyOf"] == [{"type": "string"}, {"type": "null"}]
    post = tool_schema(registry.get("slack.post_message").args.model_json_schema())
    assert post["properties"]["thread_ts"] == {
        "type": "string",
        "description": registry.get("slack.post_message")
        .args.model_fields["thread_ts"]
        .description,
    }
    named = tool_schema(
        {"type": "object", "properties": {"title": {"type": "string", "title": "Title"}}}
    )
    assert named == {"type": "object", "properties": {"title": {"type": "string"}}}
