"""Attack corpus: approval clicks that must do nothing (no write, no decision), whoever sends them
and however they are bent: a person not listed, a payload changed after it was shown, a click
replayed, a click after the request expired.

Every click is a signed interaction payload to the real Bolt app under uvicorn, the request
staged by a real run against the sandbox; "nothing" is checked in the sandbox's Jira (no
comment), in the ledger (still pending, or as it was) and in Slack (no update of the request).
"""

from __future__ import annotations

import time
from datetime import timedelta

from sqlalchemy import update

from meshagent.approvals.asks import expire_pass
from meshagent.ledger import approvals as store
from meshagent.ledger.schema import approvals as approvals_table
from tests.slack.approvals_kit import (
    approval_click,
    asked_value,
    nudge,
    reject_click,
    stage_one,
)
from tests.slack.conftest import interaction, make_app, serve, sign

__all__ = ["serve"]


def _nothing_written(sandbox, ledger, approval, status: str = "pending") -> None:
    assert sandbox.jira.comments_added == []
    assert store.get(ledger, approval.id).status == status
    if status == "pending":
        assert sandbox.slack.updated == []


def _served(sandbox, ledger, serve):
    spec = nudge(sandbox)
    served = serve(make_app(sandbox, ledger, [spec]))
    return served, stage_one(served, spec)


def test_a_person_not_listed_is_refused_with_an_ephemeral_reason(sandbox, ledger, serve):
    served, approval = _served(sandbox, ledger, serve)
    channel, ts, value = asked_value(sandbox, "dave")  # carol got hold of dave's message
    for clicked in (approval_click, reject_click):
        served.post(interaction(clicked(sandbox, value, user="U0CAROL03", channel=channel)))
        served.idle()
    _nothing_written(sandbox, ledger, approval)
    assert sandbox.slack.views == []  # no reason modal for a reject by someone not listed
    said = [e.text for e in sandbox.slack.ephemeral_to("carol")]
    assert len(said) == 2 and all("may not decide request" in text for text in said)
    assert all("dave@example.com, bob@example.com" in text for text in said)


def test_a_click_on_another_payload_hash_does_nothing(sandbox, ledger, serve):
    served, approval = _served(sandbox, ledger, serve)
    channel, _, value = asked_value(sandbox, "dave")
    forged = value[:-64] + ("0" * 64)
    served.post(interaction(approval_click(sandbox, forged, user="U0DAVE004", channel=channel)))
    served.idle()
    _nothing_written(sandbox, ledger, approval)
    [said] = sandbox.slack.ephemeral_to("dave")
    assert "payload is not the one shown to you: nothing was done" in said.text


def test_a_payload_changed_in_the_ledger_after_it_was_shown_is_never_written(
    sandbox, ledger, serve
):
    served, approval = _served(sandbox, ledger, serve)
    channel, _, value = asked_value(sandbox, "dave")
    changed = approval.payload_text.replace("PAY-8", "PAY-1")
    ledger.transact(
        lambda c: c.execute(
            update(approvals_table)
            .where(approvals_table.c.id == approval.id)
            .values(payload=changed)
        ),
        what="tamper",
    )
    served.post(interaction(approval_click(sandbox, value, user="U0DAVE004", channel=channel)))
    served.idle()
    _nothing_written(sandbox, ledger, approval)
    assert "not the one shown" in sandbox.slack.ephemeral_to("dave")[0].text


def test_a_malformed_button_value_or_user_is_ignored(sandbox, ledger, serve):
    served, approval = _served(sandbox, ledger, serve)
    channel, _, value = asked_value(sandbox, "dave")
    for bad in (f"{approval.id}' OR 1=1:{value[-64:]}", value + "x", value.upper()):
        served.post(interaction(approval_click(sandbox, bad, user="U0DAVE004", channel=channel)))
    served.idle()
    _nothing_written(sandbox, ledger, approval)
    assert sandbox.slack.ephemeral_to("dave") == []


def test_a_replayed_click_does_nothing(sandbox, ledger, serve):
    served, approval = _served(sandbox, ledger, serve)
    channel, _, value = asked_value(sandbox, "bob")
    click = reject_click(sandbox, value, user="U0BOB0002", channel=channel)
    body = interaction(click)
    headers = sign(body)
    first = served.post(body, headers=headers, signed=False)
    served.idle()
    assert first.status_code == 200 and len(sandbox.slack.views) == 1  # asked why
    # the same signed request again: refused before Bolt sees it
    assert served.post(body, headers=headers, signed=False).status_code == 401
    # the same click signed anew (a replica that forgot the signature, or Socket Mode)
    again = served.post(body, headers=sign(body, timestamp=int(time.time()) - 2), signed=False)
    served.idle()
    assert again.status_code == 200
    assert len(sandbox.slack.views) == 1  # not acted on: the click was claimed once
    assert served.app.stats["approval_replays"] == 1
    _nothing_written(sandbox, ledger, approval)


def test_a_click_after_the_request_expired_does_nothing(sandbox, ledger, serve):
    served, approval = _served(sandbox, ledger, serve)
    channel, _, value = asked_value(sandbox, "dave")
    late = approval.expires_at + timedelta(seconds=1)
    served.app.runtime.now = lambda: late  # the click comes after expiry, before any pass
    served.post(interaction(approval_click(sandbox, value, user="U0DAVE004", channel=channel)))
    served.idle()
    _nothing_written(sandbox, ledger, approval, status="expired")
    assert "expired" in sandbox.slack.ephemeral_to("dave")[0].text
    assert all("Expired unanswered" in u.text for u in sandbox.slack.updated)


def test_the_expiry_pass_expires_once_and_says_so_in_every_request(sandbox, ledger, serve):
    served, approval = _served(sandbox, ledger, serve)
    runtime = served.app.runtime
    assert served.run(expire_pass(runtime, now=approval.expires_at - timedelta(seconds=1))) == []
    late = approval.expires_at + timedelta(minutes=1)
    [expired] = served.run(expire_pass(runtime, now=late))
    assert expired.id == approval.id and served.run(expire_pass(runtime, now=late)) == []
    assert len(sandbox.slack.updated) == 2  # dave's and bob's requests
    entry_outcomes = ledger.outcomes(approval.run_id)
    assert [o.kind for o in entry_outcomes] == ["staged"]
    _nothing_written(sandbox, ledger, approval, status="expired")


def test_a_display_name_set_to_an_approvers_handle_is_not_the_approver(sandbox, ledger, serve):
    from tests.slack.approvals_kit import NUDGE

    spec = nudge(sandbox, NUDGE.replace("by: [owner, bob@example.com]", 'by: ["@bob"]'))
    served = serve(make_app(sandbox, ledger, [spec]))
    approval = stage_one(served, spec)
    channel, _, value = asked_value(sandbox, "bob")
    sandbox.slack.users["U0CAROL03"]["display_name"] = "bob"  # anyone may choose theirs
    served.post(interaction(approval_click(sandbox, value, user="U0CAROL03", channel=channel)))
    served.idle()
    _nothing_written(sandbox, ledger, approval)
    assert "may not decide" in sandbox.slack.ephemeral_to("carol")[0].text
    served.post(interaction(approval_click(sandbox, value, user="U0BOB0002", channel=channel)))
    served.idle()
    assert store.get(ledger, approval.id).status == "executed"
