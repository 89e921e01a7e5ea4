"""Attack corpus: an MCP tool's grant holds against a hostile model (issue 22, item 3).

A grant constrains a tool's arguments (one of a list, a prefix, a pattern). The model tries to
step outside it: prefix tricks, path traversal under a prefix, type confusion (a list or an
object where text was granted, a number for a string), Unicode and case tricks, arguments the
tool's schema does not name, leaving a constrained argument out for the server's default. Each
case is refused before any request: by the tool's own schema (the call fails and is never sent)
or by the grant (refused). The last tests send the same attacks through the tool loop to the
sandbox's wiki, a real MCP server, and assert it received none of them.
"""

from __future__ import annotations

import asyncio
import textwrap
from typing import Any

import pytest
from pydantic import ValidationError

from meshagent.agentfile.loader import parse_agent
from meshagent.config import Config
from meshagent.exceptions import GrantDenied, SpecError
from meshagent.ledger.store import Ledger
from meshagent.mcp.lock import Lock, LockedTool
from meshagent.mcp.tools import registry_for
from meshagent.models import ScriptedChatModel
from meshagent.runtime.runner import Runtime
from meshagent.sandbox import Sandbox

FILE_NOTE = LockedTool(
    "file_note",
    "Write text to a path.",
    {
        "type": "object",
        "properties": {
            "path": {"type": "string"},
            "text": {"type": "string"},
            "space": {"type": "string"},
            "loose": {},  # no type: the schema lets anything through, the grant must not
            "count": {"type": "integer"},
        },
        "required": ["path", "text"],
    },
    {"readOnlyHint": False, "destructiveHint": True},
)


@pytest.fixture(scope="module")
def action(tmp_path_factory):
    path = tmp_path_factory.mktemp("lock") / "mcp.lock.json"
    Lock({"notes": {"file_note": FILE_NOTE}}).write(path)
    from meshagent.actions import default_registry

    return registry_for(path, {}, default_registry()).get("notes.file_note")


def attempt(action, grant: dict[str, Any], arguments: dict[str, Any]) -> str:
    """What becomes of a call: "ok", "invalid: ..." (schema, never sent) or "refused: ..."."""
    granted = action.grant.model_validate(grant)
    try:
        args = action.args.model_validate(arguments)
    except ValidationError as exc:
        return "invalid: " + "; ".join(e["msg"] for e in exc.errors())
    try:
        action.check(args, granted)
    except GrantDenied as exc:
        return "refused: " + exc.reason
    return "ok"


PREFIX = {"path": {"prefix": "docs/team-a/"}}


@pytest.mark.parametrize(
    "path",
    [
        "docs/team-a/../team-b/secrets.md",
        "docs/team-a/..",
        "docs/team-a/./../../etc/passwd",
        "docs/team-a/%2e%2e/team-b/x",
        "docs/team-a/%2E%2E%2Fteam-b",
        "docs/team-a/..%2fteam-b",
        "docs/team-a/..\\team-b\\x",
        "docs/team-a/x%00.md",
        "docs/team-a/x\x00",
        "docs/team-a/x\n../../team-b",
        "docs/team-a/\u202eb-maet/x",  # right-to-left override
        "docs/team-a/\u200b../x",  # zero-width space
        "ｄｏｃｓ/team-a/x",  # fullwidth
        "docs/team-a/ﬁle",  # a ligature NFKC folds into 'fi'
        "DOCS/team-a/x",
        "docs/Team-A/x",
        "docs/team-a",
        "docs/team-ab/x",
        "docs/team‐a/x",  # U+2010 hyphen
        "/docs/team-a/x",
        " docs/team-a/x",
        "docs/team-b/x",
    ],
)
def test_text_outside_a_prefix_grant_is_refused(action, path):
    outcome = attempt(action, PREFIX, {"path": path, "text": "t"})
    assert outcome.startswith("refused: path: "), outcome


