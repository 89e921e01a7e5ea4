"""The offline and scripted models, the token estimate, and resolving model strings."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import math
import re
import time
from datetime import date

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from langchain.agents import create_agent
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage, ToolMessage
from langchain_core.tools import tool
from pydantic import ValidationError

from meshagent.exceptions import ConfigError, RunError
from meshagent.models import (
    OfflineChatModel,
    ScriptedChatModel,
    estimate_tokens,
    provider_of,
    resolve_model,
)

TODAY = date(2024, 5, 6)

ISSUES = [
    {
        "key": "PAY-101",
        "summary": "Refund webhook retries exhaust the queue",
        "status": "Blocked",
        "assignee": "Alice Chen",
        "priority": "Highest",
        "duedate": "2024-05-01",
        "updated": "2024-05-03T10:15:00.000+0000",
    },
    {
        "key": "PAY-102",
        "summary": "Add idempotency keys to payouts",
        "status": "In Progress",
        "assignee": "Bob Ruiz",
        "priority": "High",
        "duedate": "2024-05-02",
        "updated": "2024-05-04T09:00:00.000+0000",
    },
    {
        "key": "PAY-103",
        "summary": "Migrate card vault to the new KMS",
        "status": "In Progress",
        "assignee": "Carol Ng",
        "priority": "Medium",
        "duedate": "2024-05-20",
        "updated": "2024-05-05T09:00:00.000+0000",
    },
    {
        "key": "PAY-104",
        "summary": "Saved cards fail at checkout, blocked on vendor",
        "status": "To Do",
        "assignee": None,
        "priority": "Medium",
        "duedate": None,
        "updated": "2024-05-01T09:00:00.000+0000",
    },
    {
        "key": "PAY-105",
        "summary": "Update the currency table",
        "status": "Done",
        "assignee": "Dan Wu",
        "priority": "Low",
        "duedate": "2024-04-20",
        "updated": "2024-04-19T09:00:00.000+0000",
    },
    {
        "key": "PAY-106",
        "summary": "Document the refund API",
        "status": "To Do",
        "assignee": "Alice Chen",
        "priority": "Low",
        "duedate": "2024-04-30",
        "updated": "2024-04-10T09:00:00.000+0000",
    },
    {
        "key": "PAY-107",
        "summary": "Tune fraud thresholds",
        "status": "In Review",
        "assignee": "Bob Ruiz",
        "priority": "Medium",
        "duedate": None,
        "updated": "2024-05-05T12:00:00.000+0000",
    },
]

MESSAGES = [
    {"ts": "1714730000.000100", "user": "alice", "text": "Deploy of payments-api went fine"},
    {
        "ts": "1714740000.000200",
        "user": "bob",
        "text": "Seeing 500 errors on refunds, opening an incident",
    },
    {"ts": "1714750000.000300", "user": "carol", "text": "Who is up for lunch?"},
    {"ts": "1714760000.000400", "user": "bob", "text": "Root cause found, a config typo"},
]

CONTEXT = {
    "jira.search": {"jql": "project = PAY", "count": 7, "issues": ISSUES},
    "slack.history": {"channel": "payments", "messages": MESSAGES},
}

PROSE = (
    "The payment service deployment is blocked because the database migration failed on "
    "staging. Alice is investigating and expects a fix by Friday. Meanwhile, please hold any "
    "release that touches refunds, and tell the support team what customers should expect."
)


def _ask(instructions: str, context: object, model: OfflineChatModel | None = None) -> AIMessage:
    model = model or OfflineChatModel(today=TODAY)
    content = context if isinstance(context, str) else json.dumps(context)
    return model.invoke([SystemMessage(instructions), HumanMessage(content)])


def _keys(text: str) -> list[str]:
    """Issue keys in the order the digest lists them."""
    return [line.split()[1] for line in text.splitlines() if line.startswith("- PAY-")]


# ------------------------------------------------------------------ estimate_tokens


def test_estimate_tokens_is_deterministic_and_grows_with_text():
    assert estimate_tokens("") == 0
    assert estimate_tokens(PROSE) == estimate_tokens(PROSE)
    assert estimate_tokens("hello world") == 2
    assert estimate_tokens("deployment") == 2  # long words count more than one
    assert estimate_tokens("2024") == 2  # digits go in threes
    previous = 0
    for end in range(10, len(PROSE), 25):
        count = estimate_tokens(PROSE[:end])
        assert count >= previous
        previous = count
    assert estimate_tokens(PROSE + " " + PROSE) == 2 * estimate_tokens(PROSE)


def test_estimate_tokens_is_near_bpe_counts_for_prose_and_json():
    # English runs about 0.75 words per BPE token.
    words = len(PROSE.split())
    assert 0.7 * words / 0.75 <= estimate_tokens(PROSE) <= 1.3 * words / 0.75
    # "tiktoken is great!" is 6 cl100k tokens.
    assert 0.7 * 6 <= estimate_tokens("tiktoken is great!") <= 1.3 * 6
    # One Jira issue as JSON is about 55 cl100k tokens (hand count), JSON ~3 chars per token.
    issue = json.dumps({k: ISSUES[0][k] for k in ("key", "summary", "status", "assignee")})
    issue = issue[:-1] + ', "priority": "Highest", "duedate": "2024-05-01"}'
    assert 0.7 * 55 <= estimate_tokens(issue) <= 1.3 * 55
    context = json.dumps(CONTEXT)
    assert 2.2 <= len(context) / estimate_tokens(context) <= 4.0


def test_estimate_tokens_counts_non_ascii_and_line_breaks():
    assert estimate_tokens("数据库迁移") == 5
    assert estimate_tokens("a\nb") == 3
    assert estimate_tokens("a b") == 2
    assert estimate_tokens("a \t\n\n  b") == 3  # one line break for the whole run
    assert estimate_tokens("a\u00a0\nb") == 2  # the run starts with a no-break space: 0
    assert estimate_tokens("é\u2028😀") == 2  # a Unicode line separator is whitespace


_RUNS = re.compile(
    r"(?P<letters>[A-Za-z]+)|(?P<digits>[0-9]+)|(?P<newline>[ \t\r\f\v]*\n\s*)|(?P<space>\s+)"
    r"|(?P<wide>[^\x00-\x7f])|(?P<punct>[\x21-\x2f\x3a-\x40\x5b-\x60\x7b-\x7e]+)"
)


def _tokens_run_by_run(text: str) -> int:
    """estimate_tokens' rules as its docstring states them, applied run by run."""
    found = 0
    for run in _RUNS.finditer(text):
        width = {"letters": 7, "digits": 3, "punct": 3}.get(run.lastgroup or "")
        if width is not None:
            found += math.ceil(len(run.group()) / width)
        elif run.lastgroup != "space":
            found += 1  # a line break's run, or one wide character
    return found


