"""Token benchmark (not a test): what MeshAgent adds to the prompt, beside hand-written prompts.

The task is the digest of a fixed payload of 12 Jira issues. Every prompt goes through the real
``ChatOpenAI`` to the project's local OpenAI-compatible server (``tests/runtime/openai_server.py``),
and the prompt tokens are counted on the requests that server received, with one rule for all:
``meshagent.models.estimate_tokens`` of each message's content (and tool calls) plus 3 per
message, and of the tools as compact JSON.

    fetch, think (one model call, the payload as context), MeshAgent beside a hand-written
    [system: instructions, user: payload] on the same payload:
      - http.get as text: the payload as lines of text from a local HTTP server;
      - http.get as JSON: the payload as a JSON list from the same server;
      - jira.search: the same 12 issues seeded into the sandbox's Jira, the same fields;
    agent mode, the first request (instructions, tool schema) beside a hand-written minimal
    tool-calling request with the same tool: name, description, its arguments' types and
    descriptions, which is required.

Target (issue #20): each MeshAgent figure at most the minimal one + 10 tokens. Prints every
figure, met or MISSED; exits 0 either way.

    python bench/bench_tokens.py
"""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile
import textwrap
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # tests.runtime.openai_server

from langchain_core.messages import HumanMessage, SystemMessage  # noqa: E402
from langchain_core.tools import StructuredTool  # noqa: E402
from langchain_core.utils.function_calling import convert_to_openai_tool  # noqa: E402

from meshagent.actions import default_registry  # noqa: E402
from meshagent.agentfile.loader import parse_agent  # noqa: E402
from meshagent.config import Config  # noqa: E402
from meshagent.ledger.store import Ledger  # noqa: E402
from meshagent.models import estimate_tokens  # noqa: E402
from meshagent.runtime.prompt import tool_schema  # noqa: E402
from meshagent.runtime.runner import Runtime  # noqa: E402
from meshagent.sandbox import Sandbox  # noqa: E402
from tests.runtime.local_site import local_site  # noqa: E402
from tests.runtime.openai_server import OpenAIServer, answer, usage  # noqa: E402

TARGET_EXTRA = 10
PER_MESSAGE = 3  # what a chat format adds per message, the same for every prompt counted
INSTRUCTIONS = "Write a five-line standup digest of the Jira issues below. Name blockers first."
FIELDS = ["summary", "status", "assignee", "priority", "updated", "duedate"]

# (key, summary, status, assignee, priority, updated (UTC), due)
ISSUES = [
    ("PAY-1", "Retry failed checkouts once with a new idempotency key", "Done", "alice", "High",
     "2026-11-30 14:05", "2026-11-28"),
    ("PAY-2", "Refund reconciliation double-counts partial refunds", "In Progress", "bob",
     "Highest", "2026-12-01 08:40", "2026-12-02"),
    ("PAY-3", "Move card-vault credentials to the new secrets store", "Blocked", "bob", "High",
     "2026-11-30 23:10", "2026-11-27"),
    ("PAY-4", "Show refund status in the customer portal", "In Review", "alice", "Medium",
     "2026-11-30 11:00", "2026-12-05"),
    ("PAY-5", "Upgrade the payments SDK to 7.2", "To Do", "bob", "Low", "2026-11-10 09:30", None),
    ("PAY-6", "Currency rounding off by one cent for JPY", "To Do", "alice", "Medium",
     "2026-11-15 16:45", "2026-11-26"),
    ("PAY-7", "Write the 2026.12 migration guide", "Done", "erin", "Medium", "2026-11-29 10:20",
     None),
    ("PAY-8", "Add Apple Pay to the mobile checkout", "To Do", None, "Medium", "2026-11-06 13:00",
     None),
    ("PAY-9", "Chargeback webhook drops events under load", "Blocked", "carol", "Highest",
     "2026-12-01 07:55", "2026-12-01"),
    ("PAY-10", "Document the refund API's error codes", "In Progress", "erin", "Low",
     "2026-11-28 15:30", "2026-12-10"),
    ("PAY-11", "Flaky settlement export test on CI", "In Review", "dave", "Medium",
     "2026-11-30 17:25", None),
    ("PAY-12", "Rate-limit the payout status endpoint", "To Do", "dave", "High",
     "2026-11-25 12:00", "2026-12-08"),
]  # fmt: skip
PEOPLE = {
    "alice": "Alice Adams",
    "bob": "Bob Brown",
    "carol": "Carol Chen",
    "dave": "Dave Diaz",
    "erin": "Erin Evans",
}

