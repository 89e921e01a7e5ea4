"""How a run writes its ledger entry: spent tokens are durable before the run's next step, the
writes of concurrent runs are group-committed, and the chain verifies."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from meshagent.models import ScriptedChatModel
from tests.runtime.conftest import agent, make_runtime, run
from tests.runtime.test_runtime import TRIAGE

DIGEST = """
    name: digest
    owner: alice@example.com
    team: payments
    model: scripted
    instructions: Summarise.
    deliver:
      - slack.post_message: {channel: "#payments-standup"}
    value: {tag: toil-reduction, minutes_saved: 5}
"""
QUIET = DIGEST.replace(
    """deliver:
      - slack.post_message: {channel: "#payments-standup"}""",
    "deliver: []",
)
ANSWER = {"content": "All quiet.", "usage": {"input_tokens": 300, "output_tokens": 20}}


def _spy_writes(monkeypatch, ledger) -> list[str]:
    """The names of the ledger's write methods the runtime calls, in order."""
    calls: list[str] = []
    for name in (
        "open_run",
        "record_usage",
        "close_run",
        "aopen_run",
        "arecord_usage",
        "aclose_run",
    ):
        method = getattr(ledger, name)

        def spy(*args: Any, __name=name, __method=method, **kwargs: Any) -> Any:
            calls.append(__name)
            return __method(*args, **kwargs)

        monkeypatch.setattr(ledger, name, spy)
    return calls


def test_spent_tokens_are_in_the_ledger_before_the_delivery(sandbox, ledger, monkeypatch):
    runtime = make_runtime(sandbox, ledger, ScriptedChatModel(responses=[ANSWER]))
    seen: list[dict[str, Any]] = []
    real_get = runtime.registry.get

    def get(name: str) -> Any:
        return _Spying(real_get(name), lambda: seen.extend(_entries(ledger)))

    monkeypatch.setattr(runtime.registry, "get", get)
    result = run(runtime, agent(DIGEST))
    assert result.status == "ok"
    [before] = seen  # a crash during the delivery would leave these tokens
    assert (before["input_tokens"], before["output_tokens"], before["model_calls"]) == (300, 20, 1)


def test_with_nothing_after_the_model_the_close_writes_the_usage(sandbox, ledger, monkeypatch):
    calls = _spy_writes(monkeypatch, ledger)
    runtime = make_runtime(sandbox, ledger, ScriptedChatModel(responses=[ANSWER]))
    result = run(runtime, agent(QUIET))
    assert calls == ["open_run", "close_run"]  # two commits per run, not three
    entry = ledger.entry(result.run_id)
    assert (entry["status"], entry["input_tokens"], entry["output_tokens"]) == ("ok", 300, 20)
    assert ledger.verify().ok


def test_a_lone_run_writes_directly_and_concurrent_runs_group_commit(sandbox, ledger, monkeypatch):
    calls = _spy_writes(monkeypatch, ledger)
    model = ScriptedChatModel(responses=[ANSWER] * 3, latency=0.1)
    runtime = make_runtime(sandbox, ledger, model)
    run(runtime, agent(QUIET))
    assert calls == ["open_run", "close_run"]
    calls.clear()

    async def two() -> list[Any]:
        return await asyncio.gather(runtime.run(agent(QUIET)), runtime.run(agent(QUIET)))

    assert [r.status for r in asyncio.run(two())] == ["ok", "ok"]
    # The first open comes while it is alone; the second run's open is group-committed.
    assert calls[:2] == ["open_run", "aopen_run"]
    assert sorted(calls[2:]) in (["aclose_run", "aclose_run"], ["aclose_run", "close_run"])
    assert ledger.verify().ok


