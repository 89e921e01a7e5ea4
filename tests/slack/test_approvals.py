"""Approvals in Slack: the request as it would land, decided by a click through the real Bolt app
under uvicorn (signed interaction payloads), executed once, recorded as the run's outcome."""

from __future__ import annotations

import json
import threading

from meshagent.ledger import approvals as store
from meshagent.ledger.store import Ledger
from tests.ledger.conftest import (  # noqa: F401 (fixtures)
    ledger_pair,
    ledger_url,
    pg_schema_url,
    pg_shared,
    sqlite_url,
)
from tests.slack.approvals_kit import (
    NUDGE,
    approval_click,
    asked_value,
    nudge,
    reason_submission,
    reject_click,
)
from tests.slack.conftest import interaction, make_app, serve, sign, texts

__all__ = ["serve"]


def _outcome(ledger: Ledger, run_id: str) -> tuple[str, str, str, list]:
    from sqlalchemy import select

    from meshagent.ledger.schema import outcomes

    query = select(outcomes.c.kind, outcomes.c.ref, outcomes.c.verdict, outcomes.c.evidence)
    [row] = ledger.read(lambda c: c.execute(query.where(outcomes.c.run_id == run_id)).all())
    return row.kind, row.ref, row.verdict, json.loads(row.evidence or "[]")


def test_the_request_shows_the_exact_payload_agent_trigger_and_cost(sandbox, ledger, serve):
    served = serve(make_app(sandbox, ledger, []))
    result = served.run(served.app.runtime.run(nudge(sandbox), triggered_by="erin@example.com"))
    assert sandbox.jira.comments_added == []  # staged, not written
    [approval] = result.staged
    assert approval.payload == {"key": "PAY-8", "body": "Is this still on track?"}
    for user in ("dave", "bob"):  # the owner and the listed approver, each in a DM
        [asked] = sandbox.slack.dms_to(user)
        shown = texts({"text": asked.text, "blocks": asked.blocks})
        assert "Comment on PAY-8" in shown and ">Is this still on track?" in shown
        assert '"key": "PAY-8"' in shown  # the exact payload, as JSON
        assert "*nudge*" in shown and "erin@example.com" in shown and "$0.0000" in shown
        [buttons] = [b for b in asked.blocks if b["type"] == "actions"]
        assert [e["value"] for e in buttons["elements"]] == [
            f"{approval.id}:{approval.payload_hash}"
        ] * 2
    kind, _, verdict, _ = _outcome(ledger, result.run_id)
    assert (kind, verdict) == ("staged", "pending")
    assert ledger.entry(result.run_id)["status"] == "ok"


def test_an_approval_executes_the_write_once_and_updates_every_request(sandbox, ledger, serve):
    served = serve(make_app(sandbox, ledger, [spec := nudge(sandbox)]))
    result = served.run(served.app.runtime.run(spec))
    channel, ts, value = asked_value(sandbox, "dave")
    bobs = asked_value(sandbox, "bob")
    answer = served.post(interaction(approval_click(sandbox, value, user="U0DAVE004",
                                                    channel=channel, ts=ts)))  # fmt: skip
    assert answer.status_code == 200
    served.idle()
    assert sandbox.jira.comments_added == [("PAY-8", "Is this still on track?")]
    [approval] = store.of_run(ledger, result.run_id)
    assert (approval.status, approval.decided_by) == ("executed", "U0DAVE004")
    assert len(sandbox.slack.updated) == 2  # dave's request and bob's
    assert all("Approved by <@U0DAVE004>" in u.text for u in sandbox.slack.updated)
    assert not any(b["type"] == "actions" for u in sandbox.slack.updated for b in u.blocks)
    kind, ref, verdict, evidence = _outcome(ledger, result.run_id)
    assert (kind, verdict) == ("jira.comment", "accepted") and ref.startswith("PAY-8")
    assert evidence[0]["who"] == "U0DAVE004" and evidence[0]["what"] == "approval:approved"
    # bob clicks his own request afterwards: already decided, nothing more is written
    served.post(interaction(approval_click(sandbox, bobs[2], user="U0BOB0002", channel=bobs[0])))
    served.idle()
    assert len(sandbox.jira.comments_added) == 1
    [said] = sandbox.slack.ephemeral_to("bob")
    assert "already decided: executed by U0DAVE004" in said.text


def test_a_rejection_asks_why_and_records_a_rejected_outcome(sandbox, ledger, serve):
    served = serve(make_app(sandbox, ledger, [spec := nudge(sandbox)]))
    result = served.run(served.app.runtime.run(spec))
    channel, ts, value = asked_value(sandbox, "bob")
    served.post(interaction(reject_click(sandbox, value, user="U0BOB0002", channel=channel)))
    served.idle()
    [opened] = sandbox.slack.views  # the modal that asks for a reason
    assert store.of_run(ledger, result.run_id)[0].status == "pending"
    submitted = reason_submission(sandbox, opened["view"], user="U0BOB0002",
                                  reason="PAY-8 is parked on purpose")  # fmt: skip
    assert served.post(interaction(submitted)).status_code == 200
    served.idle()
    assert sandbox.jira.comments_added == []
    [approval] = store.of_run(ledger, result.run_id)
    assert (approval.status, approval.reason) == ("rejected", "PAY-8 is parked on purpose")
    assert all("Rejected by <@U0BOB0002>: PAY-8 is parked" in u.text for u in sandbox.slack.updated)
    kind, _, verdict, evidence = _outcome(ledger, result.run_id)
    assert (kind, verdict) == ("staged", "rejected")
    assert evidence[0]["reason"] == "PAY-8 is parked on purpose"


