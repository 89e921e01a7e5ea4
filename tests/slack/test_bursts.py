"""Bursts of commands: Slack's identity is asked once, and acknowledgements come before the work
they start (the background runs wait until requests stop arriving)."""

from __future__ import annotations

import asyncio
import gc
import time
from datetime import UTC, datetime

import httpx
from sqlalchemy import select

from meshagent.fleet.server import GC_YOUNG_THRESHOLD
from meshagent.ledger.schema import entries, outcomes
from meshagent.slack.acks import AcksFirst
from tests.slack.conftest import (
    ASK,
    SECRET,
    agents,
    command,
    form,
    make_app,
    response_posts,
    sign,
)
from tests.slack.test_serve import _serve_app
from tests.slack.test_socket_mode import _ack, _socket_app


async def _burst(url: str, bodies: list[str]) -> list[httpx.Response]:
    async with httpx.AsyncClient(timeout=20) as client:

        async def one(body: str) -> httpx.Response:
            headers = {"Content-Type": "application/x-www-form-urlencoded", **sign(body)}
            return await client.post(url, content=body.encode(), headers=headers)

        return await asyncio.gather(*(one(body) for body in bodies))


def test_a_burst_right_after_start_asks_slack_who_the_bot_is_once(sandbox, ledger, serve):
    served = serve(make_app(sandbox, ledger, agents(sandbox, ASK)))
    bodies = [form(command(sandbox, "help")) for _ in range(40)]
    answers = asyncio.run(_burst(served.url, bodies))
    assert [a.status_code for a in answers] == [200] * 40
    assert all("/meshagent list" in a.text for a in answers)
    # Bolt's own authorization asked auth.test once per request until its first answer came.
    assert sandbox.slack.calls.count("auth.test") == 1


def test_a_refused_identity_is_not_kept(sandbox, ledger, serve):
    served = serve(make_app(sandbox, ledger, agents(sandbox, ASK)))
    token = sandbox.slack.token
    sandbox.slack.token = "xoxb-revoked"  # Slack refuses the bot token for a while
    refused = served.command(sandbox, "help")
    assert refused.status_code == 200 and "/meshagent list" not in refused.text
    sandbox.slack.token = token
    answered = served.command(sandbox, "help")
    assert "/meshagent list" in answered.text
    assert sandbox.slack.calls.count("auth.test") == 2  # asked again after the refusal


def test_runs_start_only_once_the_burst_is_answered(sandbox, ledger, serve):
    app = make_app(sandbox, ledger, agents(sandbox, ASK))
    app.acks = AcksFirst(quiet=1.0)  # a long quiet moment, so the order shows plainly
    app.commands.max_runs_per_user = 100
    served = serve(app)
    bodies = [form(command(sandbox, f"ask what changed in {i}?")) for i in range(30)]
    answers = asyncio.run(_burst(served.url, bodies))
    last_ack = datetime.now(UTC)
    assert all("running ask" in a.text for a in answers)
    served.idle()
    assert len(response_posts(sandbox)) == 30
    started = ledger.read(lambda c: list(c.execute(select(entries.c.started_at)).scalars()))
    started = [t if t.tzinfo else t.replace(tzinfo=UTC) for t in started]
    assert len(started) == 30 and min(started) > last_ack


def test_over_socket_mode_too_the_run_waits_for_the_envelope_to_be_answered(sandbox, ledger):
    app = _socket_app(sandbox, ledger, ASK)
    app.acks = AcksFirst(quiet=1.0)

    async def scenario() -> datetime:
        await app.start_socket_mode()
        sent = await asyncio.to_thread(
            sandbox.slack.socket_send, "slash_commands", command(sandbox, "ask hi")
        )
        ack = await _ack(sandbox, sent)
        acked = datetime.now(UTC)
        assert "running ask" in ack["text"]
        await app.wait_idle(20)
        await app.stop()
        return acked

    acked = asyncio.run(scenario())
    [started] = ledger.read(lambda c: list(c.execute(select(entries.c.started_at)).scalars()))
    started = started if started.tzinfo else started.replace(tzinfo=UTC)
    assert started > acked


def test_an_answer_is_recorded_after_the_acks_in_flight(sandbox, ledger):
    """The ledger's record of an answer already posted waits, as the run did, for the requests
    being answered (its writes would take the interpreter from their acknowledgements)."""
    app = _socket_app(sandbox, ledger, ASK)
    app.acks = AcksFirst(quiet=0.05, max_wait=1.0)

    def answers() -> list[str]:
        query = select(outcomes.c.kind).where(outcomes.c.kind == "slack.ephemeral")
        return ledger.read(lambda c: list(c.execute(query).scalars()))

    async def scenario() -> tuple[list[str], list[str]]:
        await app.start_socket_mode()
        sent = await asyncio.to_thread(
            sandbox.slack.socket_send, "slash_commands", command(sandbox, "ask hi")
        )
        assert "running ask" in (await _ack(sandbox, sent))["text"]
        with app.acks.answering_one():  # a request being answered, for 3 s: no quiet moment
            while not response_posts(sandbox):  # the run starts at the cap (1 s) and answers
                await asyncio.sleep(0.01)
            await asyncio.sleep(0.3)  # ample for a group commit, well within the next cap
            held = await asyncio.to_thread(answers)
            await asyncio.sleep(2.7)
        await app.wait_idle(20)
        await app.stop()
        return held, await asyncio.to_thread(answers)

    held, after = asyncio.run(scenario())
    assert held == []
    assert after == ["slack.ephemeral"]


