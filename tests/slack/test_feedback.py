"""Feedback: buttons and reactions give one vote per person per run; events count once."""

from __future__ import annotations

import json

from sqlalchemy import select

from meshagent.ledger.schema import daily
from meshagent.ledger.schema import feedback as feedback_table
from tests.slack.conftest import (
    ASK,
    agents,
    click,
    event,
    interaction,
    make_app,
    response_posts,
    texts,
)


def votes(ledger, run_id: str) -> dict[str, int]:
    query = select(feedback_table.c.person, feedback_table.c.vote).where(
        feedback_table.c.run_id == run_id
    )
    return dict(ledger.read(lambda c: c.execute(query).all()))


def rollup(ledger, agent: str) -> tuple[int, int]:
    query = select(daily.c.feedback_pos, daily.c.feedback_neg).where(daily.c.agent == agent)
    rows = ledger.read(lambda c: c.execute(query).all())
    return sum(r[0] for r in rows), sum(r[1] for r in rows)


def _run_ask(sandbox, served) -> tuple[str, dict]:
    served.command(sandbox, "ask hi")
    served.idle()
    result = response_posts(sandbox)[-1]
    [buttons] = [b for b in result["blocks"] if b.get("block_id") == "meshagent_feedback"]
    return buttons["elements"][0]["value"], result


def test_a_second_click_changes_the_vote_and_never_counts_twice(sandbox, ledger, serve):
    served = serve(make_app(sandbox, ledger, agents(sandbox, ASK)))
    run_id, _ = _run_ask(sandbox, served)
    url = sandbox.response_url("C0PAYMENTS")  # the response_url of the result message
    for action in ("meshagent_feedback_up", "meshagent_feedback_down", "meshagent_feedback_down"):
        answer = served.post(interaction(click(sandbox, run_id, action, url=url)))
        assert answer.status_code == 200 and answer.text == ""
        served.idle()
    assert votes(ledger, run_id) == {"U0ALICE01": -1}
    assert rollup(ledger, "ask") == (0, 1)
    redrawn = sandbox.slack.response_urls[url.rsplit("/", 1)[1]].posts
    assert len(redrawn) == 3 and all(p["replace_original"] for p in redrawn)
    last = redrawn[-1]
    assert "You marked this not useful" in texts(last)
    assert "hi" in texts(last)  # the result is redrawn, not replaced by the note alone
    [buttons] = [b for b in last["blocks"] if b.get("block_id") == "meshagent_feedback"]
    assert [e.get("style") for e in buttons["elements"]] == [None, "danger"]


def test_each_person_has_one_vote(sandbox, ledger, serve):
    served = serve(make_app(sandbox, ledger, agents(sandbox, ASK)))
    run_id, _ = _run_ask(sandbox, served)
    served.post(interaction(click(sandbox, run_id, "meshagent_feedback_up")))
    served.post(interaction(click(sandbox, run_id, "meshagent_feedback_up", user="U0BOB0002")))
    served.post(interaction(click(sandbox, run_id, "meshagent_feedback_down", user="U0DAVE004")))
    served.idle()
    assert votes(ledger, run_id) == {"U0ALICE01": 1, "U0BOB0002": 1, "U0DAVE004": -1}
    assert rollup(ledger, "ask") == (2, 1)


def test_a_click_on_an_unknown_run_is_not_kept(sandbox, ledger, serve):
    served = serve(make_app(sandbox, ledger, agents(sandbox, ASK)))
    served.post(interaction(click(sandbox, "no-such-run", "meshagent_feedback_up")))
    served.idle()
    [said] = response_posts(sandbox)
    assert "not in the ledger" in said["text"]


def _delivered(sandbox, served) -> tuple[str, str]:
    served.command(sandbox, "standup")
    served.idle()
    [posted] = sandbox.slack.posted_to("#payments-standup")
    return posted.ts, served.app.ledger.run_of_outcome(f"C0PAYSTAND:{posted.ts}")


