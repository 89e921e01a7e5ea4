"""The real path of bench_runtime.py (issue 20): CPU per task of ChatOpenAI + ``http.get``.

One task: ``http.get`` of a status page (JSON, ~1 KB) from a local HTTP server, then one chat
completion from a local OpenAI-compatible server through langchain-openai's ``ChatOpenAI``, no
delivery. Both servers run in a child process (``--serve``), so that the CPU time measured here
(``time.process_time``: this process, every thread, not wall time) is the client's alone, and
their keep-alive connections let pooled clients pool. Measured three ways, in alternating
rounds so that all see the same machine:

- by hand: one ChatOpenAI and one ``httpx.AsyncClient`` made once, then per task a GET and an
  ``ainvoke([SystemMessage, HumanMessage])`` with the page in the prompt: the work itself;
- ``Runtime.run``: one runtime (as ``meshagent serve`` keeps), the agent's ``model:`` resolved
  by the runtime (``openai:gpt-4o-mini``, key and base URL from the environment), a SQLite
  ledger on a temp file;
- ``run_agent``: the library's one-call entry point, called once per task (a script's use; it keeps
  its runtime and ledger between calls with the same settings).

Target: each MeshAgent figure at most 2x the by-hand one.

    python bench/real_path.py [--tasks N] [--rounds N]     (also run by bench_runtime.py)
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

TARGET_RATIO = 2.0
API_KEY = "sk-meshagent-bench-not-a-real-key"
MODEL = "gpt-4o-mini"
INSTRUCTIONS = "Summarise the status below in one line. Degraded components first."
STATUS = {
    "page": "payments status",
    "updated": "2026-12-03T09:00:00Z",
    "components": [
        {"name": f"service-{n}", "status": "degraded" if n % 5 == 0 else "operational",
         "uptime_90d": f"{99.9 - n / 100:.2f}%", "region": ("eu-west", "us-east")[n % 2]}
        for n in range(12)
    ],
}  # fmt: skip
ANSWER = "service-0 and service-5 and service-10 are degraded; the rest operate normally."


# -- the servers (child process) --------------------------------------------------------------


def serve() -> None:
    """Serve /status and /v1/chat/completions on a free port; print the port; run until stdin
    closes."""
    from aiohttp import web

    completion_id = iter(range(1, 10**9))

    async def status(_: web.Request) -> web.Response:
        return web.json_response(STATUS)

    async def completions(request: web.Request) -> web.Response:
        body = await request.json()
        prompt = sum(len(m.get("content") or "") for m in body["messages"]) // 4
        return web.json_response(
            {
                "id": f"chatcmpl-bench{next(completion_id)}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": body.get("model"),
                "system_fingerprint": "fp_bench",
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": ANSWER},
                        "logprobs": None,
                        "finish_reason": "stop",
                    }
                ],
                "usage": {
                    "prompt_tokens": prompt,
                    "completion_tokens": 20,
                    "total_tokens": prompt + 20,
                },
            }
        )

    async def main() -> None:
        app = web.Application()
        app.router.add_get("/status", status)
        app.router.add_post("/v1/chat/completions", completions)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        print(runner.addresses[0][1], flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
        await runner.cleanup()

    asyncio.run(main())


class Servers:
    """The child process serving both endpoints."""

    def __enter__(self) -> Servers:
        self.process = subprocess.Popen(
            [sys.executable, __file__, "--serve"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        port = int(self.process.stdout.readline())
        self.status_url = f"http://127.0.0.1:{port}/status"
        self.base_url = f"http://127.0.0.1:{port}/v1"
        return self

    def __exit__(self, *_: object) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        self.process.wait(timeout=10)


# -- the three ways ---------------------------------------------------------------------------


def agent_text(status_url: str) -> str:
    return textwrap.dedent(
        f"""
        name: bench-real-path
        owner: bench@example.com
        team: bench
        model: openai:{MODEL}
        instructions: {INSTRUCTIONS}
        context:
          - http.get: {{url: "{status_url}"}}
        deliver: []
        value: {{tag: toil-reduction, minutes_saved: 1}}
        """
    )


async def cpu_per_task(tasks: int, one: Callable[[], Awaitable[Any]]) -> float:
    """CPU seconds of this process per task, over ``tasks`` tasks in a row."""
    started = time.process_time()
    for _ in range(tasks):
        await one()
    return (time.process_time() - started) / tasks


async def measure(servers: Servers, directory: str, tasks: int, rounds: int) -> dict[str, Any]:
    import httpx
    from langchain_core.messages import HumanMessage, SystemMessage
    from langchain_openai import ChatOpenAI

    from meshagent.agentfile.loader import parse_agent
    from meshagent.config import Config
    from meshagent.ledger.store import Ledger
    from meshagent.runtime.runner import Runtime, run_agent

    env = {"OPENAI_API_KEY": API_KEY, "OPENAI_BASE_URL": servers.base_url}
    os.environ.update(env)  # ChatOpenAI reads the base URL from the process's environment
    spec = parse_agent(agent_text(servers.status_url), filename="bench.yaml", env={})
    config = Config(ledger_url=f"sqlite:///{Path(directory) / 'real-path.db'}")
    ledger = Ledger.open(config.ledger_url)
    runtime = Runtime(config, ledger=ledger, env=env)
    chat = ChatOpenAI(model=MODEL, api_key=API_KEY, base_url=servers.base_url, max_retries=0)
    client = httpx.AsyncClient()
    said: list[str] = []

    async def by_hand() -> None:
        page = (await client.get(servers.status_url)).text
        reply = await chat.ainvoke([SystemMessage(INSTRUCTIONS), HumanMessage(page)])
        said.append(str(reply.content))

    async def with_runtime() -> None:
        result = await runtime.run(spec)
        if result.status != "ok":
            raise SystemExit(f"runtime run failed: {result.status}: {result.error}")

    async def with_run_agent() -> None:
        result = await run_agent(spec, config=config, env=env)
        if result.status != "ok":
            raise SystemExit(f"run_agent failed: {result.status}: {result.error}")

    ways = {"by hand": by_hand, "Runtime.run": with_runtime, "run_agent": with_run_agent}
    for one in ways.values():  # warm up: imports, first connections, the model's client
        await cpu_per_task(3, one)
    figures: dict[str, list[float]] = {name: [] for name in ways}
    for _ in range(rounds):
        for name, one in ways.items():
            figures[name].append(await cpu_per_task(tasks, one))
    await runtime.aclose()
    await client.aclose()
    made = runtime.clients.made
    entries = ledger.count()
    ledger.close()
    if said[-1] != ANSWER:
        raise SystemExit(f"the by-hand call read {said[-1]!r}")
    return {"figures": figures, "clients_made": made, "entries": entries}


def section(tasks: int, rounds: int) -> list[tuple[str, str, str, bool]]:
    """Run the measurement and print it; returns (figure, value, target, met) rows."""
    with Servers() as servers, tempfile.TemporaryDirectory(prefix="meshagent-real-") as directory:
        found = asyncio.run(measure(servers, directory, tasks, rounds))
    figures = found["figures"]
    hand = statistics.median(figures["by hand"])
    print(
        f"\n(c) the real path: ChatOpenAI + http.get against local servers (a child process), "
        f"CPU time of this process per task, {rounds} rounds of {tasks} tasks per way"
    )
    print(f"  {'':<46} {'median':>10} {'min-max of the rounds':>24}")
    rows = []
    for name, values in figures.items():
        spread = f"{min(values) * 1000:.2f}-{max(values) * 1000:.2f} ms"
        ratio = statistics.median(values) / hand
        label = {"by hand": "by hand: ChatOpenAI.ainvoke + httpx GET"}.get(name, name)
        extra = "" if name == "by hand" else f"   {ratio:.2f}x by hand"
        print(f"  {label:<46} {statistics.median(values) * 1000:7.2f} ms {spread:>24}{extra}")
        if name != "by hand":
            rows.append(
                (f"real path, {name} CPU / by hand (median)", f"{ratio:.2f}x",
                 f"<= {TARGET_RATIO:g}x", ratio <= TARGET_RATIO)
            )  # fmt: skip
    print(
        f"  (http.get clients the runtime built: {found['clients_made']}; ledger entries "
        f"written: {found['entries']})"
    )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", type=int, default=40, help="tasks per way per round")
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.serve:
        serve()
        return
    print(f"MeshAgent real-path benchmark; load {' '.join(f'{n:.2f}' for n in os.getloadavg())}")
    rows = section(options.tasks, options.rounds)
    print("\nfigures against targets")
    for label, value, target, met in rows:
        print(f"  {label:<50} {value:>8}  {target:<8} {'met' if met else 'MISSED'}")


if __name__ == "__main__":
    main()
