"""A runtime keeps one http.get client per event loop: its runs share pooled connections, which
are closed when the runtime closes or when their loop ends (counted at a real local server).
run_agent reads the ledger's migration scripts once per process and upgrades only a new ledger."""

from __future__ import annotations

import asyncio
import gc
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler
from importlib import import_module

import pytest

from meshagent.config import Config
from meshagent.ledger.store import Ledger
from meshagent.models import ScriptedChatModel
from meshagent.runtime.runner import Runtime, run_agent
from tests.runtime.conftest import agent
from tests.runtime.http_site import serving

# The module (meshagent.ledger's own name `migrate` is the function of the same name).
migrations = import_module("meshagent.ledger.migrate")

FETCHER = """
    name: fetcher
    owner: alice@example.com
    team: ops
    model: scripted
    instructions: Summarise the status below.
    context:
      - http.get: {{url: "{url}/status"}}
      - http.get: {{url: "{url}/status", params: {{again: "1"}}}}
    deliver: []
    value: {{tag: toil-reduction, minutes_saved: 1}}
"""


class Counting(BaseHTTPRequestHandler):
    """Keep-alive HTTP/1.1; counts the TCP connections accepted and those still open."""

    protocol_version = "HTTP/1.1"
    lock = threading.Lock()
    accepted = 0
    open = 0

    def log_message(self, *args: object) -> None:
        pass

    def setup(self) -> None:
        super().setup()
        with Counting.lock:
            Counting.accepted += 1
            Counting.open += 1

    def finish(self) -> None:
        with Counting.lock:
            Counting.open -= 1
        super().finish()

    def do_GET(self) -> None:  # noqa: N802 (the stdlib's name)
        body = b'{"status": "ok"}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def server() -> Iterator[str]:
    Counting.accepted = Counting.open = 0
    with serving(Counting) as url:
        yield url


def runtime_for(ledger, runs: int) -> Runtime:
    model = ScriptedChatModel(responses=[{"content": "All fine."}] * runs)
    return Runtime(Config(ledger_url=ledger.url), ledger=ledger, env={}, chat_model=model)


def open_connections(expected: int) -> int:
    """The server's open connections once they settle at ``expected`` (or after 5 s)."""
    deadline = time.monotonic() + 5
    while Counting.open != expected and time.monotonic() < deadline:
        time.sleep(0.01)
    return Counting.open


def test_the_runs_of_a_runtime_share_one_client_and_connection(server, ledger):
    runtime = runtime_for(ledger, 3)
    spec = agent(FETCHER.format(url=server))

    async def three_runs() -> None:
        for _ in range(3):
            result = await runtime.run(spec)
            assert result.status == "ok", result.error
        assert runtime.clients.made == 1
        assert Counting.accepted == 1  # six fetches, one TCP connection
        assert open_connections(1) == 1  # kept open between runs
        await runtime.aclose()
        assert open_connections(0) == 0  # closed with the runtime

    asyncio.run(three_runs())
    assert ledger.count() == 3


def test_a_client_is_closed_when_its_event_loop_ends(server, ledger):
    runtime = runtime_for(ledger, 2)
    spec = agent(FETCHER.format(url=server))
    assert asyncio.run(runtime.run(spec)).status == "ok"
    # asyncio.run shut the loop down: the client it made was closed on it, not leaked.
    assert open_connections(0) == 0
    assert runtime.clients.count() <= 1
    # Another loop gets a client of its own (the first one's connections died with its loop).
    assert asyncio.run(runtime.run(spec)).status == "ok"
    assert runtime.clients.made == 2
    assert Counting.accepted == 2
    assert open_connections(0) == 0
    gc.collect()  # nothing left for the collector to warn about (warnings are errors)


