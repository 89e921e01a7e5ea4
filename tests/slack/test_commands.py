"""Commands over HTTP: ack first, the run in the background, the result by response_url."""

from __future__ import annotations

import time

import pytest

from meshagent.models import ScriptedChatModel
from tests.slack.conftest import (
    ASK,
    SCHEDULED_ONLY,
    SECRET_AGENT,
    agents,
    command,
    form,
    make_app,
    response_posts,
    texts,
)


def _ack_text(answer) -> str:
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["response_type"] == "ephemeral"  # shown to the person who typed it, only
    return texts(body)


def test_run_acks_then_answers_through_the_response_url(sandbox, ledger, serve):
    served = serve(make_app(sandbox, ledger, agents(sandbox, ASK)))
    answer = served.command(sandbox, "run ask how are refunds going? days=3")
    assert _ack_text(answer) == "⏳ running ask…".replace("⏳", ":hourglass_flowing_sand:")
    served.idle()
    [result] = response_posts(sandbox)
    assert result["response_type"] == "ephemeral"
    shown = texts(result)
    assert "*ask* finished" in shown
    assert '"how are refunds going?"' in shown and "days: 3" in shown  # the offline digest
    [entry_id] = [b for b in result["blocks"] if b.get("block_id") == "meshagent_feedback"]
    run_id = entry_id["elements"][0]["value"]
    entry = ledger.entry(run_id)
    assert entry["trigger_kind"] == "slash" and entry["triggered_by"] == "U0ALICE01"
    assert entry["status"] == "ok"
    footer = result["blocks"][-2]["elements"][0]["text"]
    tokens = entry["input_tokens"] + entry["output_tokens"]
    assert footer == f"~{tokens:,} tokens · $0.00 · run `{run_id}`"
    labels = [e["text"]["text"] for e in entry_id["elements"]]
    assert labels == [":thumbsup: Useful", ":thumbsdown: Not useful"]


def test_the_ack_comes_before_the_run_finishes(sandbox, ledger, serve):
    model = ScriptedChatModel(responses=["All good."], latency=1.5)
    app = make_app(sandbox, ledger, agents(sandbox, ASK), chat_model=model)
    served = serve(app)
    started = time.monotonic()
    answer = served.command(sandbox, "ask anything new?")
    assert time.monotonic() - started < 1.0
    assert "running ask" in _ack_text(answer)
    assert response_posts(sandbox) == []
    assert app.busy == 1
    served.idle()
    [result] = response_posts(sandbox)
    assert "All good." in texts(result)
    assert app.busy == 0


def test_an_agent_that_delivers_to_a_channel_links_to_its_post(sandbox, ledger, serve):
    served = serve(make_app(sandbox, ledger, agents(sandbox)))
    assert "running standup-digest" in _ack_text(served.command(sandbox, "standup"))
    served.idle()
    [posted] = sandbox.slack.posted_to("#payments-standup")
    [result] = response_posts(sandbox)
    shown = texts(result)
    assert "Posted to <#C0PAYSTAND>: <https://example-corp.slack.com/archives/C0PAYSTAND/p" in shown
    assert "Blockers" not in shown  # the digest itself is in the channel, not repeated
    assert any(b.get("block_id") == "meshagent_feedback" for b in result["blocks"])
    run_id = ledger.run_of_outcome(f"C0PAYSTAND:{posted.ts}", "slack.message")
    assert f"run `{run_id}`" in shown


def test_in_the_channel_it_delivers_to_the_result_says_so(sandbox, ledger, serve):
    served = serve(make_app(sandbox, ledger, agents(sandbox)))
    served.command(sandbox, "", name="/standup", channel="C0PAYSTAND")
    served.idle()
    [result] = response_posts(sandbox)
    assert "Posted in this channel: <https://" in texts(result)


def test_an_agents_own_command_runs_it(sandbox, ledger, serve):
    served = serve(make_app(sandbox, ledger, agents(sandbox, ASK)))
    assert "running ask" in _ack_text(served.command(sandbox, "why? days=2", name="/ask"))
    served.idle()
    [result] = response_posts(sandbox)
    assert '"why?"' in texts(result) and "days: 2" in texts(result)
    unknown = served.command(sandbox, "", name="/retired")
    assert "No agent answers `/retired`" in _ack_text(unknown)


