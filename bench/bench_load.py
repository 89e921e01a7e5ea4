"""Benchmark: load and validate 1,000 varied agent files; prints files per second.

Target (issue #2): all 1,000 in under 1 second on the project's 2-core machine.
Run: .venv/bin/python bench/bench_load.py [--files N] [--repeat R]
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from pathlib import Path

from meshagent.actions import default_registry
from meshagent.agentfile.loader import load_agents

TEAMS = ["payments", "platform", "support", "growth", "security", "data"]
TAGS = ["toil-reduction", "incident-response", "customer-support", "planning", "code-quality"]
CRONS = ["0 9 * * MON-FRI", "*/15 * * * *", "30 8 1 * *", "0 */2 * * 1-5", "5 4 * * 0,7"]
ZONES = ["UTC", "Europe/Berlin", "America/New_York", "Asia/Tokyo", "Australia/Sydney"]
MODELS = ["offline", "openai:gpt-4.1-mini", "anthropic:claude-sonnet-4-5", "ollama:llama3.1"]


def agent_text(index: int, rng: random.Random) -> str:
    """One agent file; fields, triggers and actions vary with the index."""
    lines = [
        "# yaml-language-server: $schema=../meshagent.schema.json",
        f"name: agent-{index:04d}",
        f"description: Benchmark agent number {index}.",
        f"owner: person{index % 97}@example.com",
        f"team: {rng.choice(TEAMS)}",
        f"model: {rng.choice(MODELS)}",
        "model_settings: {temperature: 0.2, max_output_tokens: 800}",
        "instructions: |",
        "  Summarise what changed since yesterday in at most five lines.",
        "  Put blockers first and name their owners.",
        "inputs:",
        "  days: {type: integer, default: 1, description: How far back to look.}",
        "context:",
    ]
    for n in range(rng.randint(1, 3)):
        lines.append(
            f'  - http.get: {{url: "https://api{n}.example.com/v1/items", '
            f"params: {{team: x, limit: {10 + n}}}, select: [items, total]}}"
        )
    if rng.random() < 0.5:
        lines += ["tools:", '  - http.get: {url_prefixes: ["https://api.example.com/v1/"]}']
    lines += ["skip_if_unchanged: true", "triggers:"]
    lines += [f'  - schedule: "{rng.choice(CRONS)}"', f"    timezone: {rng.choice(ZONES)}"]
    if rng.random() < 0.5:
        lines.append(f"  - every: {rng.choice(['15m', '2h', '1d'])}")
    if rng.random() < 0.3:
        lines += [f"  - slash: cmd-{index}", "    allow: {channels: ['#ops'], users: ['@a']}"]
    lines += [
        f"budget: {{max_tokens_per_run: {rng.randint(1, 50) * 1000}, max_model_calls: 4, "
        "max_usd_per_day: 1.5}",
        f"value: {{tag: {rng.choice(TAGS)}, minutes_saved: {rng.randint(1, 60)}}}",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--files", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=5)
    options = parser.parse_args()
    rng = random.Random(42)
    default_registry()  # connector discovery is a one-off per process, not per file
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        for index in range(options.files):
            (directory / f"agent-{index:04d}.yaml").write_text(agent_text(index, rng))
        timings = []
        for _ in range(options.repeat):
            start = time.perf_counter()
            agents = load_agents(directory, env={})
            timings.append(time.perf_counter() - start)
            assert len(agents) == options.files
    best, median = min(timings), statistics.median(timings)
    print(f"files:            {options.files}")
    print(f"load+validate:    best {best:.3f} s, median {median:.3f} s over {options.repeat} runs")
    print(f"throughput:       {options.files / median:,.0f} files/s (median)")
    verdict = "met" if median < 1.0 else "MISSED"
    print(
        f"target (1,000 files < 1 s): {verdict} ({options.files / 1000:.1f}k files: {median:.3f} s)"
    )


if __name__ == "__main__":
    main()