def test_loops_in_two_threads_get_a_client_each(server, ledger):
    runtime = runtime_for(ledger, 4)
    spec = agent(FETCHER.format(url=server))
    statuses: list[str] = []

    def in_a_thread() -> None:
        async def twice() -> None:
            for _ in range(2):
                statuses.append((await runtime.run(spec)).status)

        asyncio.run(twice())

    threads = [threading.Thread(target=in_a_thread) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert statuses == ["ok"] * 4
    assert runtime.clients.made == 2
    assert Counting.accepted == 2
    assert open_connections(0) == 0


QUIET = """
    name: quiet
    owner: alice@example.com
    team: ops
    model: scripted
    instructions: Say hello.
    context: []
    deliver: []
    value: {tag: toil-reduction, minutes_saved: 1}
"""


def test_run_agent_reads_the_migrations_once_and_upgrades_only_a_new_ledger(tmp_path):
    spec = agent(QUIET)
    config = Config(ledger_url=f"sqlite:///{tmp_path / 'ledger.db'}")
    migrations.head_revision.cache_clear()
    checked = migrations.upgrades_checked

    def run_once() -> str:
        model = ScriptedChatModel(responses=[{"content": "Hello."}])
        result = asyncio.run(run_agent(spec, config=config, chat_model=model, env={}))
        return result.status

    assert [run_once() for _ in range(3)] == ["ok"] * 3
    assert migrations.upgrades_checked - checked == 1  # the new ledger, by its first run only
    assert migrations.head_revision.cache_info().misses == 1  # the scripts, read once
    # A ledger deleted and made again at the same URL is migrated again, not assumed current.
    for path in tmp_path.glob("ledger.db*"):
        path.unlink()
    assert run_once() == "ok"
    assert migrations.upgrades_checked - checked == 2
    with Ledger.open(config.ledger_url, migrate=False) as ledger:
        assert ledger.count() == 1


def test_the_newest_revision_read_from_the_scripts_is_alembics():
    from alembic.script import ScriptDirectory

    declared = migrations._declared_revisions()
    assert declared is not None and len(declared) >= 7  # every script declares plain constants
    migrations.head_revision.cache_clear()
    alembic_head = ScriptDirectory.from_config(migrations._config()).get_current_head()
    assert migrations.head_revision() == alembic_head


POSTER = """
    name: poster
    owner: alice@example.com
    team: ops
    model: scripted
    instructions: Say hello.
    context: []
    deliver:
      - slack.post_message: {channel: "#payments-standup"}
    value: {tag: toil-reduction, minutes_saved: 1}
"""


def test_slack_calls_of_a_runtime_share_one_session_per_event_loop(sandbox, ledger):
    model = ScriptedChatModel(responses=[{"content": f"Hello {n}."} for n in range(5)])
    runtime = Runtime(
        Config(ledger_url=ledger.url), ledger=ledger, env=sandbox.env(), chat_model=model
    )
    spec = agent(POSTER)

    async def three_runs() -> None:
        for _ in range(3):
            assert (await runtime.run(spec)).status == "ok"
        assert runtime.clients.made == 1  # three posts, one aiohttp session
        await runtime.aclose()
        assert runtime.clients.count() == 0

    asyncio.run(three_runs())
    # A runtime used from another loop gets a session of that loop, closed when the loop ends
    # (an unclosed aiohttp session warns when collected, and warnings fail the tests).
    other = Runtime(Config(ledger_url=ledger.url), ledger=ledger, env=sandbox.env(),
                    chat_model=model)  # fmt: skip
    for _ in range(2):
        assert asyncio.run(other.run(spec)).status == "ok"
    assert other.clients.made == 2
    gc.collect()
    texts = [m.text for m in sandbox.slack.posted_to("#payments-standup")]
    assert texts == [f"Hello {n}." for n in range(5)]


# -- run_agent keeps a runtime and a ledger per settings -------------------------------------


def test_run_agent_keeps_one_runtime_and_ledger_across_calls(server, tmp_path):
    from meshagent.ledger.shared import shared_ledger
    from meshagent.runtime.runner import kept

    spec = agent(FETCHER.format(url=server))
    config = Config(ledger_url=f"sqlite:///{tmp_path / 'kept.db'}")
    model = ScriptedChatModel(responses=[{"content": "All fine."}] * 3)

    async def three_calls() -> Runtime:
        for _ in range(3):
            result = await run_agent(spec, config=config, chat_model=model, env={})
            assert result.status == "ok", result.error
        return await kept(config, chat_model=model, env={})

    runtime = asyncio.run(three_calls())
    assert runtime.clients.made == 1  # six fetches over three calls, one client
    assert Counting.accepted == 1
    assert runtime.ledger is shared_ledger(config.ledger_url)
    assert runtime.ledger.count() == 3
    assert open_connections(0) == 0  # closed when the loop ended


def test_run_agent_follows_a_changed_ledger_url(tmp_path):
    spec = agent(QUIET)
    first, second = (Config(ledger_url=f"sqlite:///{tmp_path / name}") for name in "ab")
    model = ScriptedChatModel(responses=[{"content": "Hello."}] * 3)
    for config in (first, second, first):
        result = asyncio.run(run_agent(spec, config=config, chat_model=model, env={}))
        assert result.status == "ok", result.error
    for config, runs in ((first, 2), (second, 1)):
        with Ledger.open(config.ledger_url, migrate=False) as ledger:
            assert ledger.count() == runs


def test_run_agent_refuses_an_unknown_option_before_it_opens_a_ledger(tmp_path):
    spec = agent(QUIET)
    config = Config(ledger_url=f"sqlite:///{tmp_path / 'ledger.db'}")
    with pytest.raises(TypeError, match="dryrun") as raised:
        asyncio.run(run_agent(spec, config=config, dryrun=True, env={}))
    assert "dry_run" in str(raised.value)  # what it does take, to correct the spelling
    assert not list(tmp_path.iterdir())  # no ledger made for a call that cannot run
    model = ScriptedChatModel(responses=[{"content": "Hello."}])
    at = datetime(2026, 1, 5, 9, tzinfo=UTC)
    result = asyncio.run(
        run_agent(spec, config=config, chat_model=model, env={}, dry_run=True, scheduled_for=at)
    )
    assert result.status == "ok", result.error


def test_run_agent_resolves_its_model_again_when_the_api_key_changes(tmp_path, monkeypatch):
    from tests.runtime.openai_server import OpenAIServer, answer

    spec = agent(QUIET.replace("model: scripted", "model: openai:gpt-4o-mini"))
    config = Config(ledger_url=f"sqlite:///{tmp_path / 'keys.db'}")
    with OpenAIServer() as server:
        monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
        server.script(*(answer("Hello.") for _ in range(3)))
        for key in ("sk-first", "sk-second", "sk-first"):
            result = asyncio.run(run_agent(spec, config=config, env={"OPENAI_API_KEY": key}))
            assert result.status == "ok", result.error
        sent = [headers["Authorization"] for headers in server.headers]
    assert sent == ["Bearer sk-first", "Bearer sk-second", "Bearer sk-first"]


def test_run_agent_on_event_loops_in_turn_waits_for_its_model_calls_on_each(tmp_path):
    # One model call at a time: the calls of each loop queue on a semaphore of that loop (an
    # asyncio semaphore shared by two loops refuses to wait on the second).
    spec = agent(QUIET)
    config = Config(ledger_url=f"sqlite:///{tmp_path / 'loops.db'}", max_concurrent_model_calls=1)
    model = ScriptedChatModel(responses=[{"content": "Hello."}] * 6, latency=0.02)

    async def three_at_once() -> list[str]:
        calls = (run_agent(spec, config=config, chat_model=model, env={}) for _ in range(3))
        return [result.status for result in await asyncio.gather(*calls)]

    assert asyncio.run(three_at_once()) == ["ok"] * 3
    assert asyncio.run(three_at_once()) == ["ok"] * 3