@pytest.mark.parametrize(
    ("user", "channel", "text", "reason"),
    [
        ("U0ALICE01", "C0GENERAL0", "standup", "may be run only from #payments, #payments-standup"),
        ("U0CAROL03", "C0PAYMENTS", "ask hi", "may be run only by U0ALICE01, @bob, @oncall"),
        ("U0ALICE01", "C0PAYMENTS", "payroll", "may be run only by erin@example.com"),
        ("U0ALICE01", "C0PAYMENTS", "run nightly", "has no slash trigger"),
    ],
)
def test_a_refusal_says_why_to_that_user_only(sandbox, ledger, serve, user, channel, text, reason):
    specs = agents(sandbox, ASK, SECRET_AGENT, SCHEDULED_ONLY)
    served = serve(make_app(sandbox, ledger, specs))
    shown = _ack_text(served.command(sandbox, text, user=user, channel=channel))
    assert ":no_entry:" in shown and reason in shown
    served.idle()
    assert ledger.count() == 0
    assert response_posts(sandbox) == [] and sandbox.slack.posted == []


def test_people_are_matched_by_handle_email_and_user_group(sandbox, ledger, serve):
    specs = agents(sandbox, ASK, SECRET_AGENT)
    served = serve(make_app(sandbox, ledger, specs))
    assert "running ask" in _ack_text(served.command(sandbox, "ask hi", user="U0BOB0002"))
    assert "running payroll" in _ack_text(served.command(sandbox, "payroll", user="U0ERIN005"))
    sandbox.slack.add_usergroup("oncall", ["carol"])
    assert "running ask" in _ack_text(served.command(sandbox, "ask hi", user="U0CAROL03"))
    served.idle()
    assert ledger.count() == 3
    assert sandbox.slack.calls.count("usergroups.list") == 1


def test_list_shows_what_this_user_may_run(sandbox, ledger, serve):
    specs = agents(sandbox, ASK, SECRET_AGENT, SCHEDULED_ONLY)
    served = serve(make_app(sandbox, ledger, specs))
    assert served.command(sandbox, "list").text == ""  # acknowledged; the list follows
    served.command(sandbox, "list", user="U0CAROL03", channel="C0GENERAL0")
    served.idle()
    alice, carol = (texts(m) for m in response_posts(sandbox))
    assert "`/meshagent ask` (or `/ask`)" in alice and "inputs: `question` (string)" in alice
    assert "`/meshagent standup`" in alice and "only in #payments, #payments-standup" in alice
    assert "payroll" not in alice and "nightly" not in alice
    assert "standup" in carol and "ask" not in carol.replace("payments", "")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("stauts 123", "Unknown command `stauts`. Did you mean `/meshagent status`?"),
        ("standpu", "Did you mean `/meshagent standup`?"),
        ("run standpu", "No agent named `standpu`. Did you mean `standup`?"),
        ("run ask dyas=3", "ask has no input 'dyas'; did you mean 'days'?"),
        ("run ask days=soon", "input 'days' must be an integer"),
        ("run", "Which agent?"),
        ("status", "Which run?"),
    ],
)
def test_mistakes_are_answered_at_once_with_a_suggestion(sandbox, ledger, serve, text, expected):
    served = serve(make_app(sandbox, ledger, agents(sandbox, ASK)))
    assert expected in _ack_text(served.command(sandbox, text))
    served.idle()
    assert ledger.count() == 0


