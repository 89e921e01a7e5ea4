"""A declared "nothing to report" delivers nothing and is recorded as a quiet result."""

from __future__ import annotations

import pytest

from meshagent.agentfile.loader import parse_agent
from meshagent.exceptions import SpecError
from meshagent.models import ScriptedChatModel
from tests.runtime.conftest import make_runtime, run

AGENT = """
name: nightly-check
owner: alice@example.com
team: payments
instructions: |
  Check the payments board. If nothing is blocked, answer exactly NOTHING_TO_REPORT.
deliver:
  - slack.post_message: {channel: "#payments"}
quiet_answer: NOTHING_TO_REPORT
value: {tag: toil-reduction, minutes_saved: 5}
"""


@pytest.mark.parametrize(
    "answer", ["NOTHING_TO_REPORT", " nothing_to_report.\n", "`NOTHING_TO_REPORT`"]
)
def test_the_quiet_answer_delivers_nothing_and_records_quiet(sandbox, ledger, answer):
    model = ScriptedChatModel(responses=[answer])
    result = run(make_runtime(sandbox, ledger, model), parse_agent(AGENT))
    assert result.status == "ok", result.error
    assert sandbox.slack.posted_to("#payments") == []
    assert sandbox.slack.writes() == []
    [quiet] = ledger.outcomes(result.run_id)
    assert (quiet.kind, quiet.ref, quiet.quiet) == ("quiet", "NOTHING_TO_REPORT", True)


def test_an_answer_that_only_mentions_it_is_delivered(sandbox, ledger):
    answer = "PAY-3 is blocked. Otherwise NOTHING_TO_REPORT."
    model = ScriptedChatModel(responses=[answer])
    result = run(make_runtime(sandbox, ledger, model), parse_agent(AGENT))
    assert sandbox.slack.posted_to("#payments")[-1].text == answer
    assert [o.kind for o in ledger.outcomes(result.run_id)] == ["slack.message"]


def test_the_instructions_must_mention_the_quiet_answer():
    text = AGENT.replace("If nothing is blocked, answer exactly NOTHING_TO_REPORT.", "Be brief.")
    with pytest.raises(SpecError, match="instructions must tell the model when to answer"):
        parse_agent(text)


def test_a_quiet_result_is_never_due_for_a_follow_up(sandbox, ledger):
    from datetime import UTC, datetime, timedelta

    from meshagent.ledger import verdicts

    model = ScriptedChatModel(responses=["NOTHING_TO_REPORT"])
    run(make_runtime(sandbox, ledger, model), parse_agent(AGENT))
    assert verdicts.due(ledger, now=datetime.now(UTC) + timedelta(days=30)) == []