@settings(max_examples=3000, deadline=None)
@given(st.text(alphabet='aZq09 \t\n\r\x0b\x0c\x1c\x85\u00a0\u2028é中😀!"#{}~\x00\x07\x7f_-.,:'))
def test_estimate_tokens_follows_its_rules_on_any_text(text):
    assert estimate_tokens(text) == _tokens_run_by_run(text)


def test_estimate_tokens_cuts_long_runs():
    text = "abcdefghijklmno 1234567 !!!!!!! \n\n\n x"
    assert estimate_tokens(text) == _tokens_run_by_run(text) == 3 + 3 + 3 + 1 + 1


# ------------------------------------------------------------------ offline model


def test_offline_jira_digest_puts_blockers_then_overdue_then_status_groups():
    text = _ask("Summarise the open work for the payments team.", CONTEXT).content
    lines = text.splitlines()
    assert lines[0] == "_Digest by MeshAgent's offline model (no LLM was called)._"
    assert lines[1] == "7 issues: 2 blocked, 2 overdue, 1 in progress, 1 in review, 1 done"
    # Blocked by status (and Highest), then by the word in the summary; overdue most late first.
    assert _keys(text) == [
        "PAY-101",
        "PAY-104",
        "PAY-106",
        "PAY-102",
        "PAY-103",
        "PAY-107",
        "PAY-105",
    ]
    assert text.index("*Blockers*") < text.index("*Overdue*") < text.index("*In Progress*")
    assert "- PAY-106 Document the refund API (Alice Chen, To Do, due 2024-04-30, 6d late)" in lines
    assert "- PAY-104 Saved cards fail at checkout, blocked on vendor (unassigned, To Do)" in lines
    # Done work is never overdue even with a past due date.
    assert "PAY-105 Update the currency table (Dan Wu, Done, due 2024-04-20)" in text


def test_offline_digest_honours_at_most_3_and_says_how_many_more():
    text = _ask("List at most 3 items.", {"issues": ISSUES}).content
    assert _keys(text) == ["PAY-101", "PAY-104", "PAY-106"]
    assert "… and 1 more" in text  # the rest of the overdue group
    assert "… and 3 more (1 in progress, 1 in review, 1 done)" in text