def test_status_is_for_who_ran_it_its_owner_and_admins(sandbox, ledger, serve):
    app = make_app(sandbox, ledger, agents(sandbox, ASK), slack={"admins": ["U0DAVE004"]})
    served = serve(app)
    served.command(sandbox, "ask hi")
    served.idle()
    [result] = response_posts(sandbox)
    run_id = result["blocks"][-1]["elements"][0]["value"]
    served.command(sandbox, f"status {run_id}")  # alice ran it
    served.command(sandbox, f"status {run_id[:8]}", user="U0DAVE004")  # an admin, by prefix
    served.command(sandbox, f"status {run_id}", user="U0BOB0002")  # neither
    served.idle()
    mine, admin, other = (texts(m) for m in response_posts(sandbox)[1:])
    for shown in (mine, admin):
        assert f"run `{run_id}`" in shown and "*ask*: ok (slash by <@U0ALICE01>)" in shown
        assert "1 model call" in shown and ":thumbsup: 0 :thumbsdown: 0" in shown
    assert other.startswith(f"No run `{run_id}` that you may see.")


def test_me_shows_my_week_only_to_me(sandbox, ledger, serve):
    served = serve(make_app(sandbox, ledger, agents(sandbox, ASK)))
    served.command(sandbox, "standup")
    served.command(sandbox, "ask hi")
    served.idle()
    served.command(sandbox, "ask again", user="U0BOB0002")
    served.idle()
    # bob found alice's digest useful; a nightly run of an agent she owns, by her email
    from datetime import UTC, datetime

    from tests.ledger.helpers import record

    posted = ledger.run_of_outcome(
        f"C0PAYSTAND:{sandbox.slack.posted_to('#payments-standup')[0].ts}", "slack.message"
    )
    ledger.add_feedback(posted, "U0BOB0002", 1)
    ledger.write_records(
        [record(agent="nightly", owner="alice@example.com", started_at=datetime.now(UTC))]
    )
    served.command(sandbox, "me")
    served.idle()
    mine = response_posts(sandbox)[-1]
    assert mine["response_type"] == "ephemeral"
    shown = texts(mine)
    assert "only you see this" in shown
    assert "• ask: 1 run, 1 with an outcome · 0 accepted · 0 min evidenced of" in shown
    assert (
        "• standup-digest: 1 run, 1 with an outcome · 1 accepted · 15 min evidenced of 15 claimed"
        in shown
    )
    assert "• nightly: 1 run, 1 with an outcome · 0 accepted" in shown
    assert "*Total*: 3 runs, 3 with an outcome · 1 accepted · 15 min evidenced of" in shown


def test_report_follows_the_privacy_rules(sandbox, ledger, serve):
    specs = agents(sandbox, ASK)
    served = serve(make_app(sandbox, ledger, specs, privacy={"admins": ["dave@example.com"]}))
    served.command(sandbox, "ask hi")
    served.command(sandbox, "ask hi", user="U0BOB0002")
    served.idle()
    # erin: two people is fewer than 5, and neither run is hers (alice, the owner of ask,
    # sees its runs: her Slack id is linked to her email)
    served.command(sandbox, "report", user="U0ERIN005")
    served.command(sandbox, "report payments", user="U0DAVE004")  # a privacy admin, by email
    served.idle()
    withheld, admin = (texts(m) for m in response_posts(sandbox)[2:])
    assert "Withheld: too few people" in withheld
    assert "*Ledger report* by agent for team payments" in admin
    assert "ask" in admin and "runs" in admin
    header = next(line for line in admin.splitlines() if line.startswith("group"))
    assert header.split()[1:5] == ["accepted", "$/accepted", "min", "claimed"]
    assert header.index("min evidenced") < header.index("tokens")


OPS_NOTES = """\
name: ops-notes
owner: carol@example.com
team: ops
model: offline
instructions: Note it.
triggers:
  - slash: ops-notes
value: {tag: toil-reduction}
"""


def test_report_of_a_team_counted_in_other(sandbox, ledger, serve):
    specs = agents(sandbox, ASK, SECRET_AGENT, OPS_NOTES)
    app = make_app(sandbox, ledger, specs, privacy={"min_group_size": 2})
    served = serve(app)
    served.command(sandbox, "ask hi")
    served.command(sandbox, "ask hi", user="U0BOB0002")
    served.command(sandbox, "payroll", user="U0ERIN005")
    served.command(sandbox, "ops-notes", user="U0CAROL03")
    served.idle()
    served.command(sandbox, "report")
    served.command(sandbox, "report people month")
    served.command(sandbox, "report payments")
    served.idle()
    teams, people, payments = (texts(m) for m in response_posts(sandbox)[4:])
    assert "\npayments " in teams and "\nother " in teams and "\npeople " not in teams
    assert "2 small groups are counted in 'other'" in teams
    assert "Team people has no runs you may see" in people
    assert "counted only in 'other'" in people
    assert "by agent for team payments" in payments and "\nask " in payments


