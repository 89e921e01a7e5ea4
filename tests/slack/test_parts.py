"""The parts: input parsing, messages, the response_url budget, replies, memories, votes."""

from __future__ import annotations

import asyncio
import textwrap
from decimal import Decimal

import pytest
from slack_sdk.web.async_client import AsyncWebClient

from meshagent.actions import Outcome
from meshagent.agentfile.loader import parse_agent
from meshagent.exceptions import RunError
from meshagent.ledger.records import Usage
from meshagent.runtime.runner import RunResult
from meshagent.slack.access import Caller, Directory, check_access
from meshagent.slack.commands import parse_inputs
from meshagent.slack.feedback import reaction_vote
from meshagent.slack.messages import note, result_messages, split_text
from meshagent.slack.respond import Reply, ResponseUrl
from meshagent.slack.seen import Seen
from tests.slack.conftest import ASK, texts


def _ask():
    return parse_agent(textwrap.dedent(ASK), filename="ask.yaml")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", {}),
        ("how are refunds?", {"question": "how are refunds?"}),
        ("days=3 what's new", {"days": "3", "question": "what's new"}),
        ('question="a b  c" days=2', {"question": "a b  c", "days": "2"}),
        ("“quoted” x=1 y", {"question": "“quoted” x=1 y"}),
        ("question=“a b”", {"question": "a b"}),
    ],
)
def test_inputs_from_text(text, expected):
    assert parse_inputs(_ask(), text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("dyas=3", "did you mean 'days'?"),
        ("days=1 days=2", "given twice"),
        ("question=x more text", "already given"),
    ],
)
def test_input_mistakes(text, message):
    with pytest.raises(RunError, match=message):
        parse_inputs(_ask(), text)


def _result(**fields) -> RunResult:
    values = {"run_id": "r-1", "agent": "ask", "status": "ok", "model": "offline"}
    values["usage"] = Usage(input_tokens=1200, output_tokens=34)
    return RunResult(**(values | fields))


def test_a_long_answer_is_split_and_cut_to_the_messages_allowed():
    answer = "\n".join(f"line {n} " + "x" * 90 for n in range(1200))  # ~120,000 characters
    one = result_messages(_result(answer=answer), channel_id="C1", limit=1)
    two = result_messages(_result(answer=answer), channel_id="C1", limit=2)
    assert len(one) == 1 and len(two) == 2
    for messages in (one, two):
        assert all(len(m["blocks"]) <= 13 for m in messages)
        assert all(
            len(b["text"]["text"]) <= 3000 for m in messages for b in m["blocks"] if "text" in b
        )
        assert "cut here" in texts(messages[-1])
        assert messages[-1]["blocks"][-1]["block_id"] == "meshagent_feedback"
    assert "1,234 tokens · $0.00 · run `r-1`" in texts(one[0])


def test_a_result_footer_says_when_the_cost_is_unknown():
    [message] = result_messages(
        _result(answer="hi", cost_usd=None, notes=["no price for x"]), channel_id="C1"
    )
    assert "1,234 tokens · cost unknown · run `r-1`" in texts(message)
    assert "no price for x" in texts(message)
    [cheap] = result_messages(_result(answer="hi", cost_usd=Decimal("0.0042")), channel_id="C1")
    assert "· $0.0042 ·" in texts(cheap)


def test_a_failed_run_has_no_buttons_and_escapes_its_error():
    [message] = result_messages(
        _result(status="failed", error="bad <input> & more"), channel_id="C1"
    )
    assert ":x: *ask* failed: bad &lt;input&gt; &amp; more" in texts(message)
    assert all(b.get("block_id") != "meshagent_feedback" for b in message["blocks"])


def test_outcomes_are_linked():
    outcomes = [
        Outcome("slack.message", "C2:1.2", "https://x.slack.com/archives/C2/p12"),
        Outcome("jira.issue", "PAY-9", "https://jira.example/browse/PAY-9"),
    ]
    [message] = result_messages(_result(answer="A", outcomes=outcomes), channel_id="C1")
    shown = texts(message)
    assert "Posted to <#C2>: <https://x.slack.com/archives/C2/p12|view>" in shown
    assert "jira.issue: <https://jira.example/browse/PAY-9|PAY-9>" in shown


def test_split_text_breaks_at_lines():
    pieces = split_text("a" * 10 + "\n" + "b" * 10, size=15)
    assert pieces == ["a" * 10, "b" * 10]
    assert split_text("c" * 40, size=15) == ["c" * 15, "c" * 15, "c" * 10]


def test_a_response_url_allows_five_posts_within_thirty_minutes():
    now = [0.0]
    url = ResponseUrl("http://127.0.0.1:9/response/x", clock=lambda: now[0])
    assert url.left == 5
    url.used = 4
    assert url.left == 1
    now[0] = 29 * 60 + 31  # within the last 30 seconds: no new post is started
    assert url.left == 0
    assert asyncio.run(url.send({"text": "late"})) is False
    assert "response" not in repr(url)  # the URL is a credential


def test_a_reply_falls_back_to_a_direct_message(sandbox):
    client = AsyncWebClient(token=sandbox.slack_token, base_url=sandbox.slack_url)

    async def send() -> bool:
        reply = Reply(client, None, channel="C0RANDOM00", user="U0CAROL03")  # bot not a member
        return await reply.send(note("hello"))

    assert asyncio.run(send()) is True
    [dm] = sandbox.slack.dms_to("carol")
    assert dm.text == "hello"


def test_seen_is_bounded_and_forgets():
    now = [0.0]
    seen = Seen(3, ttl=10, clock=lambda: now[0])
    assert [seen.add(k) for k in "abca"] == [True, True, True, False]
    seen.add("d")
    assert "b" not in seen and len(seen) == 3
    now[0] = 11
    assert "a" not in seen and seen.add("a")


@pytest.mark.parametrize(
    ("reaction", "vote"),
    [("+1", 1), ("thumbsup", 1), ("+1::skin-tone-4", 1), ("-1", -1), ("thumbsdown", -1),
     ("tada", None), ("heart", None)],
)  # fmt: skip
def test_reaction_votes(reaction, vote):
    assert reaction_vote(reaction) == vote


def test_channels_match_by_name_or_id(sandbox):
    spec = parse_agent(
        textwrap.dedent(
            """\
            name: chan
            owner: a@example.com
            team: t
            model: offline
            instructions: x
            triggers:
              - slash: chan
                allow: {channels: ["#Payments", C0INCIDENT]}
            value: {tag: toil-reduction}
            """
        ),
        filename="c.yaml",
    )
    client = AsyncWebClient(token=sandbox.slack_token, base_url=sandbox.slack_url)

    def check(channel_id: str, name: str) -> str | None:
        caller = Caller("U0ALICE01", channel_id, name)
        return asyncio.run(check_access(spec, caller, Directory(client)))

    assert check("C0PAYMENTS", "payments") is None
    assert check("C0INCIDENT", "incidents") is None
    assert "not from #general" in (check("C0GENERAL0", "general") or "")
    assert sandbox.slack.calls == []  # channels need no lookup
