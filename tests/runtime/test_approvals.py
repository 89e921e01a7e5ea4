"""Staged writes in a run: deliver actions and write tool calls wait for approval with their exact
payload (after the grant check), the model is told, the entry closes with them; a dry run stages
nothing; an approved write runs under the agent file's grants as they are when it is approved."""

from __future__ import annotations

import asyncio
import threading

from meshagent.approvals.staged import decide
from meshagent.ledger import approvals as store
from meshagent.models import ScriptedChatModel
from tests.ledger.conftest import (  # noqa: F401 (fixtures)
    ledger_pair,
    ledger_url,
    pg_schema_url,
    pg_shared,
    sqlite_url,
)
from tests.runtime.conftest import agent, make_runtime

TRIAGE = """
    name: triage
    owner: bob@example.com
    team: payments
    model: scripted
    instructions: Comment on blocked issues, then summarise.
    tools:
      - jira.add_comment: {projects: [PAY]}
    deliver:
      - slack.post_message: {channel: "#payments-standup"}
    approve:
      writes: [jira.add_comment]
      by: [owner]
    value: {tag: toil-reduction, minutes_saved: 5}
"""


def _model(*calls: dict) -> ScriptedChatModel:
    turns = [{"tool_calls": [call], "usage": {"input_tokens": 100, "output_tokens": 10}}
             for call in calls]  # fmt: skip
    turns.append(
        {"content": "Nudged what I could.", "usage": {"input_tokens": 120, "output_tokens": 5}}
    )
    return ScriptedChatModel(responses=turns)


def _comment(key: str) -> dict:
    return {"name": "jira_add_comment", "args": {"key": key, "body": "Any news?"}}


async def _approve(runtime, approval_id: str, spec):
    async def listed(_approval) -> bool:
        return True

    return await decide(runtime, approval_id, decision="approved", who="bob@example.com",
                        listed=listed, find_spec=lambda name: spec)  # fmt: skip


def test_a_write_tool_call_is_staged_and_the_model_is_told(sandbox, ledger):
    model = _model(_comment("PAY-3"), _comment("OPS-1"))
    runtime = make_runtime(sandbox, ledger, model)
    spec = agent(TRIAGE)

    async def scenario():
        result = await runtime.run(spec)
        approved = await _approve(runtime, result.staged[0].id, spec)
        return result, approved

    result, approved = asyncio.run(scenario())
    assert result.status == "ok", result.error
    [staged] = result.staged  # OPS-1 was refused by the grant, never staged
    assert (staged.action, staged.source, staged.payload) == (
        "jira.add_comment",
        "tool",
        {"key": "PAY-3", "body": "Any news?"},
    )
    told = model.calls[1][-1].content
    assert f"Staged for approval (request {staged.id})" in told and "has not been made" in told
    assert "Refused" in model.calls[2][-1].content
    assert [p.text for p in sandbox.slack.posted_to("#payments-standup")] == [result.answer]
    kinds = [e.kind for e in ledger.events(result.run_id)]
    assert kinds.count("tool_staged") == 1 and kinds.count("tool_refused") == 1
    # approved: made now, once, and the run's outcome
    assert approved.code == "executed", approved.message
    assert sandbox.jira.comments_added == [("PAY-3", "Any news?")]
    kinds = sorted(o.kind for o in ledger.outcomes(result.run_id))
    assert kinds == ["jira.comment", "slack.message"]


def test_an_approved_write_is_refused_when_the_grant_no_longer_covers_it(sandbox, ledger):
    runtime = make_runtime(sandbox, ledger, _model(_comment("PAY-3")))
    narrower = agent(TRIAGE.replace("projects: [PAY]", "projects: [OPS]"))

    async def scenario():
        result = await runtime.run(agent(TRIAGE))
        return await _approve(runtime, result.staged[0].id, narrower)

    approved = asyncio.run(scenario())
    assert approved.code == "failed"
    assert "refused: PAY-3 is outside the granted projects OPS" in approved.message
    assert sandbox.jira.comments_added == []
    assert store.get(ledger, approved.approval.id).status == "failed"


def test_a_dry_run_stages_nothing(sandbox, ledger):
    runtime = make_runtime(sandbox, ledger, _model(_comment("PAY-3")))
    result = asyncio.run(runtime.run(agent(TRIAGE), dry_run=True))
    assert result.status == "ok" and result.staged == []
    assert store.listing(ledger) == []
    assert sandbox.jira.writes() == [] and sandbox.slack.writes() == []
    assert all(o.planned for o in result.outcomes)


def test_with_writes_all_read_tools_run_and_every_write_waits(sandbox, ledger):
    text = TRIAGE.replace("writes: [jira.add_comment]", "writes: all").replace(
        "tools:\n", "tools:\n      - jira.issue: {projects: [PAY]}\n"
    )
    model = _model({"name": "jira_issue", "args": {"key": "PAY-3"}}, _comment("PAY-3"))
    result = asyncio.run(make_runtime(sandbox, ledger, model).run(agent(text)))
    assert result.status == "ok", result.error
    assert "PAY-3" in model.calls[1][-1].content and "Staged" not in model.calls[1][-1].content
    assert sorted(a.action for a in result.staged) == ["jira.add_comment", "slack.post_message"]
    assert sandbox.jira.comments_added == [] and sandbox.slack.posted_to("#payments-standup") == []


def test_concurrent_approvals_in_two_processes_write_once(sandbox, ledger_pair):  # noqa: F811
    spec = agent(TRIAGE)
    result = asyncio.run(make_runtime(sandbox, ledger_pair[0], _model(_comment("PAY-3"))).run(spec))
    # each process its own runtime (and event loop), as two `meshagent approvals` would be
    runtimes = [make_runtime(sandbox, each) for each in ledger_pair]
    [staged] = result.staged
    barrier = threading.Barrier(2)
    codes: list[str] = []

    def approve(runtime) -> None:
        barrier.wait()
        codes.append(asyncio.run(_approve(runtime, staged.id, spec)).code)

    threads = [threading.Thread(target=approve, args=(r,)) for r in runtimes]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(codes) == ["decided", "executed"]
    assert sandbox.jira.comments_added == [("PAY-3", "Any news?")]