def _react(served, kind: str, reaction: str, ts: str, event_id: str, **headers: str):
    payload = event(
        kind, user="U0BOB0002", reaction=reaction, channel="C0PAYSTAND", ts=ts, event_id=event_id
    )
    return served.post(json.dumps(payload), content_type="application/json", headers=headers)


def test_a_reaction_on_a_delivered_message_is_a_vote(sandbox, ledger, serve):
    served = serve(make_app(sandbox, ledger, agents(sandbox)))
    ts, run_id = _delivered(sandbox, served)
    assert _react(served, "reaction_added", "+1", ts, "Ev1").status_code == 200
    served.idle()
    assert votes(ledger, run_id) == {"U0BOB0002": 1}
    _react(served, "reaction_added", "thumbsdown::skin-tone-3", ts, "Ev2")
    served.idle()
    assert votes(ledger, run_id) == {"U0BOB0002": -1}
    _react(served, "reaction_removed", "+1", ts, "Ev3")  # no longer the vote: kept
    served.idle()
    assert votes(ledger, run_id) == {"U0BOB0002": -1}
    _react(served, "reaction_removed", "-1", ts, "Ev4")
    served.idle()
    assert votes(ledger, run_id) == {}
    assert rollup(ledger, "standup-digest") == (0, 0)


def test_other_reactions_and_messages_are_ignored(sandbox, ledger, serve):
    app = make_app(sandbox, ledger, agents(sandbox))
    served = serve(app)
    ts, run_id = _delivered(sandbox, served)
    _react(served, "reaction_added", "tada", ts, "Ev1")
    _react(served, "reaction_added", "+1", "1700000000.000100", "Ev2")  # not a delivered message
    served.idle()
    assert votes(ledger, run_id) == {}
    assert app.stats["reactions"] == 0


def test_a_duplicate_or_retried_event_is_processed_once(sandbox, ledger, serve):
    app = make_app(sandbox, ledger, agents(sandbox))
    served = serve(app)
    ts, run_id = _delivered(sandbox, served)
    _react(served, "reaction_added", "+1", ts, "Ev1")
    served.idle()
    _react(served, "reaction_removed", "+1", ts, "Ev2")
    served.idle()
    assert votes(ledger, run_id) == {}
    # Slack delivers Ev1 again (its retry of a delivery it thinks failed): not re-applied.
    retry = {"X-Slack-Retry-Num": "1", "X-Slack-Retry-Reason": "http_error"}
    assert _react(served, "reaction_added", "+1", ts, "Ev1", **retry).status_code == 200
    assert _react(served, "reaction_added", "+1", ts, "Ev1").status_code == 200
    # A retry after a timeout: the first delivery reached the app, which acts on it.
    timeout = {"X-Slack-Retry-Num": "2", "X-Slack-Retry-Reason": "http_timeout"}
    assert _react(served, "reaction_added", "+1", ts, "Ev3", **timeout).status_code == 200
    served.idle()
    assert votes(ledger, run_id) == {}
    assert app.stats["reactions"] == 2 and app.stats["duplicate_events"] == 3
    # A retry of an event that never arrived (the connection failed) is processed.
    lost = {"X-Slack-Retry-Num": "1", "X-Slack-Retry-Reason": "connection_failed"}
    _react(served, "reaction_added", "-1", ts, "Ev4", **lost)
    served.idle()
    assert votes(ledger, run_id) == {"U0BOB0002": -1}


def test_clicks_count_in_the_order_they_were_made(sandbox, ledger, serve):
    """Slack may deliver a later click first: the vote cast last is the one kept."""
    app = make_app(sandbox, ledger, agents(sandbox, ASK))
    served = serve(app)
    run_id, _ = _run_ask(sandbox, served)
    later = click(sandbox, run_id, "meshagent_feedback_up")
    earlier = click(sandbox, run_id, "meshagent_feedback_down")
    earlier["actions"][0]["action_ts"] = "1700000000.000001"
    later["actions"][0]["action_ts"] = "1700000000.000002"
    served.post(interaction(later))
    served.post(interaction(earlier))
    served.idle()
    assert votes(ledger, run_id) == {"U0ALICE01": 1}
    assert app.stats["feedback"] == 1  # the earlier click came too late and was dropped