def test_stopping_records_an_answer_still_waiting_for_the_acks(sandbox, ledger):
    app = _socket_app(sandbox, ledger, ASK)
    app.acks = AcksFirst(quiet=0.05, max_wait=5.0)

    async def scenario() -> None:
        await app.start_socket_mode()
        sent = await asyncio.to_thread(
            sandbox.slack.socket_send, "slash_commands", command(sandbox, "ask hi")
        )
        assert "running ask" in (await _ack(sandbox, sent))["text"]
        with app.acks.answering_one():  # no quiet moment: the run starts at the cap (5 s)
            while not response_posts(sandbox):
                await asyncio.sleep(0.01)
            await asyncio.sleep(0.3)
            await app.stop()  # the record waits for the acks: it is written before the end

    asyncio.run(scenario())
    query = select(outcomes.c.kind).where(outcomes.c.kind == "slack.ephemeral")
    assert ledger.read(lambda c: list(c.execute(query).scalars())) == ["slack.ephemeral"]
    # the answer had reached the person: no note says the run was interrupted
    assert not any("interrupted" in str(post) for post in response_posts(sandbox))


def test_the_gate_opens_once_requests_stop_for_a_moment():
    async def scenario() -> tuple[float, float, float]:
        # Gaps of 10 ms against a quiet moment of 500 ms: a loaded machine (CI, xdist) can stall
        # the loop tens of ms without the gate opening early.
        gate = AcksFirst(quiet=0.5, max_wait=5)
        loop = asyncio.get_running_loop()
        began = loop.time()
        waiter = asyncio.ensure_future(gate.settled())
        opened: list[float] = []
        waiter.add_done_callback(lambda _: opened.append(loop.time()))
        last = began
        for _ in range(10):  # a request every 10 ms for 100 ms
            with gate.answering_one():
                await asyncio.sleep(0.001)
            last = loop.time()  # the last request answered: the quiet moment starts
            await asyncio.sleep(0.01)
        await waiter
        return last - began, opened[0] - last, gate.quiet

    busy, after, quiet = asyncio.run(scenario())
    assert busy >= 0.09
    assert quiet - 0.01 <= after < quiet + 1.5  # the quiet moment after the last, not the cap


def test_the_gate_never_holds_work_longer_than_its_cap():
    async def scenario() -> float:
        gate = AcksFirst(quiet=0.05, max_wait=0.2)
        stop = asyncio.Event()

        async def steady() -> None:  # requests with no quiet moment
            while not stop.is_set():
                with gate.answering_one():
                    await asyncio.sleep(0.005)

        stream = asyncio.ensure_future(steady())
        await asyncio.sleep(0.01)
        began = time.perf_counter()
        await gate.settled()
        waited = time.perf_counter() - began
        stop.set()
        await stream
        return waited

    assert 0.15 <= asyncio.run(scenario()) < 1.0


def test_with_no_request_in_flight_work_starts_at_once():
    async def scenario() -> float:
        gate = AcksFirst(quiet=5, max_wait=5)
        began = time.perf_counter()
        await gate.settled()
        return time.perf_counter() - began

    assert asyncio.run(scenario()) < 0.05


def test_serve_collects_garbage_less_often_while_it_runs(sandbox, ledger, tmp_path, serve):
    before = gc.get_threshold()
    app = _serve_app(sandbox, ledger, tmp_path, SLACK_SIGNING_SECRET=SECRET)
    served = serve(app.state.slack, app)
    assert gc.get_threshold()[0] == GC_YOUNG_THRESHOLD > before[0]
    assert served.command(sandbox, "help").status_code == 200
    served.stop()
    assert gc.get_threshold() == before  # the process's own setting, back when serve stops


def test_the_ledgers_writes_wait_for_the_requests_being_answered(sandbox, ledger):
    """The group commit's thread yields to the Slack app's acknowledgements as the background
    runs do: a write queued while a request is answered commits once requests stop."""
    app = make_app(sandbox, ledger, agents(sandbox, ASK))
    app.acks = AcksFirst(quiet=0.05, max_wait=2.0)  # a gate given later is the one written at

    async def scenario() -> tuple[bool, str]:
        with app.acks.answering_one():
            write = asyncio.ensure_future(ledger.aopen_run("ask", owner="alice@example.com"))
            await asyncio.sleep(0.3)  # ample for a group commit, within the cap of a second
            held = not write.done()
        assert not app.acks.idle.is_set()  # until the quiet moment after the last one
        return held, await asyncio.wait_for(write, 5)

    held, run_id = asyncio.run(scenario())
    assert held and run_id
    assert app.acks.idle.is_set()
    assert ledger.count() == 1
