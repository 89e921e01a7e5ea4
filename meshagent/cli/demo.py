"""`meshagent demo`: the whole idea in one command, offline, in under a minute.

It starts the sandbox (Slack and Jira with a week of realistic data), runs every example agent
once, then plays the past week of their schedules on a fast clock, beside one tokenmaxxing agent
that re-reads the same data every five minutes and delivers nothing. People's reactions are
simulated on what was delivered. Then it prints the ledger report, the flags and the forecast:
cost against value, and the runs that bought nothing.

The demo writes to a ledger of its own (never the project's), and prices the offline model like
a small hosted model so the money columns mean something; both are said on screen.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from meshagent.agentfile.loader import parse_agent, scan_agents
from meshagent.agentfile.spec import AgentSpec, EveryTrigger, ScheduleTrigger
from meshagent.cli.invocation import shell_line
from meshagent.cli.printer import print_command, print_text
from meshagent.config import Config
from meshagent.exceptions import ConfigError
from meshagent.ledger.periods import Period
from meshagent.ledger.store import Ledger
from meshagent.mcp.lock import find_lock
from meshagent.runtime.runner import RunResult, Runtime
from meshagent.sandbox import Sandbox

__all__ = ["DEMO_PRICE", "SHIPPED_EXAMPLES", "TOKENMAXXER", "DemoSummary", "run_demo"]

#: The example agents, as installed with the package (in a clone: a link to its agents/).
SHIPPED_EXAMPLES = Path(__file__).resolve().parent.parent / "examples"

#: The offline model is free; the demo prices it like openai:gpt-4.1-mini (USD per Mtok).
DEMO_PRICE = {"input_per_mtok": "0.40", "output_per_mtok": "1.60", "cache_read_per_mtok": "0.10"}
DEMO_VIEWER = "demo-admin"

TOKENMAXXER = """\
name: everything-watcher
description: Re-reads every open Payments issue every five minutes "to stay on top of things".
owner: frank@example.com
team: growth
model: offline
instructions: Summarise every open Payments issue in detail.
context:
  - jira.search:
      jql: "project = PAY AND statusCategory != Done"
      fields: [summary, status, assignee, priority, updated, duedate, labels, description]
      limit: 100
triggers:
  - every: 5m
value: {tag: experiment, minutes_saved: 0}
"""

TOKENMAXXER_NAME = "everything-watcher"
_INPUTS = {"version": "2026.12"}  # example inputs the demo fills in
_WEEK = timedelta(days=7)  # the simulated week: the last seven days of schedules
_BEFORE = timedelta(minutes=30)  # each example agent runs once by hand this long before it


def demo_period(now: datetime) -> Period:
    """The days the demo's figures cover: its first runs, then the simulated week, to today."""
    return Period.between((now - _WEEK - _BEFORE).date(), now.date())


@dataclass
class DemoSummary:
    """What the demo did, for its closing lines and for tests."""

    ledger_url: str
    agents: list[str]
    settings: Path | None = None
    first_runs: list[RunResult] = field(default_factory=list)
    week_runs: int = 0
    statuses: dict[str, int] = field(default_factory=dict)
    read: dict[str, list[Any]] = field(default_factory=dict)  # what people did, by run
    approvals: list[Any] = field(default_factory=list)  # decisions on staged writes


class _Clock:
    def __init__(self) -> None:
        self.at: datetime | None = None

    def __call__(self) -> datetime:
        return self.at or datetime.now(UTC)