# The hand-written minimal tool a person would give a model to search Jira.
MINIMAL_TOOL = {
    "type": "function",
    "function": {
        "name": "jira_search",
        "description": "Issues matching a JQL query.",
        "parameters": {
            "type": "object",
            "properties": {
                "jql": {"type": "string", "description": "JQL query, e.g. project = PAY."},
                "fields": {
                    "type": "array",
                    "items": {"type": "string"},
                    "description": "Fields to return.",
                },
                "limit": {"type": "integer", "description": "At most this many issues."},
            },
            "required": ["jql"],
        },
    },
}


def payload() -> list[dict[str, Any]]:
    """The 12 issues as a person would hand them to a model: the fields, nothing empty."""
    issues = []
    for key, summary, status, who, priority, updated, due in ISSUES:
        issue = {"key": key, "summary": summary, "status": status}
        issue |= {"assignee": PEOPLE[who]} if who else {}
        issue |= {"priority": priority, "updated": updated}
        issue |= {"duedate": due} if due else {}
        issues.append(issue)
    return issues


def as_text() -> str:
    return "\n".join(" | ".join(str(v) for v in issue.values()) for issue in payload()) + "\n"


def compact(data: Any) -> str:
    return json.dumps(data, ensure_ascii=False, separators=(",", ":"))


def counted(request: dict[str, Any]) -> int:
    """The prompt tokens of one request as received, by the one rule of this benchmark."""
    total = 0
    for message in request["messages"]:
        total += PER_MESSAGE + estimate_tokens(message.get("content") or "")
        if message.get("tool_calls"):
            total += estimate_tokens(compact(message["tool_calls"]))
    if request.get("tools"):
        total += estimate_tokens(compact(request["tools"]))
    return total


def seed() -> dict[str, Any]:
    """The sandbox's Jira holding exactly the 12 issues."""
    statuses = [("To Do", "new"), ("In Progress", "indeterminate"), ("Blocked", "indeterminate"),
                ("In Review", "indeterminate"), ("Done", "done")]  # fmt: skip
    issues = []
    for key, summary, status, who, priority, updated, due in ISSUES:
        issue = {"key": key, "type": "Task", "summary": summary, "status": status,
                 "priority": priority, "created": "2026-11-01T09:00:00Z",
                 "updated": updated.replace(" ", "T") + ":00Z"}  # fmt: skip
        issue |= {"assignee": who} if who else {}
        issue |= {"due": due} if due else {}
        issues.append(issue)
    users = [
        {"name": name, "display_name": shown, "email": f"{name}@example.com"}
        for name, shown in PEOPLE.items()
    ]
    return {
        "slack": {"users": [], "channels": []},
        "jira": {
            "users": users,
            "statuses": [{"name": name, "category": kind} for name, kind in statuses],
            "projects": [{"key": "PAY", "name": "Payments", "issue_types": ["Task"]}],
            "issues": issues,
        },
    }


def agent(body: str) -> Any:
    text = textwrap.dedent(
        f"""\
        name: digest
        owner: bench@example.com
        team: bench
        model: openai:gpt-4o-mini
        instructions: {INSTRUCTIONS}
        value: {{tag: toil-reduction, minutes_saved: 5}}
        """
    )
    return parse_agent(text + textwrap.dedent(body), filename="digest.yaml", env={})


def meshagent_request(server: OpenAIServer, box: Sandbox, spec: Any) -> tuple[int, int]:
    """The first request MeshAgent sent for one run of ``spec``: its tokens, and the framework
    share the run reported."""
    server.requests.clear()
    server.script(answer("digest", usage(1, 1)))
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'ledger.db'}"
        with Ledger.open(url) as ledger:
            runtime = Runtime(
                Config(ledger_url=url), ledger=ledger, env=box.env(),
                chat_model=server.chat_model(),
            )  # fmt: skip
            result = asyncio.run(runtime.run(spec))
    if result.status != "ok":
        raise SystemExit(f"the MeshAgent run failed: {result.error}")
    return counted(server.requests[0]), result.framework_prompt_tokens


def minimal_request(server: OpenAIServer, messages: list[Any], tools: Any = None) -> int:
    server.requests.clear()
    server.script(answer("digest", usage(1, 1)))
    chat = server.chat_model()
    model = chat.bind_tools(tools) if tools else chat
    asyncio.run(model.ainvoke(messages))
    return counted(server.requests[0])


def schema_tokens(name: str, *, trimmed: bool) -> int:
    """An action's tool as sent: its whole pydantic model (as LangChain sends one), or the
    schema MeshAgent sends (``meshagent.runtime.prompt.tool_schema``)."""
    action = default_registry().get(name)
    schema = action.args.model_json_schema()
    tool = StructuredTool.from_function(
        coroutine=lambda **_: None,
        name=name.replace(".", "_"),
        description=action.description,
        args_schema=tool_schema(schema) if trimmed else action.args,
    )
    return estimate_tokens(compact(convert_to_openai_tool(tool)))