def test_text_inside_a_prefix_grant_runs(action):
    assert attempt(action, PREFIX, {"path": "docs/team-a/notes/2026-12.md", "text": "t"}) == "ok"
    assert attempt(action, PREFIX, {"path": "docs/team-a/v1.2..3.md", "text": "t"}) == "ok"


@pytest.mark.parametrize(
    ("arguments", "expected"),
    [
        ({"path": ["docs/team-a/x"], "text": "t"}, "invalid: expected text, got a list"),
        ({"path": {"$ne": ""}, "text": "t"}, "invalid: expected text, got an object"),
        ({"path": 7, "text": "t"}, "invalid: expected text, got a number"),
        ({"path": None, "text": "t"}, "invalid: expected text, got null"),
        ({"path": "docs/team-a/x", "text": "t", "loose": ["docs/team-a/x"]},
         "refused: loose: a list where the grant allows only text"),
        ({"path": "docs/team-a/x", "text": "t", "loose": {"prefix": "docs/team-a/"}},
         "refused: loose: an object where the grant allows only text"),
        ({"path": "docs/team-a/x", "text": "t", "loose": 1},
         "refused: loose: a number where the grant allows only text"),
    ],
)  # fmt: skip
def test_type_confusion_is_refused_before_the_grant_or_by_it(action, arguments, expected):
    grant = {**PREFIX, "loose": {"prefix": "docs/team-a/"}}
    assert attempt(action, grant, arguments) == expected


@pytest.mark.parametrize(
    ("space", "why"),
    [
        ("eng", '"eng" is not one of the granted values'),
        ("ENG ", '"ENG " is not one of the granted values'),
        ("ENG\u200b", "is not one of the granted values"),
        ("ＥＮＧ", "is not one of the granted values"),
        ("ENG,OPS", "is not one of the granted values"),
        ("OPS", '"OPS" is not one of the granted values ("ENG")'),
    ],
)
def test_one_of_compares_exactly(action, space, why):
    outcome = attempt(action, {"space": ["ENG"]}, {"path": "p", "text": "t", "space": space})
    assert outcome.startswith("refused: space: ") and why in outcome, outcome


def test_one_of_compares_json_types_too(action):
    grant = {"count": [1], "loose": ["1"]}
    ok = {"path": "p", "text": "t", "count": 1, "loose": "1"}
    assert attempt(action, grant, ok) == "ok"
    assert attempt(action, grant, {**ok, "loose": 1}).startswith("refused: loose: 1 is not one")
    assert attempt(action, grant, {**ok, "loose": True}).startswith("refused: loose: true")
    assert attempt(action, {"loose": [1]}, {**ok, "loose": 1.0}).startswith("refused: loose: 1.0")


@pytest.mark.parametrize(
    "title",
    ["ENG-1\n", "ENG-12 ", "ENG-١٢", "eng-1", "ENG-1; DROP", "XENG-1", "ENG-"],
)
def test_a_pattern_matches_the_whole_text_in_ascii(action, title):
    grant = {"path": {"pattern": r"ENG-\d+"}}
    outcome = attempt(action, grant, {"path": title, "text": "t"})
    assert outcome.startswith("refused: path: "), outcome
    assert attempt(action, grant, {"path": "ENG-12", "text": "t"}) == "ok"


def test_arguments_the_schema_does_not_name_are_never_sent(action):
    outcome = attempt(action, {}, {"path": "p", "text": "t", "owner": "root", "__proto__": {}})
    assert outcome == (
        "invalid: not an argument of this tool (arguments: count, loose, path, space, text); "
        "not an argument of this tool (arguments: count, loose, path, space, text)"
    )


def test_a_constrained_argument_must_be_given(action):
    outcome = attempt(action, {"space": ["ENG"]}, {"path": "p", "text": "t"})
    assert outcome == "refused: space: the grant constrains it, so it must be given"