def write_demo_config(base: Config, directory: Path, agents_dir: Path) -> Path:
    """The demo's own meshagent.toml: its ledger, its agents, a price for offline."""
    path = directory / "meshagent.toml"
    tags = ", ".join(f'"{tag}"' for tag in base.value_tags)
    path.write_text(
        "# Written by `meshagent demo`: the demo's own ledger and settings, not the project's.\n"
        f'agents_dir = "{agents_dir.as_posix()}"\n'
        f'ledger_url = "sqlite:///{(directory / "ledger.db").as_posix()}"\n'
        'default_model = "offline"\n'
        f"value_tags = [{tags}]\n\n"
        "[privacy]\n"
        f'admins = ["{DEMO_VIEWER}"]\n\n'
        '[prices."offline"]   # the offline model is free: priced like openai:gpt-4.1-mini\n'
        + "".join(f"{key} = {value}\n" for key, value in DEMO_PRICE.items())
        + '\n[mcp.wiki]   # the sandbox\'s team wiki, an MCP server\nurl_env = "WIKI_MCP_URL"\n',
        encoding="utf-8",
    )
    return path


#: Connectors the demo can serve without the network: the sandbox's (its wiki over MCP too)
#: and the ledger's own.
OFFLINE_CONNECTORS = ("slack", "jira", "ledger", "wiki")


def load_demo_agents(config: Config, env: dict[str, str]) -> tuple[list[AgentSpec], list[str]]:
    """The project's agents that work offline, plus the tokenmaxxer; and those left out."""
    result = scan_agents(
        [config.agents_dir],
        value_tags=config.value_tags,
        env=env,
        min_interval_seconds=config.serve.min_interval_seconds,
    )
    result.raise_for_issues()
    chosen, left_out = [], []
    for spec in sorted(result.agents, key=lambda s: s.name):
        uses = [use.action for use in (*spec.context, *spec.tools, *spec.deliver)]
        if all(name.split(".")[0] in OFFLINE_CONNECTORS for name in uses):
            chosen.append(spec)
        else:
            left_out.append(spec.name)
    tokenmaxxer = parse_agent(TOKENMAXXER, filename="<demo tokenmaxxer>", env=env,
                              value_tags=config.value_tags)  # fmt: skip
    return [*chosen, tokenmaxxer], left_out


def copy_demo_agents(agents: list[AgentSpec], directory: Path) -> Path:
    """The demo's agents as files of its own (the tokenmaxxer too), so that its dashboard and
    `ledger forecast` know every agent's schedule, as the demo did."""
    if directory.exists():
        shutil.rmtree(directory)
    directory.mkdir(parents=True)
    for spec in agents:
        target = directory / f"{spec.name}.yaml"
        if spec.source is not None:
            shutil.copyfile(spec.source, target)
        else:
            target.write_text(TOKENMAXXER, encoding="utf-8")
    lock = find_lock(next((s.source for s in agents if s.source is not None), directory))
    if lock is not None:  # the MCP tools the agents use, as `meshagent mcp refresh` locked them
        shutil.copyfile(lock, directory / lock.name)
    return directory


@contextlib.contextmanager
def _only_demo(directory: Path) -> Iterator[None]:
    """Held while a demo runs in `directory`: a second one would overwrite its ledger."""
    import fcntl

    with (directory / ".running").open("a+") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ConfigError(
                f"a demo is already running in {directory}: wait for it to finish, or give "
                "this one another --dir"
            ) from None
        yield


def _inputs(spec: AgentSpec, box: Sandbox) -> dict[str, Any]:
    known = dict(_INPUTS)
    incidents = box.slack.messages.get("C0INCIDENT") or []
    if incidents:
        known["thread"] = incidents[0]["ts"]
    return {
        name: known[name]
        for name, declared in spec.inputs.items()
        if declared.required and declared.default is None and name in known
    }


