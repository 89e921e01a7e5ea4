"""Many runs of one agent with a small daily budget, started at once against one ledger: one
process of the daily-budget attack (tests/security/test_daily_budget.py starts two).

    python -m tests.security.budget_runner LEDGER_URL RUNS START_AT [LATENCY [OUTPUT_CAP]]

waits until the epoch second START_AT, then starts RUNS runs together and prints how many
ended with each status.
"""

from __future__ import annotations

import asyncio
import sys
import textwrap
import time
from collections import Counter

from meshagent.actions import Registry
from meshagent.agentfile.loader import parse_agent
from meshagent.agentfile.spec import AgentSpec
from meshagent.config import Config
from meshagent.ledger.store import Ledger
from meshagent.models import ScriptedChatModel
from meshagent.runtime.runner import Runtime

MODEL = "openai:acme-budget"
PRICES = {MODEL: {"input_per_mtok": "1", "output_per_mtok": "10"}}
LIMIT = "0.02"
OUTPUT_TOKENS = 500  # each call: 500 x $10/Mtok = $0.005, plus its prompt at $1/Mtok

AGENT = textwrap.dedent(
    f"""\
    name: spender
    owner: ops@example.com
    team: platform
    model: {MODEL}
    instructions: Summarise what the team did today in five lines.
    model_settings: {{max_output_tokens: {OUTPUT_TOKENS}}}
    budget: {{max_usd_per_day: {LIMIT}, max_seconds_per_run: 60}}
    value: {{tag: toil-reduction}}
    """
)


def spec(output_cap: int = OUTPUT_TOKENS) -> AgentSpec:
    # The agent reads and writes nothing: no connector is loaded, so only budgets are tested.
    text = AGENT.replace(f"max_output_tokens: {OUTPUT_TOKENS}", f"max_output_tokens: {output_cap}")
    return parse_agent(text, filename="spender.yaml", registry=Registry())


def answers(count: int) -> list[dict]:
    """Scripted answers whose prompt tokens are estimated and whose output is the cap."""
    return [{"content": "done", "usage": {"output_tokens": OUTPUT_TOKENS}}] * count


def runtime(url: str, model: ScriptedChatModel, clock=None) -> Runtime:
    config = Config(ledger_url=url, prices=PRICES, max_concurrent_model_calls=1000)
    return Runtime(
        config, ledger=Ledger.open(url), registry=Registry(), env={}, chat_model=model, clock=clock
    )


async def run_many(
    url: str, runs: int, start_at: float, latency: float, output_cap: int = OUTPUT_TOKENS
) -> list[str]:
    model = ScriptedChatModel(responses=answers(runs), latency=latency)
    agent = spec(output_cap)
    runner = runtime(url, model)
    try:
        await asyncio.sleep(max(0.0, start_at - time.time()))
        results = await asyncio.gather(*(runner.run(agent) for _ in range(runs)))
    finally:
        runner.ledger.close()
    return [result.status for result in results]


def main() -> None:
    url, runs, start_at = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
    latency = float(sys.argv[4]) if len(sys.argv) > 4 else 0.5
    output_cap = int(sys.argv[5]) if len(sys.argv) > 5 else OUTPUT_TOKENS
    statuses = asyncio.run(run_many(url, runs, start_at, latency, output_cap))
    print(dict(Counter(statuses)), flush=True)


if __name__ == "__main__":
    main()