def test_flags_with_none_raised_say_whose_they_are(sandbox, ledger, serve):
    app = make_app(sandbox, ledger, agents(sandbox, ASK), slack={"admins": ["U0DAVE004"]})
    served = serve(app)
    served.command(sandbox, "flags")
    served.command(sandbox, "flags", user="U0DAVE004")
    served.idle()
    mine, admin = (texts(m) for m in response_posts(sandbox))
    assert mine.startswith("No tokenmaxxing flags this week: none on runs you own or triggered")
    assert "(flags on runs owned or triggered by alice@example.com)" in mine
    assert admin.startswith("No tokenmaxxing flags this week: every rule passed (every flag")


def test_flags_name_the_looper_the_dollars_and_the_fix(sandbox, ledger, serve):
    from datetime import UTC, datetime, timedelta

    from tests.ledger.helpers import cost, record

    now = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    ledger.write_records(
        [
            record(
                agent="helper",
                owner="alice@example.com",
                trigger_kind="slash",
                triggered_by="U0BOB0002",
                started_at=now + timedelta(minutes=15 * i),
                scheduled_for=None,
                input_hash=f"h{i}",
                cost=cost("0.10"),
            )
            for i in range(30)
        ]
    )
    app = make_app(sandbox, ledger, agents(sandbox, ASK), slack={"admins": ["U0DAVE004"]})
    served = serve(app)
    served.command(sandbox, "flags", user="U0DAVE004")
    served.idle()
    [shown] = (texts(m) for m in response_posts(sandbox))
    assert "every flag (admin:" in shown
    assert "*$3.00* *slash_loop* helper (owner alice@example.com; by " in shown
    assert "_Innocent:_ " in shown and "_Fix:_ " in shown

    # Not an admin: the flags on runs they own (alice) or triggered (bob), and nobody else's.
    served.command(sandbox, "flags", user="U0ALICE01")
    served.command(sandbox, "flags", user="U0BOB0002")
    served.command(sandbox, "flags", user="U0ERIN005")
    served.idle()
    owner, looper, other = (texts(m) for m in response_posts(sandbox)[1:])
    assert "(flags on runs owned or triggered by alice@example.com)" in owner
    assert "(flags on runs owned or triggered by bob@example.com)" in looper
    for shown in (owner, looper):
        assert "*$3.00* *slash_loop* helper (owner alice@example.com; by " in shown
    assert "none on runs you own or triggered" in other and "slash_loop" not in other


def test_a_spent_response_url_falls_back_to_an_ephemeral_message(sandbox, ledger, serve):
    import httpx

    served = serve(make_app(sandbox, ledger, agents(sandbox, ASK)))
    payload = command(sandbox, "ask hi")
    for _ in range(5):  # someone used all five posts of this response_url
        httpx.post(payload["response_url"], json={"text": "x"})
    served.post(form(payload))
    served.idle()
    [shown] = sandbox.slack.ephemeral_to("alice")
    assert shown.channel == "C0PAYMENTS" and "ask finished" in shown.text


def test_a_failing_run_is_reported_and_the_app_keeps_serving(sandbox, ledger, serve):
    model = ScriptedChatModel(responses=[ValueError("provider exploded"), "Fine now."])
    served = serve(make_app(sandbox, ledger, agents(sandbox, ASK), chat_model=model))
    served.command(sandbox, "ask one")
    served.idle()
    served.command(sandbox, "ask two")
    served.idle()
    failed, fine = response_posts(sandbox)
    assert ":x: *ask* failed: ValueError: provider exploded" in texts(failed)
    assert not any(b.get("block_id") == "meshagent_feedback" for b in failed["blocks"])
    assert "Fine now." in texts(fine)


