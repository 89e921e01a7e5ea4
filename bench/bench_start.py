"""Start-time benchmark (not a test): how long people wait for the `meshagent` command.

Wall time of three commands, each beside ``python -c pass`` (the interpreter's own start, the
floor) measured in the same rounds, the commands and the floor taking turns so that both see the
same machine:

- ``meshagent --version``; target: 0.3 s or less above the floor;
- ``meshagent validate agents/`` (the repository's example agents); target: 0.6 s or less;
- ``meshagent run standup-digest`` with the offline model against the local sandbox (Slack and
  Jira started by this bench, as ``meshagent sandbox`` would), each repetition on a copy of one
  ledger made beforehand, so that every run fetches, thinks and delivers (the agent skips a run
  whose context is unchanged) and none migrates a new database; target: 1.5 s or less.

Figures: the median of the repetitions above the floor's median, and the spread (min-max) of
each. Also printed when a target is missed.

    python bench/bench_start.py [--repeat N]
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PYTHON = sys.executable
MESHAGENT = str(Path(PYTHON).with_name("meshagent"))
TARGETS = {"--version": 0.3, "validate agents/": 0.6, "run standup-digest": 1.5}


#: CPU seconds (user + system) of each child, by the wall() call that ran it.
CPU: list[float] = []


def wall(argv: list[str], env: dict[str, str]) -> float:
    """Seconds from start to exit of ``argv``; a command that fails stops the bench. Its CPU
    time goes to ``CPU`` (on a busy machine wall time grows with the load, CPU time much less)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True)
    took = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    CPU.append(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed ({done.returncode}):\n{done.stderr[-2000:]}")
    return took


def spread(values: list[float]) -> str:
    return f"{min(values):.3f}-{max(values):.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=7, help="repetitions of each command")
    options = parser.parse_args()

    from meshagent.sandbox import Sandbox

    print("MeshAgent start-time benchmark")
    print(
        f"machine: {os.cpu_count()} CPUs, {platform.machine()}, load "
        f"{' '.join(f'{n:.2f}' for n in os.getloadavg())} (1, 5, 15 min; other work on the "
        f"machine skews every figure); python {platform.python_version()}"
    )
    print(f"{options.repeat} repetitions of each command, each beside `python -c pass`\n")
    with Sandbox() as box, tempfile.TemporaryDirectory(prefix="meshagent-start-") as directory:
        base = {
            **os.environ,
            **box.env(),
            "HOME": directory,  # no user settings, no user data directory
            "XDG_DATA_HOME": str(Path(directory) / "data"),
            "XDG_CONFIG_HOME": str(Path(directory) / "config"),
        }
        base = {k: v for k, v in base.items() if not k.startswith("MESHAGENT_")}
        # As an installed copy starts: from bytecode compiled once (by the warm-up below), not
        # compiling every module at each start as PYTHONDONTWRITEBYTECODE=1 would have it; the
        # bytecode goes to the temporary directory, not into the working tree.
        base.pop("PYTHONDONTWRITEBYTECODE", None)
        base["PYTHONPYCACHEPREFIX"] = str(Path(directory) / "bytecode")
        template = Path(directory) / "template.db"
        made = dict(base, MESHAGENT_LEDGER_URL=f"sqlite:///{template}")
        wall([MESHAGENT, "ledger", "migrate"], made)  # one migrated ledger, copied per run

        counter = iter(range(10**6))

        def run_env() -> dict[str, str]:
            ledger = Path(directory) / f"run-{next(counter)}.db"
            shutil.copyfile(template, ledger)
            return dict(base, MESHAGENT_LEDGER_URL=f"sqlite:///{ledger}")

        commands = {
            "--version": lambda: ([MESHAGENT, "--version"], base),
            "validate agents/": lambda: ([MESHAGENT, "validate", "agents/"], base),
            "run standup-digest": lambda: ([MESHAGENT, "run", "standup-digest"], run_env()),
        }
        floor: list[float] = []
        floor_cpu: list[float] = []
        times: dict[str, list[float]] = {name: [] for name in commands}
        cpu: dict[str, list[float]] = {name: [] for name in commands}
        wall([PYTHON, "-c", "pass"], base)  # warm the file cache once
        for command in commands.values():
            wall(*command())
        for _ in range(options.repeat):
            for name, command in commands.items():
                floor.append(wall([PYTHON, "-c", "pass"], base))
                floor_cpu.append(CPU[-1])
                times[name].append(wall(*command()))
                cpu[name].append(CPU[-1])
        posted = len(box.slack.posted_to("#payments-standup"))

    bottom = statistics.median(floor)
    cpu_bottom = statistics.median(floor_cpu)
    print(f"  {'command':<34} {'median':>8} {'spread':>13} {'above floor':>12}  target")
    print(f"  {'python -c pass (floor)':<34} {bottom:7.3f}s {spread(floor):>13}")
    results = []
    for name, values in times.items():
        above = statistics.median(values) - bottom
        met = above <= TARGETS[name]
        results.append((name, above, met))
        print(
            f"  {'meshagent ' + name:<34} {statistics.median(values):7.3f}s "
            f"{spread(values):>13} {above:11.3f}s  <= {TARGETS[name]:g} s "
            f"{'met' if met else 'MISSED'}"
        )
    print("\n  CPU time (user + system) of the same commands, median, and above the floor's")
    print(f"  {'python -c pass (floor)':<34} {cpu_bottom:7.3f}s")
    for name, values in cpu.items():
        above = statistics.median(values) - cpu_bottom
        print(f"  {'meshagent ' + name:<34} {statistics.median(values):7.3f}s {above:11.3f}s")
    print(f"\n  (the runs posted {posted} digests to the sandbox's #payments-standup)")
    print("\nfigures against targets")
    for name, above, met in results:
        verdict = "met" if met else "MISSED"
        print(f"  meshagent {name:<28} {above:6.3f} s above the floor  {verdict}")


if __name__ == "__main__":
    main()