@pytest.mark.parametrize(
    ("grant", "message"),
    [
        ({"spcae": ["ENG"]}, "notes.file_note has no argument 'spcae'; did you mean 'space'?"),
        ({"path": {"prefix": ""}}, "prefix: one non-empty text or a list of them"),
        ({"path": {"pattern": "("}}, "pattern: not a regular expression"),
        ({"path": {"startswith": "x"}}, "unknown constraint 'startswith'"),
        ({"path": {}}, "an empty constraint"),
        ({"space": [{"a": 1}]}, "one_of: an object is not a value to compare"),
        ({"space": ["{{team}}"]}, "one_of: a grant is fixed text"),
    ],
)
def test_a_grant_that_cannot_be_read_is_a_located_error(action, tmp_path, grant, message):
    lock = tmp_path / "mcp.lock.json"
    Lock({"notes": {"file_note": FILE_NOTE}}).write(lock)
    import yaml

    from meshagent.actions import default_registry

    text = textwrap.dedent(
        f"""\
        name: noter
        owner: alice@example.com
        team: payments
        instructions: Write notes.
        tools:
          - notes.file_note: {yaml.safe_dump(grant, default_flow_style=True).strip()}
        value: {{tag: toil-reduction}}
        """
    )
    registry = registry_for(lock, {}, default_registry())
    with pytest.raises(SpecError) as raised:
        parse_agent(text, filename="noter.yaml", registry=registry)
    [issue] = raised.value.issues
    assert (issue.file, issue.line) == ("noter.yaml", 6)
    assert issue.path.startswith("tools[0].notes.file_note")
    assert message in issue.message


# -- through the tool loop, to a real MCP server -------------------------------------------------

WIKI_AGENT = """
    name: wiki-writer
    owner: alice@example.com
    team: payments
    model: scripted
    instructions: Write the standup page.
    tools:
      - wiki.create_page: {space: [ENG], title: {prefix: "Standup "}}
    value: {tag: toil-reduction, minutes_saved: 1}
"""

ATTACKS = [
    {"space": "OPS", "title": "Standup x", "body": "b"},
    {"space": ["ENG"], "title": "Standup x", "body": "b"},
    {"space": "ENG", "title": "standup x", "body": "b"},
    {"space": "ENG", "title": "Standup x", "body": "b", "owner": "mallory"},
    {"space": "ENG", "title": ["Standup x"], "body": "b"},
    {"space": "ENG", "title": "Ｓtandup x", "body": "b"},
    {"space": "ENG", "body": "b"},
    {"space": "ENG ", "title": "Standup x", "body": "b"},
]


@pytest.fixture(scope="module")
def wiki():
    with Sandbox() as box:
        box.start_wiki()
        yield box


def test_no_attack_reaches_the_wiki_and_each_is_recorded(wiki, tmp_path):
    from meshagent.mcp.refresh import refresh

    env = wiki.env()
    config = Config(
        root=tmp_path, agents_dir=tmp_path, ledger_url=f"sqlite:///{tmp_path / 'l.db'}",
        mcp=wiki.mcp_settings(),
    )  # fmt: skip
    with Ledger.open(config.ledger_url) as ledger:
        runtime = Runtime(config, ledger=ledger, env=env)

        async def scenario():
            await refresh(config, env)
            runtime.registry = _fresh(runtime)
            spec = parse_agent(textwrap.dedent(WIKI_AGENT), registry=runtime.registry)
            calls = [
                {"name": "wiki_create_page", "args": args, "id": f"a{i}"}
                for i, args in enumerate(ATTACKS)
            ]
            runtime.chat_model = ScriptedChatModel(
                responses=[*({"tool_calls": [c]} for c in calls), "Done."]
            )
            try:
                return await runtime.run(spec)
            finally:
                await runtime.aclose()

        before = len(wiki.wiki.calls)
        result = asyncio.run(scenario())
        assert result.status == "ok", result.error
        assert wiki.wiki.calls[before:] == []  # nothing reached the server
        kinds = [e.kind for e in ledger.events(result.run_id)]
        assert kinds == ["tool_refused", "tool_failed", "tool_refused", "tool_failed",
                         "tool_failed", "tool_refused", "tool_failed", "tool_refused"]  # fmt: skip


def _fresh(runtime):
    from meshagent.mcp.tools import project_registry

    return project_registry(runtime.config)
