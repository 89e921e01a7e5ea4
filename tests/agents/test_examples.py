"""Every example agent, tested with the meshagent.testing kit as an agent author would:
against the sandbox, with the offline model and with a scripted one."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

AGENTS = Path(__file__).resolve().parents[2] / "agents"


def test_stale_ticket_nudger_dms_lists_and_stages_its_comments(run_agent_file, sandbox, ledger):
    result = run_agent_file(AGENTS / "stale-ticket-nudger.yaml")
    assert result.status == "ok", result.error
    stale = ["PAY-8", "PAY-5", "PAY-6"]  # untouched 25, 21 and 16 days, oldest first
    # The comments wait for the owner's approval, each with its exact payload ...
    assert sandbox.jira.comments_added == []
    assert [a.payload["key"] for a in result.staged] == stale
    assert all("No update for 14+ days" in a.payload["body"] for a in result.staged)
    asks = sandbox.slack.dms_to("dave")  # the owner, asked in a DM for each
    assert [a.text for a in asks] == [f"stale-ticket-nudger asks to Comment on {k}" for k in stale]
    # ... while the DMs and the list go out: PAY-8 has no assignee, so no DM for it.
    assert [p.text.split(" ")[0] for p in sandbox.slack.dms_to("bob")] == ["PAY-5"]
    assert [p.text.split(" ")[0] for p in sandbox.slack.dms_to("alice")] == ["PAY-6"]
    [listing] = sandbox.slack.posted_to("#payments")
    assert all(key in listing.text for key in stale) and "PAY-2" not in listing.text
    assert sorted(o.kind for o in result.outcomes) == ["slack.message"] * 3
    assert result.entry["status"] == "ok"
    # The owner approves one and rejects another: one comment, written once.
    from meshagent.agentfile.loader import load_agent
    from meshagent.approvals.staged import decide
    from meshagent.config import Config
    from meshagent.runtime.runner import Runtime

    runtime = Runtime(Config(ledger_url=ledger.url), ledger=ledger, env=sandbox.env())

    async def owner(approval) -> bool:
        return True

    spec = load_agent(AGENTS / "stale-ticket-nudger.yaml", env=sandbox.env())

    async def decisions() -> list[str]:
        pairs = zip(result.staged, ("approved", "rejected"), strict=False)
        return [(await decide(runtime, approval.id, decision=decision, who="dave@example.com",
                              listed=owner, find_spec=lambda name: spec)).code
                for approval, decision in pairs]  # fmt: skip

    assert asyncio.run(decisions()) == ["executed", "rejected"]
    assert [key for key, _ in sandbox.jira.comments_added] == ["PAY-8"]


def test_stale_ticket_nudger_threshold_is_an_input(run_agent_file, sandbox):
    result = run_agent_file(AGENTS / "stale-ticket-nudger.yaml", inputs={"days": "22"})
    assert [a.payload["key"] for a in result.staged] == ["PAY-8"]
    assert result.status == "ok"


def test_stale_ticket_nudger_dry_run_writes_nothing(run_agent_file, sandbox):
    result = run_agent_file(AGENTS / "stale-ticket-nudger.yaml", dry_run=True)
    assert sandbox.jira.writes() == [] and sandbox.slack.writes() == []
    assert len(result.outcomes) == 6 and all(o.planned for o in result.outcomes)


def test_incident_summary_replies_in_the_thread(run_agent_file, sandbox):
    incident = sandbox.slack.messages["C0INCIDENT"][0]
    result = run_agent_file(AGENTS / "incident-summary.yaml", inputs={"thread": incident["ts"]})
    assert result.status == "ok", result.error
    [reply] = sandbox.slack.posted_to("#incidents")
    assert reply.thread_ts == incident["ts"]
    assert "Rolled back gateway" in reply.text or "rolled back" in reply.text.lower()


def test_incident_summary_with_a_scripted_model_sees_the_whole_thread(
    run_agent_file, sandbox, scripted_model
):
    incident = sandbox.slack.messages["C0INCIDENT"][0]
    model = scripted_model(["502s in eu-west for 40 min; rolled back; postmortem: carol."])
    run_agent_file(AGENTS / "incident-summary.yaml", inputs={"thread": incident["ts"]},
                   model=model)  # fmt: skip
    prompt = model.calls[0][-1].content
    assert "connection pool limit halved" in prompt and "Postmortem owner: carol" in prompt
    assert sandbox.slack.posted_to("#incidents")[0].text.startswith("502s in eu-west")


def test_incident_summary_needs_its_thread(run_agent_file):
    from meshagent.exceptions import RunError

    with pytest.raises(RunError, match="input 'thread' is required"):
        run_agent_file(AGENTS / "incident-summary.yaml")


def test_release_notes_cover_the_fix_version_only(run_agent_file, sandbox):
    result = run_agent_file(AGENTS / "release-notes.yaml", inputs={"version": "2026.12"})
    assert result.status == "ok", result.error
    [notes] = sandbox.slack.posted_to("#releases")
    for key in ("PAY-1", "PAY-2", "PAY-3", "PAY-4", "PAY-7"):
        assert key in notes.text
    assert "PAY-5" not in notes.text and "PAY-6" not in notes.text


def test_weekly_value_report_posts_the_ledgers_numbers(run_agent_file, sandbox, ledger):
    from datetime import UTC, datetime, timedelta
    from decimal import Decimal

    from meshagent.ledger.records import Cost, Usage

    last_week = datetime.now(UTC) - timedelta(days=7)
    for number in range(6):  # six people of one team, so the team is not folded away
        run_id = ledger.open_run("standup-digest", owner=f"p{number}@example.com",
                                 team="payments", minutes_saved=15,
                                 started_at=last_week)  # fmt: skip
        ledger.close_run(
            run_id,
            "ok",
            usage=Usage(input_tokens=1000, output_tokens=100, model_calls=1),
            cost=Cost(Decimal("0.01"), Decimal(0), Decimal("0.002")),
            outcomes=[],
            finished_at=last_week,
        )
        ledger.add_outcome(run_id, "slack.message", f"C0PAYSTAND:{number}.0")
        if number < 2:  # a reader replied to two of the digests
            from meshagent.ledger import verdicts

            (outcome,) = verdicts.outcome_ids(ledger, [run_id])[run_id]
            verdicts.judge_many(
                ledger,
                {outcome: [verdicts.Evidence("lead@example.com", "reply", last_week)]},
                checked_at=last_week + timedelta(days=1),
            )
    model_result = run_agent_file(AGENTS / "weekly-value-report.yaml")
    assert model_result.status == "ok", model_result.error
    [post] = sandbox.slack.posted_to("#eng-leads")
    assert "payments" in post.text
    line = next(line for line in post.text.splitlines() if line.startswith("- payments:"))
    # the headline leads: two messages a reader took up, minutes evidenced beside claimed
    # 6 x $0.012 over two accepted outcomes
    assert line.index("accepted outcomes 2") < line.index("cost per accepted outcome usd 0.0360")
    assert line.index("0.0360") < line.index("minutes saved evidenced 30.0")
    # value per dollar beside them; then the detail (the offline digest cuts a long line)
    assert line.index("minutes saved claimed 90.0") < line.index("value per dollar")
    assert line.index("value per dollar") < line.index("cost us")
    from meshagent.ledger import value
    from meshagent.ledger.periods import Period

    week = Period.week(datetime.now(UTC).date() - timedelta(days=7))
    (ranked,) = value.headline(ledger, period=week, by="team")
    assert f"value per dollar {float(ranked.value_per_dollar)}" in line
    assert "evidenced minutes per dollar, weighted by how much evidence there is" in post.text
    assert "honest adoption people 2" in post.text
    assert model_result.entry["trigger_kind"] == "api"
