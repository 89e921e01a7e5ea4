"""agents/standup-digest.yaml against the sandbox: Jira in, one Slack post out."""

from __future__ import annotations

from pathlib import Path

from meshagent.agentfile.loader import load_agent
from meshagent.models import ScriptedChatModel
from tests.runtime.conftest import make_runtime, run

AGENT = Path(__file__).resolve().parents[2] / "agents" / "standup-digest.yaml"


def test_posts_a_digest_with_blockers_first(sandbox, ledger):
    result = run(make_runtime(sandbox, ledger), load_agent(AGENT))
    assert result.status == "ok", result.error
    [posted] = sandbox.slack.posted_to("#payments-standup")
    lines = posted.text.splitlines()
    assert lines[2] == "*Blockers*"
    assert any("PAY-3" in line for line in lines[3:5])  # blocked on security credentials
    assert "PAY-1 " not in posted.text and "PAY-7 " not in posted.text  # done: not in scope
    assert sandbox.jira.writes() == []


def test_an_unchanged_board_is_not_posted_twice(sandbox, ledger):
    runtime = make_runtime(sandbox, ledger)
    spec = load_agent(AGENT)
    assert run(runtime, spec).status == "ok"
    again = run(runtime, spec)
    assert again.status == "skipped_unchanged" and again.usage.model_calls == 0
    assert len(sandbox.slack.posted_to("#payments-standup")) == 1


def test_the_model_gets_only_the_fields_asked_for(sandbox, ledger):
    model = ScriptedChatModel(responses=["digest"])
    run(make_runtime(sandbox, ledger, model), load_agent(AGENT))
    prompt = model.calls[0][-1].content
    assert '"summary"' in prompt and '"description"' not in prompt
    assert "Partial refunds appear twice" not in prompt  # a description: not asked for