def test_a_user_may_not_flood_the_fleet(sandbox, ledger, serve):
    model = ScriptedChatModel(responses=["a", "b", "c", "d"], latency=1.0)
    app = make_app(sandbox, ledger, agents(sandbox, ASK), chat_model=model)
    served = serve(app)
    acks = [_ack_text(served.command(sandbox, f"ask q{n}")) for n in range(4)]
    assert all("running ask" in a for a in acks[:3])
    assert "You already have 3 runs in progress" in acks[3]
    served.idle()
    assert ledger.count() == 3


def test_a_slow_lookup_is_finished_after_the_ack(sandbox, ledger, serve):
    app = make_app(sandbox, ledger, agents(sandbox, ASK))
    app.commands.ack_seconds = 0.1
    served = serve(app)
    sandbox.slack_faults.latency = 0.25  # users.info and usergroups.list miss the ack budget
    bob = served.command(sandbox, "ask hi", user="U0BOB0002")
    carol = served.command(sandbox, "ask hi", user="U0CAROL03")
    assert "running ask" in _ack_text(bob) and "running ask" in _ack_text(carol)
    served.idle()
    answers = {p["text"][:40] for p in response_posts(sandbox)}
    assert any("ask finished" in a for a in answers)
    [refusal] = [p for p in response_posts(sandbox) if ":no_entry:" in p["text"]]
    assert "may be run only by U0ALICE01, @bob, @oncall" in refusal["text"]
    assert ledger.count() == 1


STATUS_AGENT = """\
name: status-page
description: The status page digest.
owner: ops@example.com
team: platform
model: offline
instructions: Summarise.
triggers:
  - slash: status
value: {tag: toil-reduction}
"""


def test_a_slash_name_taken_by_a_subcommand_or_slack_runs_with_run(sandbox, ledger, serve):
    served = serve(make_app(sandbox, ledger, agents(sandbox, STATUS_AGENT)))
    served.command(sandbox, "list")
    served.idle()
    [listed] = response_posts(sandbox)
    assert "`/meshagent run status`: The status page digest." in texts(listed)
    assert "`/status`" not in texts(listed)  # Slack keeps /status for itself
    assert "Agent commands: `/standup`\n" in _ack_text(served.command(sandbox, "help")) + "\n"
    assert "Which run?" in _ack_text(served.command(sandbox, "status"))
    assert "running status-page" in _ack_text(served.command(sandbox, "run status"))
    served.idle()
    assert ledger.count() == 1


def test_report_ranks_agents_by_value_per_dollar(sandbox, ledger, serve):
    """`/meshagent report TEAM` shows value per dollar after the headline, lists the agents by
    it (value.headline's figure) and says what it means."""
    from datetime import UTC, datetime, timedelta

    from meshagent.ledger import render, value
    from meshagent.ledger.periods import Period
    from tests.ranked_agents import write_ranked

    week = Period.named("week")
    monday = datetime.combine(week.start, datetime.min.time(), tzinfo=UTC)
    write_ranked(ledger, monday, step=timedelta(minutes=30))
    figures = {row.group: row.value_per_dollar for row in value.headline(ledger, period=week)}
    assert figures["used"] > figures["fresh"] > figures["noise"]
    served = serve(make_app(sandbox, ledger, [], privacy={"admins": ["dave@example.com"]}))
    served.command(sandbox, "report ranked", user="U0DAVE004")
    served.idle()
    [shown] = (texts(m) for m in response_posts(sandbox))
    lines = shown.splitlines()
    header = next(line for line in lines if line.startswith("group"))
    assert header.index("min evidenced") < header.index("value/$") < header.index("cost")
    at = header.split().index("value/$") - 2  # "min claimed", "min evidenced": two words each
    rows = [line.split() for line in lines if line.split()[:1] and line.split()[0] in figures]
    assert [row[0] for row in rows] == sorted(figures, key=lambda name: -figures[name])
    assert all(row[at] == render.per_dollar(figures[row[0]]) for row in rows)
    assert "value/$: evidenced minutes per dollar, weighted by how much evidence" in shown