@pytest.mark.parametrize(
    ("instructions", "shown"),
    [
        ("Write a five-line digest for the channel.", 5),
        ("Only the top 2, please.", 2),
        ("Give 4 bullets.", 4),
        ("Keep it under at most 100 words.", 7),
        ("Digest the issues.", 7),
    ],
)
def test_offline_digest_reads_the_number_of_lines_asked_for(instructions, shown):
    assert len(_keys(_ask(instructions, {"issues": ISSUES}).content)) == shown


def test_offline_reads_raw_jira_rest_issues_and_reports_the_total():
    raw = {
        "total": 40,
        "issues": [
            {
                "key": "OPS-7",
                "fields": {
                    "summary": "Rotate TLS certs",
                    "status": {"name": "Waiting", "statusCategory": {"key": "indeterminate"}},
                    "assignee": {"displayName": "Eve Park"},
                    "priority": {"name": "Medium"},
                    "labels": ["blocker"],
                    "duedate": None,
                },
            },
            {
                "key": "OPS-8",
                "fields": {
                    "summary": "Close old alerts",
                    "status": {"name": "Shipped", "statusCategory": {"key": "done"}},
                    "assignee": None,
                    "priority": {"name": "Low"},
                    "duedate": "2020-01-01",
                },
            },
        ],
    }
    text = _ask("Digest.", raw).content
    assert "2 issues (of 40 matching): 1 blocked, 1 shipped" in text
    assert "- OPS-7 Rotate TLS certs (Eve Park, Waiting)" in text


def test_offline_slack_digest_counts_authors_and_puts_incidents_first():
    text = _ask(
        "What happened in the channel?", {"slack.history": CONTEXT["slack.history"]}
    ).content
    lines = text.splitlines()
    assert lines[1] == "4 Slack messages in #payments from 3 people: bob 2, alice 1, carol 1"
    assert lines[2] == "*Needs attention*"
    assert lines[3].startswith("- bob, 05-03 12:40: Seeing 500 errors")
    # The rest newest first.
    rest = lines[lines.index("*Recent*") + 1 :]
    assert [line.split(",")[0] for line in rest] == ["- bob", "- carol", "- alice"]


def test_offline_lists_unknown_shapes_by_key():
    builds = [{"name": "api", "status": "green", "minutes": 4}, {"name": "web", "status": "red"}]
    nested = [{"id": 1, "steps": [1, 2]}]
    text = _ask("Digest.", {"weather": {"temp": 12}, "builds": builds, "jobs": nested}).content
    assert "Other context: weather, builds, jobs" in text
    assert "- weather: temp 12" in text
    # A table of flat records: one line per row with every column.
    assert "*builds*\n- api: status green, minutes 4\n- web: status red" in text
    assert '- jobs: 1 item, first: {"id":1,"steps":[1,2]}' in text


def test_offline_finds_json_sections_inside_text():
    context = "## jira.search\n" + json.dumps({"issues": ISSUES[:2]}, indent=2) + "\nThat is all."
    text = _ask("Digest.", context).content
    assert "2 issues: 1 blocked, 1 overdue" in text


def test_offline_digests_plain_text_with_problems_first():
    text = _ask("Digest.", "standup notes\nthe build failed again\nlunch at noon").content
    assert text.splitlines()[1:3] == ["Context: 3 lines of text", "- the build failed again"]


def test_offline_reports_estimated_usage():
    system, human = SystemMessage("Digest the issues."), HumanMessage(json.dumps(CONTEXT))
    answer = OfflineChatModel(today=TODAY).invoke([system, human])
    assert answer.response_metadata["model_name"] == "offline"
    assert answer.response_metadata["token_usage_estimated"] is True
    usage = answer.usage_metadata
    assert usage["input_tokens"] == estimate_tokens(system.content) + estimate_tokens(human.content)
    assert usage["output_tokens"] == estimate_tokens(answer.content)
    assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"]


def test_offline_is_deterministic_and_compact():
    first, second = _ask("Digest.", CONTEXT), _ask("Digest.", CONTEXT)
    assert first.content == second.content
    assert first.usage_metadata == second.usage_metadata
    assert first.usage_metadata["output_tokens"] < first.usage_metadata["input_tokens"] / 1.5


