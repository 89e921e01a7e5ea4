"""Runtime benchmark (not a test): the framework's own cost per run, and many runs at once.

(a) Median overhead per run with a zero-latency scripted model, ledger writes included:
    - fetch-think-deliver: an agent with no connector actions (so only the framework is
      measured) against a bare ``model.ainvoke([HumanMessage(instructions)])`` (what the
      runtime sends an agent without context) doing the same model work; target: overhead of
      2 ms or less per run.
    - agent mode: one granted tool (``slack.add_reaction`` against the local Sandbox; every
      installed action does HTTP) that the model calls once, against a bare LangChain
      ``create_agent`` whose tool makes the same HTTP call, so that cost cancels out;
      target: 1.5x the bare invoke or better.
    - each runtime run and the bare call it is compared with take turns, so that both see the
      same machine (its speed drifts by 2x over minutes on a shared VM);
    - where the time goes: the Ledger's methods timed in an extra, instrumented pass.
(b) 1,000 runs started at once with asyncio.gather, the model taking 1 s per call,
    max_concurrent_model_calls=1000, fetch-think-deliver with no connector actions; makespan on
    SQLite and on PostgreSQL (a private schema, dropped afterwards); target: 2.5 s or less.
(c) The real path (``bench/real_path.py``): CPU time per task of ChatOpenAI + ``http.get``
    against local servers, through ``Runtime.run`` and ``run_agent``, beside the same work done
    by hand (a ChatOpenAI call plus one httpx fetch); target: 2x or less.

    python bench/bench_runtime.py [--quick] [--runs N] [--concurrent N] [--no-postgres]
                                  [--profile] [--no-real-path]

``--profile`` adds cProfile's top functions (cumulative) over the fetch-think-deliver loop.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import gc
import inspect
import io
import os
import platform
import pstats
import sqlite3
import statistics
import sys
import tempfile
import textwrap
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

from langchain_core.messages import HumanMessage
from langchain_core.tools import StructuredTool

from meshagent.agentfile.loader import parse_agent
from meshagent.agentfile.spec import AgentSpec
from meshagent.config import Config
from meshagent.ledger.store import Ledger
from meshagent.models import ScriptedChatModel
from meshagent.runtime.runner import Runtime
from meshagent.sandbox import Sandbox

PG_DSN = "host=127.0.0.1 port=5432 dbname=test user=postgres"
PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"

TARGET_FTD_OVERHEAD_MS = 2.0
TARGET_AGENT_RATIO = 1.5
TARGET_MAKESPAN_S = 2.5

INSTRUCTIONS = "Write a short digest of the context below. Blockers first."
USAGE = {"input_tokens": 120, "output_tokens": 40}
ANSWER = {"content": "All quiet: nothing is blocked today.", "usage": USAGE}

FTD_AGENT = f"""
    name: bench-ftd
    owner: bench@example.com
    team: bench
    model: scripted
    instructions: {INSTRUCTIONS}
    context: []
    deliver: []
    value: {{tag: toil-reduction, minutes_saved: 1}}
"""

TOOL_AGENT = f"""
    name: bench-agent
    owner: bench@example.com
    team: bench
    model: scripted
    instructions: {INSTRUCTIONS}
    context: []
    tools:
      - slack.add_reaction: {{channels: ["#payments"]}}
    deliver: []
    value: {{tag: toil-reduction, minutes_saved: 1}}