def _descriptions(tools: list[dict[str, Any]]) -> int:
    """The tokens of the descriptions in tool schemas (quoted, as they are sent)."""
    total = 0
    for tool in tools:
        function = tool["function"]
        total += estimate_tokens(json.dumps(function["description"]))
        for spec in function["parameters"]["properties"].values():
            total += estimate_tokens(json.dumps(spec.get("description", "")))
    return total


def main() -> None:
    rows: list[tuple[str, int, int, int]] = []
    fields = ", ".join(FIELDS)
    pages = {
        "/issues.txt": ("text/plain; charset=utf-8", as_text().encode()),
        # as an API would send it: indented
        "/issues.json": ("application/json", json.dumps(payload(), indent=2).encode()),
    }
    with OpenAIServer() as server, Sandbox(seed()) as box, local_site(pages) as base:
        by_hand = [SystemMessage(INSTRUCTIONS)]
        for label, path, minimal in [
            ("http.get as text", "/issues.txt", as_text()),
            ("http.get as JSON", "/issues.json", compact(payload())),
        ]:
            spec = agent(f'context:\n  - http.get: {{url: "{base}{path}"}}\n')
            ours, share = meshagent_request(server, box, spec)
            theirs = minimal_request(server, [*by_hand, HumanMessage(minimal)])
            rows.append((label, ours, theirs, share))

        jql = "project = PAY ORDER BY key"
        spec = agent(f'context:\n  - jira.search: {{jql: "{jql}", fields: [{fields}]}}\n')
        ours, share = meshagent_request(server, box, spec)
        context = server.requests[0]["messages"][1]["content"].partition("\n")[2]
        same = json.loads(context) == payload()
        theirs = minimal_request(server, [*by_hand, HumanMessage(compact(payload()))])
        rows.append(("jira.search, same fields", ours, theirs, share))

        spec = agent("tools:\n  - jira.search: {projects: [PAY]}\n")
        ours, share = meshagent_request(server, box, spec)
        sent_tools = server.requests[0]["tools"]
        our_roles = [message["role"] for message in server.requests[0]["messages"]]
        theirs = minimal_request(server, [HumanMessage(INSTRUCTIONS)], [MINIMAL_TOOL])
        their_roles = [message["role"] for message in server.requests[0]["messages"]]
        rows.append(("agent mode, first request", ours, theirs, share))

    print("Prompt tokens of the digest of 12 Jira issues (estimate_tokens, 3 per message)")
    print(f"{'case':<28} {'MeshAgent':>9} {'minimal':>8} {'extra':>6} "
          f"{'framework share':>16}  target (<= minimal + {TARGET_EXTRA})")  # fmt: skip
    for label, ours, theirs, share in rows:
        verdict = "met" if ours <= theirs + TARGET_EXTRA else "MISSED"
        print(f"{label:<28} {ours:>9,} {theirs:>8,} {ours - theirs:>+6,} {share:>16,}  {verdict}")
    print(f"jira.search gave the payload's 12 issues, field for field: {'yes' if same else 'NO'}")
    full = schema_tokens("jira.search", trimmed=False)
    sent = estimate_tokens(compact(sent_tools))
    by_hand_schema = estimate_tokens(compact([MINIMAL_TOOL]))
    words = _descriptions(sent_tools) - _descriptions([MINIMAL_TOOL])
    label, ours, theirs, _ = rows[-1]
    print(
        f"{label}: {ours - theirs:+,} = {ours - theirs - (sent - by_hand_schema):+,} in messages "
        f"(MeshAgent sent {' + '.join(our_roles)}, the hand-written request "
        f"{' + '.join(their_roles)}), "
        f"{sent - by_hand_schema:+,} in the tool schema, of which {words:+,} in longer "
        "descriptions"
    )
    print(
        f"jira_search tool schema per turn: {sent:,} tokens as sent, {full:,} as the whole "
        f"pydantic model (defaults, bounds, titles), {by_hand_schema:,} hand-written"
    )
    names = default_registry().names()
    before = {name: schema_tokens(name, trimmed=False) for name in names}
    after = {name: schema_tokens(name, trimmed=True) for name in names}
    print("Tool schema tokens per turn, whole pydantic model -> as sent:")
    for name in names:
        print(f"  {name:<22} {before[name]:>5,} -> {after[name]:>5,}")
    total_before, total_after = sum(before.values()), sum(after.values())
    saved = 1 - total_after / total_before
    print(f"  {'all':<22} {total_before:>5,} -> {total_after:>5,} ({saved:.0%} fewer)")


if __name__ == "__main__":
    main()
