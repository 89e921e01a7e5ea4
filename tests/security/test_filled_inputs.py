"""Attack corpus: a value a slash command's user types, filled into a call the agent file fixed
(``ts: "{{thread}}"`` under context or deliver), is checked against its service's format like a
model's argument: refused, the run ``denied``, before any request, with a message that names
the argument and the format (it was "ValidationError: 1 validation error for ThreadArgs")."""

from __future__ import annotations

import pytest

CRAFTED = [
    "1700000000.000100/../../x",
    "1700000000.000100?x=1",
    "1700000000.000100\n",
    "1700000000.000100#x",
    "p1700000000000100&channel=C0SECRET",
    "１７００００００００.000100",  # fullwidth digits
]


@pytest.mark.parametrize("thread", CRAFTED)
def test_a_crafted_input_is_refused_before_any_request(run_agent_file, sandbox, thread):
    result = run_agent_file("agents/incident-summary.yaml", inputs={"thread": thread})
    assert result.status == "denied"
    assert result.error.startswith("slack.thread refused: ts: ")
    assert "is not a Slack message timestamp" in result.error
    assert sandbox.slack.received == []  # neither the read nor the reply was asked for
    assert result.usage.model_calls == 0
    # A well-formed thread still runs: tests/agents/test_examples.py, incident-summary.
