"""The follow-up pass reads Slack messages back through slack_sdk against the sandbox."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import select

from meshagent.agentfile.loader import load_agent
from meshagent.config import Config
from meshagent.fleet.followup import follow_up
from meshagent.ledger.schema import outcomes
from tests.runtime.conftest import make_runtime, run

AGENT = Path(__file__).resolve().parents[2] / "agents" / "standup-digest.yaml"  # owner: alice


def deliver(sandbox, ledger, triggered_by: str | None = None) -> tuple[str, str]:
    result = run(make_runtime(sandbox, ledger), load_agent(AGENT), triggered_by=triggered_by)
    assert result.status == "ok", result.error
    [posted] = sandbox.slack.posted_to("#payments-standup")[-1:]
    return posted.channel, posted.ts


def check(sandbox, ledger, *, after: timedelta = timedelta(days=1, minutes=1), **options):
    now = datetime.now(UTC) + after
    config = Config(ledger_url=ledger.url)
    return asyncio.run(follow_up(ledger, config, env=sandbox.env(), now=now, **options))


def stored(ledger) -> tuple[str, list[dict]]:
    query = select(outcomes.c.verdict, outcomes.c.evidence)
    [(verdict, evidence)] = ledger.read(lambda c: c.execute(query).all())
    return verdict, json.loads(evidence or "[]")


def test_a_reaction_by_a_teammate_accepts_the_message(sandbox, ledger):
    channel, ts = deliver(sandbox, ledger)
    sandbox.slack.react(channel, ts, "eyes", "bob")
    done = check(sandbox, ledger)
    assert [c.verdict for c in done.checked] == ["accepted"]
    verdict, evidence = stored(ledger)
    assert verdict == "accepted"
    assert evidence == [
        {"who": "U0BOB0002", "what": "reaction:eyes", "when": None, "counted": True}
    ]


def test_the_owner_reacting_under_their_slack_id_does_not_count(sandbox, ledger):
    channel, ts = deliver(sandbox, ledger)
    sandbox.slack.react(channel, ts, "+1", "alice")  # the owner, alice@example.com
    sandbox.slack.reply(channel, ts, "alice", "thanks me")
    check(sandbox, ledger)
    verdict, evidence = stored(ledger)
    assert verdict == "pending"  # a day on: nothing counted yet
    assert {e["why"] for e in evidence} == {"owner or triggerer"}
    final = check(sandbox, ledger, after=timedelta(days=7, minutes=1))
    assert final.checked[0].verdict == "ignored"


def test_a_reply_by_another_person_and_by_the_triggerer(sandbox, ledger):
    channel, ts = deliver(sandbox, ledger, triggered_by="U0ERIN005")
    sandbox.slack.reply(channel, ts, "erin", "mine")  # the triggerer: left out
    sandbox.slack.reply(channel, ts, "dave", "Thanks, PAY-3 is on me")
    check(sandbox, ledger)
    verdict, evidence = stored(ledger)
    assert verdict == "accepted"
    counted = [(e["who"], e["what"]) for e in evidence if e["counted"]]
    assert counted == [("U0DAVE004", "reply")]


def test_a_deleted_message_is_rejected(sandbox, ledger):
    channel, ts = deliver(sandbox, ledger)
    sandbox.slack.react(channel, ts, "tada", "bob")
    sandbox.slack.delete(channel, ts)
    check(sandbox, ledger)
    assert stored(ledger)[0] == "rejected"


def test_thumbs_down_outweighing_thumbs_up_rejects(sandbox, ledger):
    channel, ts = deliver(sandbox, ledger)
    for person in ("bob", "dave"):
        sandbox.slack.react(channel, ts, "-1", person)
    sandbox.slack.react(channel, ts, "+1", "erin")
    check(sandbox, ledger)
    assert stored(ledger)[0] == "rejected"


def test_nothing_is_due_before_a_day_and_reads_are_read_only(sandbox, ledger):
    channel, ts = deliver(sandbox, ledger)
    before = sandbox.slack.writes()
    early = check(sandbox, ledger, after=timedelta(hours=23))
    assert early.checked == [] and early.calls == 0
    check(sandbox, ledger)
    assert sandbox.slack.writes() == before


def test_a_pass_stops_at_its_call_budget_and_the_rest_wait(sandbox, ledger):
    spec = load_agent(AGENT).model_copy(update={"skip_if_unchanged": False})
    runtime = make_runtime(sandbox, ledger)
    for _ in range(3):
        assert run(runtime, spec).status == "ok"
    first = check(sandbox, ledger, max_calls=3)  # auth.test, then one reactions.get each
    assert (len(first.checked), first.calls, first.left) == (2, 3, 1)
    second = check(sandbox, ledger, max_calls=3)
    assert len(second.checked) == 1  # the one left waiting; the others are checked till final


def test_the_cli_runs_one_pass_and_prints_each_verdict(sandbox, ledger, tmp_path, monkeypatch):
    from sqlalchemy import update
    from typer.testing import CliRunner

    from meshagent.cli.main import app

    channel, ts = deliver(sandbox, ledger)
    sandbox.slack.react(channel, ts, "white_check_mark", "dave")
    past = datetime.now(UTC) - timedelta(minutes=1)
    ledger.transact(lambda c: c.execute(update(outcomes).values(next_check_at=past)), what="t")
    monkeypatch.chdir(tmp_path)
    for name, value in sandbox.env().items():
        monkeypatch.setenv(name, value)
    done = CliRunner().invoke(
        app, ["ledger", "--ledger-url", ledger.url, "follow-up"], env={"COLUMNS": "200"}
    )
    assert done.exit_code == 0, done.output
    assert "accepted" in done.output and "reaction:white_check_mark by U0DAVE004" in done.output
    assert "1 outcome checked with 3 API calls." in done.output
    assert stored(ledger)[0] == "accepted"


def test_one_replica_claims_each_pass(ledger):
    from meshagent.fleet.followup import claim_pass

    slot = datetime(2026, 1, 5, 9, 15, tzinfo=UTC)
    every = timedelta(minutes=15)
    now = slot + timedelta(seconds=3)
    assert claim_pass(ledger, slot, every, now=now) is True
    assert claim_pass(ledger, slot, every, now=now) is False  # another replica: no pass
    assert claim_pass(ledger, slot + every, every, now=now + every) is True


def test_a_rate_limited_read_waits_for_retry_after_and_goes_on(sandbox, ledger):
    channel, ts = deliver(sandbox, ledger)
    sandbox.slack.react(channel, ts, "eyes", "bob")
    sandbox.slack_faults.fail_next(2, status=429, retry_after=0)
    done = check(sandbox, ledger)
    assert sandbox.slack_faults.failed == 2
    assert [c.verdict for c in done.checked] == ["accepted"]


def test_an_unreadable_outcome_stays_pending_and_the_pass_goes_on(sandbox, ledger):
    deliver(sandbox, ledger)
    sandbox.slack_faults.fail_next(20, status=500)
    done = check(sandbox, ledger)
    [checked] = done.checked
    assert checked.verdict is None and checked.error
    assert stored(ledger)[0] == "pending"


def test_the_checks_follow_the_settings(sandbox, ledger):
    deliver(sandbox, ledger)
    config = Config(
        ledger_url=ledger.url, followup={"first_check_hours": 1, "final_check_hours": 2}
    )

    def at(hours: float):
        now = datetime.now(UTC) + timedelta(hours=hours)
        return asyncio.run(follow_up(ledger, config, env=sandbox.env(), now=now)).checked

    assert at(0.9) == []
    assert [c.verdict for c in at(1.1)] == ["pending"]
    assert at(1.5) == []  # checked: next at the final check
    assert [c.verdict for c in at(2.1)] == ["ignored"]
    assert at(200) == []  # final: never again