def test_offline_answers_after_a_tool_message_from_everything_seen():
    messages = [
        SystemMessage("Digest."),
        HumanMessage("check the board"),
        AIMessage("", tool_calls=[{"name": "jira_search", "args": {}, "id": "c1"}]),
        ToolMessage(json.dumps(ISSUES[:3]), tool_call_id="c1"),
    ]
    answer = OfflineChatModel(today=TODAY).invoke(messages)
    assert "3 issues: 1 blocked, 1 overdue, 1 in progress" in answer.content
    assert answer.tool_calls == []


def test_offline_runs_inside_create_agent_and_never_calls_tools():
    calls = []

    @tool
    def jira_search(jql: str) -> str:
        """Search Jira."""
        calls.append(jql)
        return "[]"

    agent = create_agent(
        model=OfflineChatModel(today=TODAY), tools=[jira_search], system_prompt="Top 2 only."
    )
    result = agent.invoke({"messages": [HumanMessage(json.dumps({"issues": ISSUES}))]})
    final = result["messages"][-1]
    assert isinstance(final, AIMessage) and final.tool_calls == []
    assert _keys(final.content) == ["PAY-101", "PAY-104"]
    assert calls == []


# ------------------------------------------------------------------ scripted model


def test_scripted_replays_answers_in_order_and_records_calls():
    model = ScriptedChatModel(responses=["first", "second"])
    assert model.invoke("one").content == "first"
    answer = model.invoke([SystemMessage("sys"), HumanMessage("two")])
    assert answer.content == "second"
    assert [[m.content for m in call] for call in model.calls] == [["one"], ["sys", "two"]]
    assert answer.response_metadata["model_name"] == "scripted"
    assert answer.response_metadata["token_usage_estimated"] is True
    assert answer.usage_metadata["input_tokens"] == estimate_tokens("sys") + estimate_tokens("two")
    assert model.remaining == 0


def test_scripted_tool_calls_drive_create_agent_through_a_real_tool():
    ran = []

    @tool
    def lookup(key: str, fields: list[str]) -> str:
        """Look up a Jira issue."""
        ran.append((key, fields))
        return json.dumps(ISSUES[0])

    model = ScriptedChatModel(
        responses=[
            {"tool_calls": [{"name": "lookup", "args": {"key": "PAY-101", "fields": ["status"]}}]},
            "PAY-101 is blocked.",
        ]
    )
    agent = create_agent(model=model, tools=[lookup], system_prompt="Be brief.")
    result = agent.invoke({"messages": [HumanMessage("Is PAY-101 done?")]})
    assert ran == [("PAY-101", ["status"])]
    assert result["messages"][-1].content == "PAY-101 is blocked."
    assert model.bound_tools == ["lookup"]
    second_call = model.calls[1]
    assert isinstance(second_call[-1], ToolMessage)
    assert json.loads(second_call[-1].content)["key"] == "PAY-101"


def test_scripted_usage_keeps_cache_and_reasoning_details():
    usage = {
        "input_tokens": 1200,
        "output_tokens": 300,
        "cache_read": 800,
        "cache_creation": 100,
        "reasoning": 120,
    }
    answer = ScriptedChatModel(responses=[{"content": "ok", "usage": usage}]).invoke("hi")
    assert answer.usage_metadata == {
        "input_tokens": 1200,
        "output_tokens": 300,
        "total_tokens": 1500,
        "input_token_details": {"cache_read": 800, "cache_creation": 100},
        "output_token_details": {"reasoning": 120},
    }
    assert "token_usage_estimated" not in answer.response_metadata


def test_scripted_refuses_usage_whose_cache_exceeds_its_input():
    with pytest.raises(ValidationError, match="input_tokens includes cache_read"):
        ScriptedChatModel(responses=[{"usage": {"input_tokens": 10, "cache_read": 50}}])
    with pytest.raises(ValidationError, match="unknown keys"):
        ScriptedChatModel(responses=[{"text": "typo"}])
    with pytest.raises(ValidationError, match="expected str, AIMessage"):
        ScriptedChatModel(responses=[42])


def test_scripted_uses_an_ai_message_as_is_without_changing_it():
    queued = AIMessage(
        "hi", usage_metadata={"input_tokens": 5, "output_tokens": 1, "total_tokens": 6}
    )
    answer = ScriptedChatModel(responses=[queued]).invoke("x")
    assert answer.content == "hi" and answer.usage_metadata["input_tokens"] == 5
    assert queued.response_metadata == {} and queued.id is None