def test_two_replicas_clicked_at_once_write_once(sandbox, ledger_pair, serve):  # noqa: F811
    spec = nudge(sandbox)
    one, two = (serve(make_app(sandbox, ledger, [spec])) for ledger in ledger_pair)
    for _ in range(3):  # three requests, each approved by dave on one replica, bob on the other
        one.run(one.app.runtime.run(spec))
        dave, bob = asked_value(sandbox, "dave"), asked_value(sandbox, "bob")
        barrier = threading.Barrier(2)

        def click(served, user, asked, barrier=barrier):
            body = interaction(approval_click(sandbox, asked[2], user=user, channel=asked[0]))
            barrier.wait()
            served.post(body)

        threads = [
            threading.Thread(target=click, args=(one, "U0DAVE004", dave)),
            threading.Thread(target=click, args=(two, "U0BOB0002", bob)),
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        one.idle()
        two.idle()
    assert len(sandbox.jira.comments_added) == 3  # one per request, never two
    approvals = store.listing(ledger_pair[0])
    assert sorted(a.status for a in approvals) == ["executed"] * 3
    assert {a.decided_by for a in approvals} <= {"U0DAVE004", "U0BOB0002"}


def test_a_channel_is_asked_once_and_only_listed_people_decide_there(sandbox, ledger, serve):
    text = NUDGE.replace("by: [owner, bob@example.com]", 'by: ["@leads"]').replace(
        "expires_after: 1h", 'expires_after: 1h\n  ask: "#payments"'
    )
    sandbox.slack.add_usergroup("leads", ["bob"])
    spec = nudge(sandbox, text)
    served = serve(make_app(sandbox, ledger, [spec]))
    result = served.run(served.app.runtime.run(spec))
    [asked] = sandbox.slack.posted_to("#payments")  # one request, in the channel
    assert sandbox.slack.dms_to("bob") == [] and "Comment on PAY-8" in asked.text
    [buttons] = [b for b in asked.blocks if b["type"] == "actions"]
    value = buttons["elements"][0]["value"]
    # erin is in the channel, not in @leads: refused where she clicked, to her only
    served.post(interaction(approval_click(sandbox, value, user="U0ERIN005", channel="C0PAYMENTS")))
    served.idle()
    assert "may not decide" in sandbox.slack.ephemeral_to("erin")[0].text
    assert sandbox.jira.comments_added == []
    served.post(interaction(approval_click(sandbox, value, user="U0BOB0002", channel="C0PAYMENTS")))
    served.idle()
    assert sandbox.jira.comments_added == [("PAY-8", "Is this still on track?")]
    [approval] = store.of_run(ledger, result.run_id)
    assert (approval.status, approval.decided_by) == ("executed", "U0BOB0002")
    [updated] = sandbox.slack.updated
    assert (updated.channel, updated.ts) == ("C0PAYMENTS", asked.ts)


def test_a_slash_run_says_which_writes_wait_for_approval(sandbox, ledger, serve):
    from tests.slack.conftest import response_posts

    spec = nudge(sandbox, NUDGE + "triggers:\n  - slash: nudge\n")
    served = serve(make_app(sandbox, ledger, [spec]))
    served.command(sandbox, "nudge", user="U0ERIN005")
    served.idle()
    [approval] = store.listing(ledger)
    said = texts(response_posts(sandbox)[-1])
    assert "1 write waits for approval (asked in Slack" in said and approval.id in said
    [asked] = sandbox.slack.dms_to("dave")
    assert "triggered by <@U0ERIN005>" in texts({"text": "", "blocks": asked.blocks})


def test_serve_expires_unanswered_requests_and_says_so_in_slack(sandbox, ledger, tmp_path, serve):
    import time
    from datetime import UTC, datetime, timedelta

    from meshagent.config import Config
    from meshagent.fleet.server import create_app
    from meshagent.runtime.runner import Runtime

    spec = nudge(sandbox)
    staging = serve(make_app(sandbox, ledger, [spec]))
    result = staging.run(staging.app.runtime.run(spec))
    (tmp_path / "agents").mkdir()
    config = Config(root=tmp_path, ledger_url=ledger.url)
    later = datetime.now(UTC) + timedelta(hours=2)  # past the request's hour
    runtime = Runtime(config, ledger=ledger, env=sandbox.env(), clock=lambda: later)
    app = create_app(config, runtime=runtime, agents_dir=tmp_path / "agents", slack=False,
                     dashboard=False)  # fmt: skip
    from starlette.testclient import TestClient

    with TestClient(app):
        deadline = time.monotonic() + 10
        while len(sandbox.slack.updated) < 2:  # expired, then both requests updated
            assert time.monotonic() < deadline, "serve did not expire the request"
            time.sleep(0.05)
    [approval] = store.of_run(ledger, result.run_id)
    assert approval.status == "expired"
    assert len(sandbox.slack.updated) == 2
    assert all("Expired unanswered" in u.text for u in sandbox.slack.updated)


def test_one_click_delivered_to_both_replicas_writes_once(sandbox, ledger_pair, serve):  # noqa: F811
    spec = nudge(sandbox)
    one, two = (serve(make_app(sandbox, ledger, [spec])) for ledger in ledger_pair)
    one.run(one.app.runtime.run(spec))
    channel, ts, value = asked_value(sandbox, "dave")
    body = interaction(approval_click(sandbox, value, user="U0DAVE004", channel=channel, ts=ts))
    headers = sign(body)
    barrier = threading.Barrier(2)
    codes: list[int] = []

    def deliver(served) -> None:
        barrier.wait()
        codes.append(served.post(body, headers=headers, signed=False).status_code)

    threads = [threading.Thread(target=deliver, args=(s,)) for s in (one, two)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    one.idle()
    two.idle()
    assert sorted(codes) == [200, 401]  # the signature is claimed once, across the fleet
    assert len(sandbox.jira.comments_added) == 1