"""
TOOL_NAME = "slack_add_reaction"  # how the runtime names slack.add_reaction for the model
CHANNEL, CHANNEL_ID = "#payments", "C0PAYMENTS"


# -- small helpers ----------------------------------------------------------------------------


def agent(text: str) -> AgentSpec:
    return parse_agent(textwrap.dedent(text), filename="bench.yaml", env={})


def ms(seconds: float) -> float:
    return seconds * 1000.0


def median(values: list[float]) -> float:
    return statistics.median(values)


def p90(values: list[float]) -> float:
    if len(values) < 2:
        return values[0]
    return statistics.quantiles(values, n=10, method="inclusive")[8]


def verdict(met: bool | None) -> str:
    return "NOT RUN" if met is None else ("MET" if met else "MISSED")


def version_of(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "?"


class LedgerTimer:
    """Times the Ledger's write methods by patching the class, in this process only.

    The asyncio methods (``aopen_run``...) count under their blocking twins' names; their time
    includes waiting for the group commit that makes the write durable.
    """

    METHODS = ("open_run", "record_usage", "add_events", "close_run", "_running_totals")
    ASYNC = {"aopen_run": "open_run", "arecord_usage": "record_usage", "aclose_run": "close_run"}

    def __init__(self, origin: float | None = None) -> None:
        self.origin = origin
        self.spans: dict[str, list[tuple[float, float]]] = defaultdict(list)

    @contextlib.contextmanager
    def installed(self) -> Iterator[LedgerTimer]:
        names = {name: name for name in self.METHODS} | self.ASYNC
        saved = {name: getattr(Ledger, name) for name in names if hasattr(Ledger, name)}

        def timed(name: str, method: Callable[..., Any]) -> Callable[..., Any]:
            spans = self.spans[names[name]]
            clock = time.perf_counter

            if inspect.iscoroutinefunction(method):

                async def waiting(*args: Any, **kwargs: Any) -> Any:
                    start = clock()
                    try:
                        return await method(*args, **kwargs)
                    finally:
                        spans.append((start, clock()))

                return waiting

            def wrapper(*args: Any, **kwargs: Any) -> Any:
                start = clock()
                try:
                    return method(*args, **kwargs)
                finally:
                    spans.append((start, clock()))

            return wrapper

        for name, method in saved.items():
            setattr(Ledger, name, timed(name, method))
        try:
            yield self
        finally:
            for name, method in saved.items():
                setattr(Ledger, name, method)

    def total(self, name: str) -> float:
        return sum(end - start for start, end in self.spans.get(name, []))

    def count(self, name: str) -> int:
        return len(self.spans.get(name, []))


def sqlite_ledger(directory: str, name: str) -> Ledger:
    return Ledger.open(f"sqlite:///{Path(directory) / name}")


def make_runtime(
    ledger: Ledger,
    model: ScriptedChatModel,
    *,
    env: dict[str, str] | None = None,
    concurrency: int = 64,
) -> Runtime:
    config = Config(ledger_url=ledger.url, max_concurrent_model_calls=concurrency)
    return Runtime(config, ledger=ledger, env=env or {}, chat_model=model)


# -- (a) fetch-think-deliver ------------------------------------------------------------------


async def one_run(runtime: Runtime, spec: AgentSpec) -> None:
    result = await runtime.run(spec)
    if result.status != "ok":
        raise SystemExit(f"bench run failed: {result.status}: {result.error}")


async def run_sequential(
    runtime: Runtime, spec: AgentSpec, count: int, hook: Callable[[], None] | None = None
) -> list[float]:
    times = []
    clock = time.perf_counter
    for _ in range(count):
        start = clock()
        await one_run(runtime, spec)
        times.append(clock() - start)
        if hook is not None:
            hook()
    return times


async def alternating(runs: int, *steps: Callable[[], Any]) -> list[list[float]]:
    """Each step's time per round, the steps taking turns: a runtime run, then the bare call
    it is compared with. The machine's speed drifts over a benchmark (other VMs, caches, the
    heap growing); measured in turns, both sides see the same drift and the ratio keeps still.
    """
    clock = time.perf_counter
    times: list[list[float]] = [[] for _ in steps]
    for _ in range(runs):
        for step, measured in zip(steps, times, strict=True):
            start = clock()
            await step()
            measured.append(clock() - start)
    return times


async def bench_ftd(directory: str, runs: int, warmup: int) -> dict[str, Any]:
    spec = agent(FTD_AGENT)
    bare_model = ScriptedChatModel(responses=[ANSWER] * (warmup + runs))
    # What the runtime sends an agent with no context and no inputs: its instructions alone.
    messages = [HumanMessage(INSTRUCTIONS)]
    with sqlite_ledger(directory, "ftd.db") as ledger:
        model = ScriptedChatModel(responses=[ANSWER] * (2 * (warmup + runs)))
        runtime = make_runtime(ledger, model)
        await alternating(
            warmup, lambda: one_run(runtime, spec), lambda: bare_model.ainvoke(messages)
        )
        gc.collect()
        plain, bare = await alternating(
            runs, lambda: one_run(runtime, spec), lambda: bare_model.ainvoke(messages)
        )

        # The same loop again with the Ledger's methods timed (a few µs of timing per call).
        timer = LedgerTimer()
        per_run_ledger: list[float] = []
        seen = [0.0]

        def after_run() -> None:  # record_usage's _running_totals is inside record_usage
            spent = sum(
                timer.total(name)
                for name in ("open_run", "record_usage", "add_events", "close_run")
            )
            per_run_ledger.append(spent - seen[0])
            seen[0] = spent

        await run_sequential(runtime, spec, warmup)
        gc.collect()
        with timer.installed():
            timed = await run_sequential(runtime, spec, runs, hook=after_run)
        if ledger.count() != 2 * (warmup + runs):
            raise SystemExit("fetch-think-deliver: not every run has its ledger entry")

    return {
        "runtime": plain,
        "bare": bare,
        "timed": timed,
        "timer": timer,
        "ledger_per_run": per_run_ledger,
        "framework_only": [run - spent for run, spent in zip(timed, per_run_ledger, strict=True)],
    }


def profile_ftd(directory: str, runs: int, warmup: int) -> str:
    spec = agent(FTD_AGENT)
    with sqlite_ledger(directory, "profile.db") as ledger:
        model = ScriptedChatModel(responses=[ANSWER] * (warmup + runs))
        runtime = make_runtime(ledger, model)

        async def loop() -> None:
            await run_sequential(runtime, spec, warmup)
            profiler.enable()
            await run_sequential(runtime, spec, runs)
            profiler.disable()

        profiler = cProfile.Profile()
        asyncio.run(loop())
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out)
    stats.sort_stats("cumulative").print_stats(15)
    out.write("\n  -- same profile, top 15 by own time (tottime) --\n")
    stats.sort_stats("tottime").print_stats(15)
    return out.getvalue()


# -- (a) agent mode ---------------------------------------------------------------------------


def tool_turns(count: int, ts: str, prefix: str) -> list[dict[str, Any]]:
    """Two model responses per run: call the tool once (a fresh emoji each time), then answer."""
    responses: list[dict[str, Any]] = []
    for index in range(count):
        call = {
            "name": TOOL_NAME,
            "args": {"channel": CHANNEL, "ts": ts, "name": f"{prefix}{index}"},
        }
        responses.append({"content": "", "tool_calls": [call], "usage": USAGE})
        responses.append({"content": "Reacted to the message.", "usage": USAGE})
    return responses


def bare_tool(env: dict[str, str]) -> StructuredTool:
    """The same reactions.add request the connector makes, without MeshAgent in the way."""
    from slack_sdk.web.async_client import AsyncWebClient

    channels = {CHANNEL: CHANNEL_ID}

    async def react(channel: str, ts: str, name: str) -> str:
        client = AsyncWebClient(token=env["SLACK_BOT_TOKEN"], base_url=env["SLACK_API_URL"])
        await client.reactions_add(channel=channels.get(channel, channel), timestamp=ts, name=name)
        return '{"ok": true}'

    return StructuredTool.from_function(
        coroutine=react, name=TOOL_NAME, description="Add an emoji reaction to a message."
    )


async def bench_agent(directory: str, runs: int, warmup: int) -> dict[str, Any]:
    from langchain.agents import create_agent

    spec = agent(TOOL_AGENT)
    with Sandbox() as sandbox, sqlite_ledger(directory, "agent.db") as ledger:
        env = sandbox.env()
        ts = sandbox.slack.messages[CHANNEL_ID][0]["ts"]
        total = warmup + runs
        model = ScriptedChatModel(responses=tool_turns(2 * total, ts, "rt"))
        runtime = make_runtime(ledger, model, env=env)

        # Bare LangChain: the agent built once and invoked, and built on every invoke (as the
        # runtime does, since its tools close over the run).
        tool = bare_tool(env)
        prompt = {"messages": [HumanMessage(INSTRUCTIONS)]}
        bare_model = ScriptedChatModel(responses=tool_turns(2 * total, ts, "bare"))
        bare_agent = create_agent(bare_model, [tool])
        answers: list[str] = []

        async def bare_once() -> None:
            state = await bare_agent.ainvoke(prompt)
            answers.append(state["messages"][-1].content)

        async def bare_built() -> None:
            await create_agent(bare_model, [tool]).ainvoke(prompt)

        steps = (lambda: one_run(runtime, spec), bare_once, bare_built)
        await alternating(warmup, *steps)
        gc.collect()
        plain, bare, built = await alternating(runs, *steps)
        assert set(answers) == {"Reacted to the message."}
        timer = LedgerTimer()
        with timer.installed():
            await run_sequential(runtime, spec, runs)
        reactions = len(sandbox.slack.reactions)
        if reactions != 3 * total + runs:
            raise SystemExit(f"agent mode: {reactions} reactions, want {3 * total + runs}")
    return {"runtime": plain, "bare": bare, "bare_built": built, "timer": timer, "runs": runs}


# -- (b) many at once -------------------------------------------------------------------------


async def bench_concurrent(url: str, count: int, latency: float) -> dict[str, Any]:
    spec = agent(FTD_AGENT)
    ledger = Ledger.open(url)
    try:
        # Warm up on the same ledger with a zero-latency model (imports, pool, statement cache).
        warm = make_runtime(ledger, ScriptedChatModel(responses=[ANSWER] * 5))
        await run_sequential(warm, spec, 5)
        model = ScriptedChatModel(responses=[ANSWER] * count, latency=latency)
        runtime = make_runtime(ledger, model, concurrency=count)
        before = ledger.count()
        timer = LedgerTimer()
        gc.collect()
        with timer.installed():
            start = time.perf_counter()
            results = await asyncio.gather(*(runtime.run(spec) for _ in range(count)))
            makespan = time.perf_counter() - start
        statuses: dict[str, int] = defaultdict(int)
        for result in results:
            statuses[result.status] += 1
        recorded = ledger.count() - before
    finally:
        ledger.close()
    opens = timer.spans["open_run"]
    closes = timer.spans["close_run"]
    return {
        "makespan": makespan,
        "statuses": dict(statuses),
        "recorded": recorded,
        "last_open": max(end for _, end in opens) - start if opens else 0.0,
        "first_close": min(begin for begin, _ in closes) - start if closes else 0.0,
        "ledger_total": sum(timer.total(n) for n in LedgerTimer.METHODS if n != "_running_totals"),
        "timer": timer,
    }


@contextlib.contextmanager
def pg_schema() -> Iterator[str]:
    import psycopg

    schema = f"bench_runtime_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_DSN, autocommit=True, connect_timeout=5) as connection:
        connection.execute(f'CREATE SCHEMA "{schema}"')
    try:
        yield f"{PG_URL}?options=-csearch_path%3D{schema}"
    finally:
        with psycopg.connect(PG_DSN, autocommit=True, connect_timeout=5) as connection:
            connection.execute(f'DROP SCHEMA "{schema}" CASCADE')


def pg_version() -> str | None:
    try:
        import psycopg

        with psycopg.connect(PG_DSN, autocommit=True, connect_timeout=3) as connection:
            found = connection.execute("SHOW server_version").fetchone()
            return str(found[0]) if found else "?"
    except Exception:
        return None


# -- report -----------------------------------------------------------------------------------


def machine_facts(postgres: str | None) -> list[str]:
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count() or 0
    return [
        f"machine  : {os.cpu_count()} CPUs ({usable} usable), {platform.machine()}, "
        f"{platform.system()} {platform.release()}",
        f"load     : {' '.join(f'{n:.2f}' for n in os.getloadavg())} (1, 5, 15 min averages at "
        "start; other work on the machine skews every figure)",
        f"python   : {platform.python_implementation()} {platform.python_version()}",
        f"libraries: langchain {version_of('langchain')}, langchain-core "
        f"{version_of('langchain-core')}, langgraph {version_of('langgraph')}, "
        f"SQLAlchemy {version_of('SQLAlchemy')}, psycopg {version_of('psycopg')}",
        f"databases: SQLite {sqlite3.sqlite_version} (WAL, the default sync=normal), "
        f"PostgreSQL {postgres or 'unreachable'} at 127.0.0.1:5432",
    ]


def row(label: str, values: list[float], unit: str = "ms") -> str:
    return f"  {label:<52} {ms(median(values)):9.3f} {unit} {ms(p90(values)):9.3f} {unit}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="50 sequential runs, not 300")
    parser.add_argument("--runs", type=int, help="sequential runs per measurement")
    parser.add_argument("--concurrent", type=int, default=1000, help="runs started at once")
    parser.add_argument("--latency", type=float, default=1.0, help="model seconds per call (b)")
    parser.add_argument("--no-postgres", action="store_true", help="skip (b) on PostgreSQL")
    parser.add_argument("--profile", action="store_true", help="cProfile the (a) loop")
    parser.add_argument("--no-real-path", action="store_true", help="skip (c)")
    options = parser.parse_args()
    runs = options.runs or (50 if options.quick else 300)
    warmup = max(5, runs // 10)
    began = time.perf_counter()

    postgres = None if options.no_postgres else pg_version()
    print("MeshAgent runtime benchmark" + (" (--quick)" if options.quick else ""))
    print("\n".join(machine_facts(postgres if not options.no_postgres else "skipped")))
    print(
        f"sequential: {runs} timed runs after {warmup} warm-up runs per measurement; "
        f"concurrent: {options.concurrent} runs, model latency {options.latency:g} s"
    )
    verdicts: list[tuple[str, str, str, str]] = []

    def note(label: str, value: str, target: str, met: bool | None) -> None:
        verdicts.append((label, value, target, verdict(met)))

    with tempfile.TemporaryDirectory(prefix="meshagent-bench-") as directory:
        # (a) fetch-think-deliver
        ftd = asyncio.run(bench_ftd(directory, runs, warmup))
        overhead = median(ftd["runtime"]) - median(ftd["bare"])
        ratio = median(ftd["runtime"]) / median(ftd["bare"])
        print("\n(a) per-run cost, zero-latency scripted model, SQLite ledger on a temp file")
        print(f"  {'':<52} {'median':>12} {'p90':>12}")
        print("  fetch-think-deliver (context: [], deliver: [])")
        print(row("runtime.run()", ftd["runtime"]))
        print(row("bare model.ainvoke([System, Human]), same responses", ftd["bare"]))
        print(
            f"  {'overhead = runtime - bare (median)':<52} {ms(overhead):9.3f} ms"
            f"   ratio {ratio:.1f}x"
        )
        timer: LedgerTimer = ftd["timer"]
        print(f"  breakdown, instrumented pass of {runs} runs (per run):")
        print(row("  runtime.run() with the ledger timed", ftd["timed"]))
        for name in ("open_run", "record_usage", "close_run", "add_events"):
            calls = timer.count(name)
            if calls:
                each = timer.total(name) / runs
                print(
                    f"  {'  Ledger.' + name + f' ({calls / runs:g} call/run)':<52} "
                    f"{ms(each):9.3f} ms   (mean)"
                )
        # _running_totals reads the just-opened entry back on the run's first record_usage.
        print(
            f"  {'    within them: _running_totals (entry read back)':<52} "
            f"{ms(timer.total('_running_totals') / runs):9.3f} ms   (mean)"
        )
        print(row("  all ledger writes", ftd["ledger_per_run"]))
        print(row("  everything else (runtime.run - ledger)", ftd["framework_only"]))
        rest = median(ftd["framework_only"]) - median(ftd["bare"])
        print(f"  {'  framework without ledger - bare (median)':<52} {ms(rest):9.3f} ms")
        note(
            "fetch-think-deliver overhead per run (median)",
            f"{ms(overhead):.2f} ms",
            f"<= {TARGET_FTD_OVERHEAD_MS:g} ms",
            ms(overhead) <= TARGET_FTD_OVERHEAD_MS,
        )

        # (a) agent mode
        tools = asyncio.run(bench_agent(directory, runs, warmup))
        agent_ratio = median(tools["runtime"]) / median(tools["bare"])
        built_ratio = median(tools["runtime"]) / median(tools["bare_built"])
        print("  agent mode (one granted slack.add_reaction, called once; HTTP to the Sandbox)")
        print(row("runtime.run()", tools["runtime"]))
        print(row("bare create_agent(...).ainvoke (agent built once)", tools["bare"]))
        print(row("bare create_agent built on every invoke", tools["bare_built"]))
        extra = median(tools["runtime"]) - median(tools["bare"])
        print(
            f"  {'overhead = runtime - bare (median)':<52} {ms(extra):9.3f} ms"
            f"   ratio {agent_ratio:.2f}x ({built_ratio:.2f}x vs built per invoke)"
        )
        timer = tools["timer"]
        count = tools["runs"]
        parts = ", ".join(
            f"{name} {ms(timer.total(name) / count):.2f} ms"
            for name in ("open_run", "record_usage", "add_events", "close_run")
        )
        print(f"  ledger per run (instrumented pass): {parts}")
        note(
            "agent mode, runtime / bare create_agent (median)",
            f"{agent_ratio:.2f}x",
            f"<= {TARGET_AGENT_RATIO:g}x",
            agent_ratio <= TARGET_AGENT_RATIO,
        )

        if options.profile:
            print(f"\ncProfile of the fetch-think-deliver loop ({runs} runs), top 15 cumulative")
            print(textwrap.indent(profile_ftd(directory, runs, warmup).strip("\n"), "  "))

        # (b) many at once
        print(
            f"\n(b) {options.concurrent} fetch-think-deliver runs started at once "
            f"(asyncio.gather), model latency {options.latency:g} s, "
            f"max_concurrent_model_calls={options.concurrent}"
        )
        backends: list[tuple[str, Callable[[], contextlib.AbstractContextManager[str]]]] = [
            ("SQLite", lambda: contextlib.nullcontext(f"sqlite:///{Path(directory) / 'many.db'}"))
        ]
        if options.no_postgres:
            note(
                f"{options.concurrent} at once, PostgreSQL makespan",
                "skipped",
                f"<= {TARGET_MAKESPAN_S:g} s",
                None,
            )
        elif postgres is None:
            print("  PostgreSQL at 127.0.0.1:5432 is unreachable: its figure is not run")
            note(
                f"{options.concurrent} at once, PostgreSQL makespan",
                "unreachable",
                f"<= {TARGET_MAKESPAN_S:g} s",
                None,
            )
        else:
            backends.append(("PostgreSQL", pg_schema))
        print(
            f"  {'backend':<11} {'makespan':>9} {'all opened':>11} {'first close':>12} "
            f"{'in ledger':>10}  statuses (entries recorded)"
        )
        for name, where in backends:
            with where() as url:
                many = asyncio.run(bench_concurrent(url, options.concurrent, options.latency))
            statuses = ", ".join(f"{k} {v}" for k, v in sorted(many["statuses"].items()))
            print(
                f"  {name:<11} {many['makespan']:8.2f}s {many['last_open']:10.2f}s "
                f"{many['first_close']:11.2f}s {many['ledger_total']:9.2f}s  {statuses} "
                f"({many['recorded']})"
            )
            note(
                f"{options.concurrent} at once, {name} makespan",
                f"{many['makespan']:.2f} s",
                f"<= {TARGET_MAKESPAN_S:g} s",
                many["makespan"] <= TARGET_MAKESPAN_S,
            )
        print("  (all opened: when the last open_run returned; first close: when the first")
        print("   close_run began; in ledger: wall time inside Ledger methods, all runs summed,")
        print("   waits for the group commit included, timed in the measured pass itself at a")
        print("   few µs per call)")

    if not options.no_real_path:  # (c), kept in its own module
        import real_path

        for label, value, target, met in real_path.section(tasks=max(10, runs // 5), rounds=5):
            note(label, value, target, met)

    print("\nfigures against targets")
    print(f"  {'figure':<50} {'value':>10}  {'target':<10} result")
    for label, value, target, result in verdicts:
        print(f"  {label:<50} {value:>10}  {target:<10} {result}")
    print(f"\ntotal bench time {time.perf_counter() - began:.1f} s")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