def test_scripted_raises_a_queued_exception_then_goes_on():
    model = ScriptedChatModel(responses=[TimeoutError("provider timed out"), "recovered"])
    with pytest.raises(TimeoutError, match="provider timed out"):
        model.invoke("x")
    assert model.invoke("x").content == "recovered"


def test_scripted_says_when_it_runs_out():
    model = ScriptedChatModel(responses=["only"])
    model.invoke("x")
    with pytest.raises(RunError, match="no response left for call 2: all 1 queued response"):
        model.invoke("y")
    assert len(model.calls) == 2


def test_scripted_latency_overlaps_across_concurrent_tasks():
    model = ScriptedChatModel(responses=["a", "b"], latency=1.0)

    async def both():
        return await asyncio.gather(model.ainvoke("first"), model.ainvoke("second"))

    start = time.perf_counter()
    answers = asyncio.run(both())
    elapsed = time.perf_counter() - start
    # Both waited their second at once: one after the other would take two.
    assert 1.0 <= elapsed < 1.9
    assert [a.content for a in answers] == ["a", "b"]  # popped in the order the tasks ran


# ------------------------------------------------------------------ resolve_model


def test_resolve_builtin_models():
    assert isinstance(resolve_model("offline"), OfflineChatModel)
    scripted = resolve_model("scripted", responses=["hello"])
    assert isinstance(scripted, ScriptedChatModel)
    assert scripted.invoke("x").content == "hello"
    assert provider_of("offline") == "offline"
    assert provider_of("openai:gpt-4.1-mini") == "openai"
    assert provider_of("ollama:llama3:8b") == "ollama"


def test_resolve_unknown_provider_suggests_the_closest():
    with pytest.raises(ConfigError, match="unknown model provider 'opnai'.*did you mean 'openai'"):
        resolve_model("opnai:gpt-4o")
    with pytest.raises(ConfigError, match="did you mean 'google_genai'"):
        resolve_model("google-genai:gemini-2.5-flash")


def test_resolve_missing_provider_package_gives_the_install_command():
    if importlib.util.find_spec("langchain_groq") is not None:
        pytest.skip("langchain_groq is installed")
    with pytest.raises(ConfigError) as raised:
        resolve_model("groq:llama3")
    assert str(raised.value) == (
        "model 'groq:llama3' needs the groq provider package: pip install langchain-groq"
    )
    assert isinstance(raised.value.__cause__, ImportError)


@pytest.mark.parametrize("model", ["gpt-4o", ":gpt-4o", "openai:", "offline:big"])
def test_resolve_refuses_strings_not_of_the_provider_model_form(model):
    with pytest.raises(ConfigError, match="not a model string|built-in model"):
        resolve_model(model)


def test_one_line_per_item_is_a_format_not_a_limit():
    from langchain_core.messages import HumanMessage, SystemMessage

    issues = [{"key": f"PAY-{n}", "summary": f"Task {n}", "status": "To Do"} for n in range(1, 7)]
    context = json.dumps({"jira.search": {"issues": issues}})
    model = OfflineChatModel()
    per_issue = model.invoke(
        [SystemMessage("One line per issue with its assignee."), HumanMessage(context)]
    )
    capped = model.invoke(
        [SystemMessage("One line per issue; at most 4 lines."), HumanMessage(context)]
    )
    assert all(f"PAY-{n} " in per_issue.content for n in range(1, 7))
    assert "PAY-5 " not in capped.content and "… and 2 more" in capped.content


def test_offline_takes_a_lone_user_turn_as_the_instructions():
    """An agent without context sends its instructions alone, as the user turn: the offline
    model reads them as instructions (its line cap), not as context to digest."""
    alone = OfflineChatModel(today=TODAY).invoke([HumanMessage("Top 3 blockers, five lines.")])
    assert "No context was provided" in alone.content
    assert "Top 3 blockers" not in alone.content


def test_offline_reads_the_context_message_the_runtime_sends():
    """Searches give bare lists under a heading naming the action: an empty one is still a
    search that found nothing."""
    issues = json.dumps(ISSUES, separators=(",", ":"))
    messages = json.dumps(MESSAGES, separators=(",", ":"))
    both = _ask("Digest.", f"## jira.search\n{issues}\n\n## slack.history\n{messages}").content
    assert "Blockers" in both and "PAY-101" in both and "Slack messages" in both
    empty = _ask("Digest.", "## jira.search\n[]\n\n## slack.thread\n[]").content
    assert "No Jira issues matched." in empty and "No Slack messages." in empty
    assert "empty list" not in empty