def _fires(spec: AgentSpec, start: datetime, end: datetime) -> list[datetime]:
    """The agent's fire times in (start, end]: cron by its own rules, `every:` on the epoch's
    grid of its interval."""
    fires: set[datetime] = set()
    for trigger in spec.triggers:
        if isinstance(trigger, ScheduleTrigger):
            fire = trigger.next_fire(start).astimezone(UTC)
            while fire <= end:
                fires.add(fire)
                fire = trigger.next_fire(fire).astimezone(UTC)
        elif isinstance(trigger, EveryTrigger):
            step = trigger.interval
            fire = datetime.fromtimestamp(0, UTC) + step * (
                (start.timestamp() // step.total_seconds()) + 1
            )
            while fire <= end:
                fires.add(fire)
                fire += step
    return sorted(fires)


def _week_of_change(box: Sandbox, day: int, rng: random.Random) -> None:
    """What a day at Example Corp changes: Jira issues move, people talk in Slack."""
    if day % 2:
        return  # a quiet day: nothing changed, so skip_if_unchanged saves the next run
    issues = [key for key in box.jira.issues if key.startswith("PAY-")]
    key = issues[day % len(issues)]
    box.jira.issues[key]["summary"] = box.jira.issues[key]["summary"].split(" (day")[0] + (
        f" (day {day + 1} update)"
    )
    channel = box.slack.messages.get("C0PAYMENTS")
    if channel is not None:
        channel.append(
            {
                "type": "message",
                "user": rng.choice(["U0ALICE01", "U0BOB0002", "U0DAVE004"]),
                "text": f"Day {day + 1}: deploy went out, checking the refund numbers.",
                "ts": f"{datetime.now(UTC).timestamp() - 3600:.6f}",
            }
        )


_READERS = ["alice@example.com", "bob@example.com", "dave@example.com", "erin@example.com"]


def _react(
    ledger: Ledger,
    result: RunResult,
    rng: random.Random,
    read: dict[str, list[Any]],
    at: datetime,
) -> None:
    """People vote on what was delivered, and react or reply to it in Slack and Jira (what the
    follow-up pass reads back: `read`, by run); nobody reacts to runs that delivered nothing."""
    from meshagent.ledger.verdicts import Evidence

    if result.status != "ok" or not [o for o in result.outcomes if not o.planned]:
        return
    for person in rng.sample(_READERS, k=rng.randint(1, 3)):
        vote = 1 if rng.random() < 0.85 else -1
        ledger.add_feedback(result.run_id, person, vote)
    when = at + timedelta(hours=rng.randint(1, 6))
    if rng.random() < 0.6:  # most useful output draws no reaction at all
        what = rng.choice(["reaction:eyes", "reaction:+1", "reply"])
        read[result.run_id] = [Evidence(rng.choice(_READERS), what, when)]
    else:
        read[result.run_id] = []


def _follow_up(ledger: Ledger, read: dict[str, list[Any]], now: datetime) -> None:
    """Record every delivered outcome's verdict as the follow-up pass would, from what people
    did with it: accepted when someone other than the owner and triggerer engaged, else
    ignored once a week has passed (pending before)."""
    from meshagent.ledger import verdicts

    found = verdicts.outcome_ids(ledger, list(read))
    evidence = {o: read[run_id] for run_id, ids in found.items() for o in ids}
    if evidence:
        verdicts.judge_many(ledger, evidence, checked_at=now)


@dataclass
class _Runs:
    """The demo's runs before its ledger is read: each example agent once, then a simulated week
    of schedules, ending at ``now``; people react to each result, and ``progress`` shows it."""

    runtime: Runtime
    clock: _Clock
    agents: list[AgentSpec]
    box: Sandbox
    summary: DemoSummary
    progress: Progress | None
    now: datetime

    async def first_runs(self) -> None:
        """Each example agent once, by hand, just before the simulated week: its first scheduled
        runs come after it, as they would (a skip_if_unchanged agent then skips an unchanged
        one)."""
        rng = random.Random(7)
        examples = [spec for spec in self.agents if spec.name != "everything-watcher"]
        task = self._task("each example agent once", len(examples))
        for index, spec in enumerate(examples):
            self.clock.at = self.now - _WEEK - _BEFORE + timedelta(seconds=index)
            result = await self.runtime.run(
                spec, trigger="cli", triggered_by="demo", inputs=_inputs(spec, self.box)
            )
            self.summary.first_runs.append(result)
            self._after_run(result, rng, task)
        self.clock.at = None

    async def week(self) -> None:
        """A week of the agents' schedules, each fire run at its time on the clock."""
        rng = random.Random(42)
        start = self.now - timedelta(days=7)
        fires = sorted(
            (fire, spec.name) for spec in self.agents for fire in _fires(spec, start, self.now)
        )
        by_name = {spec.name: spec for spec in self.agents}
        task = self._task("a week of schedules", len(fires))
        day = -1
        for fire, name in fires:
            elapsed_days = int((fire - start).total_seconds() // 86400)
            if elapsed_days != day:
                day = elapsed_days
                _week_of_change(self.box, day, rng)
            self.clock.at = fire + timedelta(seconds=rng.randint(1, 20))
            spec = by_name[name]
            result = await self.runtime.run(
                spec, trigger="schedule", scheduled_for=fire, inputs=_inputs(spec, self.box)
            )
            self.summary.week_runs += 1
            self.summary.statuses[result.status] = self.summary.statuses.get(result.status, 0) + 1
            self._after_run(result, rng, task)
        self.clock.at = None

    def _task(self, description: str, total: int) -> Any:
        return self.progress.add_task(description, total=total) if self.progress else None

    def _after_run(self, result: RunResult, rng: random.Random, task: Any) -> None:
        _react(self.runtime.ledger, result, rng, self.summary.read, self.clock())
        if self.progress is not None and task is not None:
            self.progress.advance(task)


def run_demo(
    base: Config,
    directory: Path,
    *,
    console: Console | None = None,
    now: Callable[[], datetime] | None = None,
    command: str | None = None,
) -> DemoSummary:
    """Run the demo into a fresh ledger and settings under ``directory``; prints as it goes
    when given a console; `command` is how to run meshagent again (default: as it was run)."""

    directory.mkdir(parents=True, exist_ok=True)
    with _only_demo(directory):
        return _run_demo(base, directory, console=console, now=now, command=command)


def _run_demo(
    base: Config,
    directory: Path,
    *,
    console: Console | None,
    now: Callable[[], datetime] | None,
    command: str | None,
) -> DemoSummary:
    from meshagent.config import load_config

    for stale in directory.glob("ledger.db*"):
        stale.unlink()
    clock = _Clock()
    moment = (now or (lambda: datetime.now(UTC)))()
    with contextlib.ExitStack() as stack:
        box = stack.enter_context(Sandbox())
        box.start_wiki()  # the MCP example agent writes a page there
        env = box.env()
        agents, left_out = load_demo_agents(base, env)
        agents_dir = copy_demo_agents(agents, directory / "agents")
        settings = write_demo_config(base, directory, agents_dir)
        # The demo's file says it all: no MESHAGENT_* variable may point it at a real ledger.
        config = load_config(settings, env={})
        ledger = stack.enter_context(Ledger.open(config.ledger_url))
        if console is not None and left_out:
            console.print(
                f"[dim]Left out (they read the web, which the demo never reaches): "
                f"{', '.join(left_out)}[/]"
            )
        runtime = Runtime(config, ledger=ledger, env=env, clock=clock)
        summary = DemoSummary(config.ledger_url, [spec.name for spec in agents])
        summary.settings = settings
        progress = _progress(console)
        with progress or contextlib.nullcontext():
            runs = _Runs(runtime, clock, agents, box, summary, progress, moment)
            asyncio.run(runs.first_runs())
            asyncio.run(runs.week())
        _follow_up(ledger, summary.read, moment)
        from meshagent.cli.demo_approvals import decide_first_requests

        decided_at = moment - _WEEK - _BEFORE + timedelta(minutes=20)
        summary.approvals = asyncio.run(
            decide_first_requests(runtime, clock, summary.first_runs, agents, decided_at)
        )
        if console is not None:
            _print_results(console, ledger, config, agents, box, summary, moment, command)
    return summary


def _value_table(report: Any, label: str) -> Table:
    """Value observed against cost per agent, the headline first, narrow enough for an
    80-column terminal."""
    from meshagent.ledger.render import minutes, money

    table = Table(title=f"Cost against value, {label}", title_justify="left")
    table.add_column("agent", no_wrap=True)
    for header in ("acc.", "$/acc.", "claimed", "evidenced", "cost", "runs"):
        table.add_column(header, justify="right", no_wrap=True)
    table.caption = (
        "acc.: accepted outcomes (output someone else took up); claimed, evidenced: minutes "
        "saved the agent file claims, and those the evidence supports"
    )
    table.caption_justify = "left"
    for row in report.rows:
        evidence = report.evidence_of(row)
        per = evidence.cost_per_accepted
        table.add_row(
            Text(row.group),
            f"{evidence.accepted_outcomes:,}",
            money(per) if per is not None else "-",
            minutes(evidence.minutes_claimed),
            minutes(evidence.minutes_evidenced),
            money(row.cost_usd),
            f"{row.runs:,}",
        )
    return table


def _side_by_side(
    ledger: Ledger, report: Any, found: tuple[Any, ...], honest: str, gamer: str
) -> Table | None:
    """An honest agent and the gamer, figure by figure, with the evidence that tells them
    apart: what readers did with each one's output, and the flags on it."""
    import json

    from sqlalchemy import select

    from meshagent.ledger.render import minutes, money
    from meshagent.ledger.schema import entries, outcomes

    rows = {row.group: row for row in report.rows}
    if honest not in rows or gamer not in rows:
        return None
    table = Table(title="An honest agent and a gamer, side by side", title_justify="left")
    table.add_column("", no_wrap=True)
    table.add_column(honest)
    table.add_column(gamer)

    def evidence(name: str) -> str:
        query = (
            select(outcomes.c.verdict, outcomes.c.evidence)
            .join(entries, entries.c.run_id == outcomes.c.run_id)
            .where(entries.c.agent == name, outcomes.c.verdict == "accepted")
            .order_by(outcomes.c.id)
            .limit(1)
        )
        first = ledger.read(lambda c: c.execute(query).first(), what="read the demo's evidence")
        if first is None:
            return "no one took any output up"
        item = (json.loads(first.evidence or "[]") or [{}])[0]
        when = str(item.get("when") or "")[:16].replace("T", " ")
        return f"e.g. {item.get('who')} {item.get('what')} at {when}"

    def flagged(name: str) -> str:
        mine = [flag for flag in found if flag.subject == name]
        return ", ".join(f"{flag.rule} {money(flag.usd)}" for flag in mine) or "none"

    pair = [rows[honest], rows[gamer]]
    value = [report.evidence_of(row) for row in pair]
    table.add_row("runs", *(f"{row.runs:,}" for row in pair))
    table.add_row("cost", *(money(row.cost_usd) for row in pair))
    table.add_row("delivered", *(f"{row.runs_with_outcome:,} runs" for row in pair))
    table.add_row("accepted outcomes", *(f"{v.accepted_outcomes:,}" for v in value))
    per = [v.cost_per_accepted for v in value]
    table.add_row("$ per accepted", *(money(p) if p is not None else "-" for p in per))
    table.add_row(
        "minutes claimed / evidenced",
        *(f"{minutes(v.minutes_claimed)} / {minutes(v.minutes_evidenced)}" for v in value),
    )
    table.add_row("evidence", evidence(honest), evidence(gamer))
    table.add_row("flags", flagged(honest), flagged(gamer))
    return table


def _progress(console: Console | None) -> Progress | None:
    if console is None:
        return None
    return Progress(
        TextColumn("{task.description:<28}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
    )


def _print_results(
    console: Console,
    ledger: Ledger,
    config: Config,
    agents: list[AgentSpec],
    box: Sandbox,
    summary: DemoSummary,
    now: datetime,
    command: str | None,
) -> None:
    from meshagent.ledger import render, reports
    from meshagent.ledger.flags import flag_report
    from meshagent.ledger.render import plural

    period = demo_period(now)
    console.print()
    console.print(
        f"[bold]What the agents did[/]: {plural(len(box.slack.posted), 'Slack message')} "
        f"posted, {plural(len(box.jira.comments_added), 'Jira comment')}; "
        f"{plural(summary.week_runs, 'scheduled run')} in the simulated week: "
        + ", ".join(f"{count} {status}" for status, count in sorted(summary.statuses.items()))
    )
    from meshagent.cli.demo_approvals import print_decisions

    staged = sum(len(result.staged) for result in summary.first_runs)
    print_decisions(console, summary.approvals, staged - len(summary.approvals))
    console.print(
        "[dim]The offline model costs nothing; the demo prices it like openai:gpt-4.1-mini "
        "($0.40 in / $1.60 out per million tokens) so the money columns mean something.[/]"
    )
    by_agent = reports.summary(ledger, by="agent", period=period, viewer=DEMO_VIEWER,
                               privacy=config.privacy)  # fmt: skip
    console.print(_value_table(by_agent, period.label))
    flagged = flag_report(ledger, period=period, settings=config.flags, viewer=DEMO_VIEWER,
                          privacy=config.privacy)  # fmt: skip
    found = flagged.flags
    pair = _side_by_side(ledger, by_agent, found, "standup-digest", TOKENMAXXER_NAME)
    if pair is not None:
        console.print(pair)
    if found:
        shown = found[:4]  # ranked by dollars at stake and strength of evidence
        console.print(render.flags_table(shown, scope=flagged.scope))
        if len(found) > len(shown):
            console.print(f"[dim]… and {len(found) - len(shown)} more flags[/]")
    fires = {spec.name: spec.fires_per_month(now.date()) for spec in agents}
    forecast = reports.forecast(ledger, fires, today=now.date(), viewer=DEMO_VIEWER,
                                privacy=config.privacy)  # fmt: skip
    if forecast:
        console.print(render.forecast_table(forecast))
    waste = [row for row in by_agent.rows if row.runs and not row.runs_with_outcome]
    if waste:
        total = sum((row.cost_usd or Decimal(0)) for row in waste)
        names = ", ".join(row.group for row in waste)
        console.print(
            f"[bold yellow]Runs that bought nothing[/]: {names} spent {render.money(total)} "
            "in the simulated week without a single outcome - that is the number to watch, "
            "not tokens."
        )
    console.print()
    print_text(
        console,
        f"The demo has its own ledger and settings in {summary.settings.parent} (your project's "
        "ledger was not touched). Look at it:",
    )
    for line in demo_commands(summary.settings, period, command=command):
        print_command(console, line)
    print_text(console, f"On the dashboard, the demo's days ({period.label}) are at")
    last = period.end - timedelta(days=1)
    print_command(console, f"http://127.0.0.1:8765/?from={period.start}&to={last}")
    print_text(console, "Then write an agent of your own:")
    print_command(console, shell_line("init", "my-first-agent", command=command))


def demo_commands(settings: Path, period: Period, *, command: str | None = None) -> list[str]:
    """The commands that open the demo's ledger over its days, each one line to paste."""
    ledger = ("--config", settings, "ledger", "--viewer", DEMO_VIEWER)
    days = ("--from", str(period.start), "--to", str(period.end - timedelta(days=1)))
    return [
        shell_line("--config", settings, "dashboard", "--user", DEMO_VIEWER, command=command),
        shell_line(*ledger, "report", "--by", "agent", *days, command=command),
        shell_line(*ledger, "flags", *days, command=command),
    ]