def test_a_run_cancelled_while_opening_is_closed_as_interrupted(sandbox, ledger):
    model = ScriptedChatModel(responses=[ANSWER] * 2, latency=0.3)
    runtime = make_runtime(sandbox, ledger, model)

    async def cancel_at_open() -> None:
        other = asyncio.ensure_future(runtime.run(agent(QUIET)))  # in flight meanwhile
        await asyncio.sleep(0.1)
        task = asyncio.ensure_future(runtime.run(agent(QUIET.replace("digest", "victim"))))
        await asyncio.sleep(0)  # the run is waiting for its entry to be committed
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await other
        await asyncio.sleep(0.2)

    asyncio.run(cancel_at_open())
    [entry] = [e for e in _entries(ledger) if e["agent"] == "victim"]
    assert (entry["status"], entry["error"]) == ("interrupted", "cancelled before it started")
    assert ledger.verify().ok


def test_runs_started_at_once_share_commits_and_the_chain_verifies(sandbox, ledger):
    model = ScriptedChatModel(responses=[ANSWER] * 200, latency=0.05)
    runtime = make_runtime(sandbox, ledger, model, max_concurrent_model_calls=200)

    async def many() -> list[Any]:
        return await asyncio.gather(*(runtime.run(agent(QUIET)) for _ in range(200)))

    results = asyncio.run(many())
    assert [r.status for r in results] == ["ok"] * 200
    assert ledger.group_commit().transactions < 200  # 400 writes, far fewer commits
    entries = _entries(ledger)
    assert len(entries) == 200 and {e["input_tokens"] for e in entries} == {300}
    assert ledger.verify().ok and ledger.verify().checked == 200


class _Spying:
    """An action that calls `before()` each time before it runs."""

    def __init__(self, action: Any, before: Any) -> None:
        self._action, self._before = action, before

    def __getattr__(self, attr: str) -> Any:
        return getattr(self._action, attr)

    async def __call__(self, context: Any, *args: Any) -> Any:
        self._before()
        return await self._action(context, *args)


def _entries(ledger) -> list[dict[str, Any]]:
    from sqlalchemy import select

    from meshagent.ledger.schema import entries

    return ledger.read(lambda c: [dict(r) for r in c.execute(select(entries)).mappings()])


def test_concurrent_agent_runs_share_one_graph_and_keep_their_own_steps(sandbox, ledger):
    def comment(key: str) -> dict[str, Any]:
        call = {"name": "jira_add_comment", "args": {"key": key, "body": "Any news?"}}
        return {"tool_calls": [call], "usage": {"input_tokens": 10, "output_tokens": 1}}

    # Calls alternate between the two runs: each asks for one comment, then answers.
    model = ScriptedChatModel(
        responses=[comment("PAY-3"), comment("OPS-2"), "Done.", "Done."], latency=0.05
    )
    runtime = make_runtime(sandbox, ledger, model)

    async def two() -> list[Any]:
        return await asyncio.gather(runtime.run(agent(TRIAGE)), runtime.run(agent(TRIAGE)))

    results = asyncio.run(two())
    # Which run got which response depends on timing: the one refused is the one that asked
    # for OPS-2.
    refused, allowed = sorted(results, key=lambda result: -len(result.refusals))
    assert len(runtime._agents) == 1  # built once, used by both
    assert (allowed.answer, allowed.refusals) == ("Done.", [])
    assert [r.arguments["key"] for r in refused.refusals] == ["OPS-2"]
    assert sandbox.jira.comments_added == [("PAY-3", "Any news?")]
    assert [e.kind for e in ledger.events(allowed.run_id)] == ["tool_call"]
    assert [e.kind for e in ledger.events(refused.run_id)] == ["tool_refused"]
    assert [o.kind for o in ledger.outcomes(allowed.run_id)] == ["jira.comment", "slack.message"]
    assert [o.kind for o in ledger.outcomes(refused.run_id)] == ["slack.message"]
    assert (
        ledger.entry(allowed.run_id)["tool_calls"],
        ledger.entry(refused.run_id)["tool_calls"],
    ) == (1, 0)
