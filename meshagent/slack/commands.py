"""The slash commands: `/meshagent help | list | run | status | me | report | flags | NAME` and
each agent's own `/NAME`.

Every command becomes a :class:`Plan`: what the acknowledgement says (sent within Slack's three
seconds) and, for anything slower, the work that runs in the background and answers through
the command's :class:`~meshagent.slack.respond.Reply`. Refusals and mistakes are answered in the
acknowledgement, to the person who typed the command only.
"""

from __future__ import annotations

import asyncio
import contextlib
import difflib
import logging
import re
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import func, or_, select

from meshagent.actions import closest
from meshagent.config import Config
from meshagent.exceptions import LedgerError, MeshAgentError, RunError
from meshagent.ledger import render, reports
from meshagent.ledger.flags import Flag, flag_report
from meshagent.ledger.people import directory
from meshagent.ledger.periods import Period
from meshagent.ledger.privacy import OTHER
from meshagent.ledger.schema import DAILY_SUMS, daily, entries
from meshagent.ledger.schema import feedback as feedback_table
from meshagent.ledger.value import credits
from meshagent.runtime import Runtime
from meshagent.slack.access import (
    Caller,
    Directory,
    LookupFailed,
    check_access,
    may_use_somewhere,
    slash_triggers,
)
from meshagent.slack.manifest import own_command_problem
from meshagent.slack.messages import (
    cost_text,
    escape,
    note,
    result_messages,
    section,
    shows_answer,
    tokens_text,
)
from meshagent.slack.respond import Reply
from meshagent.spec import AgentSpec, SlashTrigger

__all__ = ["MAIN_COMMAND", "SUBCOMMANDS", "Command", "Commands", "Plan", "parse_inputs"]

log = logging.getLogger(__name__)

MAIN_COMMAND = "/meshagent"
SUBCOMMANDS = ("help", "list", "run", "status", "me", "report", "flags")
PERIODS = ("day", "week", "month")
_PAIR = re.compile(  # key=value, the value bare or in straight or curly (Slack's) quotes
    r"""(?<!\S)([A-Za-z_][A-Za-z0-9_]*)="""
    r"""(?:"([^"]*)"|'([^']*)'|\u201c([^\u201d]*)\u201d|\u2018([^\u2019]*)\u2019|(\S*))"""
)
_MAX_LINES = 25

Work = Callable[[Reply], Awaitable[None]]


@dataclass(frozen=True)
class Command:
    """One slash command, as Slack sent it."""

    command: str
    text: str
    user_id: str
    channel_id: str = ""
    channel_name: str = ""
    user_name: str = ""
    response_url: str | None = None

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> Command:
        return cls(
            command=str(body.get("command") or "").lower(),
            text=str(body.get("text") or "").strip(),
            user_id=str(body.get("user_id") or ""),
            channel_id=str(body.get("channel_id") or ""),
            channel_name=str(body.get("channel_name") or ""),
            user_name=str(body.get("user_name") or ""),
            response_url=body.get("response_url") or None,
        )

    @property
    def caller(self) -> Caller:
        return Caller(self.user_id, self.channel_id, self.channel_name, self.user_name)


@dataclass
class Plan:
    """What to acknowledge at once, and the work (if any) that answers later."""

    ack: dict[str, Any]
    work: Work | None = None
    label: str = ""


def parse_inputs(spec: AgentSpec, text: str) -> dict[str, Any]:
    """``key=value`` pairs for the agent's inputs; the remaining text goes to its first input.

    Values may be quoted (``team="core payments"``). A key close to an input's name is taken
    for a typo and refused with the suggestion; other ``a=b`` words stay in the free text.
    """
    given: dict[str, Any] = {}
    names = list(spec.inputs)

    def take(match: re.Match[str]) -> str:
        key = match.group(1)
        value = next(v for v in match.groups()[1:] if v is not None)
        if key in spec.inputs:
            if key in given:
                raise RunError(f"input {key!r} is given twice")
            given[key] = value
            return ""
        hint = difflib.get_close_matches(key, names, n=1, cutoff=0.75)
        if hint:
            raise RunError(
                f"{spec.name} has no input {key!r}; did you mean {hint[0]!r}? "
                f"(inputs: {', '.join(names)})"
            )
        return match.group(0)

    rest = _PAIR.sub(take, text)
    free = " ".join(rest.split())
    if free:
        if not names:
            raise RunError(f"{spec.name} takes no inputs, but got {free!r}")
        first = names[0]
        if first in given:
            raise RunError(
                f"the text after the agent's name goes to its first input {first!r}, "
                f"which is already given as {first}=...; use key=value for the rest"
            )
        given[first] = free
    return given


@dataclass(frozen=True)
class _Runnable:
    spec: AgentSpec
    trigger: SlashTrigger | None  # None: named by the agent's name, any slash trigger


class Commands:
    """Turns commands into plans; holds what they share (agents, people, ledger, limits)."""

    def __init__(
        self,
        config: Config,
        runtime: Runtime,
        agents: Callable[[], list[AgentSpec]],
        directory: Directory,
        *,
        ack_seconds: float = 2.0,
        max_runs_per_user: int = 3,
    ) -> None:
        self.config = config
        self.runtime = runtime
        self.agents = agents
        self.directory = directory
        self.ack_seconds = ack_seconds
        self.max_runs_per_user = max_runs_per_user
        self.running: Counter[str] = Counter()
        self.on_result: Callable[[str, list[dict[str, Any]]], None] | None = None

    @property
    def ledger(self) -> Any:
        return self.runtime.ledger

    # -- the agents ---------------------------------------------------------------------------

    def specs(self) -> list[AgentSpec]:
        try:
            return sorted(self.agents(), key=lambda spec: spec.name)
        except Exception as exc:  # the agents directory is being rewritten: answer without it
            log.warning("could not list the agents: %s", exc)
            return []

    def commands(self, specs: list[AgentSpec] | None = None) -> dict[str, _Runnable]:
        """Slash name -> agent and trigger, over every agent with a slash trigger."""
        found: dict[str, _Runnable] = {}
        for spec in specs if specs is not None else self.specs():
            for trigger in slash_triggers(spec):
                found.setdefault(trigger.slash, _Runnable(spec, trigger))
        return found

    def _find(self, ref: str, specs: list[AgentSpec]) -> _Runnable | None:
        ref = ref.lower().removeprefix("/")
        by_command = self.commands(specs)
        if ref in by_command:
            return by_command[ref]
        for spec in specs:
            if spec.name == ref:
                return _Runnable(spec, None)
        return None

    # -- planning -----------------------------------------------------------------------------

    async def plan(self, cmd: Command) -> Plan:
        """The acknowledgement and background work for one command."""
        if cmd.command != MAIN_COMMAND:
            name = cmd.command.removeprefix("/")
            specs = self.specs()
            found = self.commands(specs).get(name)
            if found is None:
                return Plan(
                    note(
                        f"No agent answers `/{escape(name)}` here any more. "
                        f"See `{MAIN_COMMAND} list` for the agents you may run."
                    )
                )
            return await self._plan_run(cmd, found, cmd.text)
        word, _, rest = cmd.text.partition(" ")
        word, rest = word.lower(), rest.strip()
        if word in ("", "help"):
            return Plan(note("MeshAgent commands", blocks=[section(self.help_text())]))
        if word == "run":
            name, _, args = rest.partition(" ")
            if not name:
                return Plan(note(f"Which agent? `{MAIN_COMMAND} run AGENT [key=value ...]`"))
            return await self._plan_named(cmd, name, args.strip())
        if word == "list":
            return Plan({}, (lambda reply: self._list(cmd, reply)), "list")
        if word == "status":
            if not rest:
                return Plan(note(f"Which run? `{MAIN_COMMAND} status RUN_ID`"))
            return Plan({}, (lambda reply: self._status(cmd, reply, rest)), "status")
        if word == "me":
            return Plan({}, (lambda reply: self._me(cmd, reply)), "me")
        if word == "report":
            return Plan({}, (lambda reply: self._report(cmd, reply, rest)), "report")
        if word == "flags":
            return Plan({}, (lambda reply: self._flags(cmd, reply)), "flags")
        specs = self.specs()
        if self._find(word, specs) is not None:
            return await self._plan_named(cmd, word, rest, specs)
        return Plan(note(self._unknown(word, specs)))

    def _unknown(self, word: str, specs: list[AgentSpec]) -> str:
        candidates = [*SUBCOMMANDS, *self.commands(specs)]
        hint = difflib.get_close_matches(word, candidates, n=1, cutoff=0.6)
        guess = hint[0] if hint else closest(word, candidates)
        text = f"Unknown command `{escape(word)}`."
        if guess:
            text += f" Did you mean `{MAIN_COMMAND} {guess}`?"
        return text + f" See `{MAIN_COMMAND} help`."

    async def _plan_named(
        self, cmd: Command, name: str, args: str, specs: list[AgentSpec] | None = None
    ) -> Plan:
        specs = specs if specs is not None else self.specs()
        found = self._find(name, specs)
        if found is None:
            candidates = [*self.commands(specs), *(s.name for s in specs)]
            hint = closest(name.lower(), candidates)
            text = f"No agent named `{escape(name)}`."
            if hint:
                text += f" Did you mean `{hint}`?"
            return Plan(note(text + f" See `{MAIN_COMMAND} list`."))
        return await self._plan_run(cmd, found, args)

    async def _plan_run(self, cmd: Command, found: _Runnable, args: str) -> Plan:
        spec = found.spec
        try:
            given = parse_inputs(spec, args)
            self.runtime.check_inputs(spec, given)
        except RunError as exc:
            return Plan(note(f":warning: {escape(str(exc))}\n{_usage(spec)}"))
        deferred = False
        # A timeout scope, not wait_for: on Python 3.11 that runs the check in a task of its
        # own, and each command would then wait two more turns of a busy event loop to be acked.
        try:
            async with asyncio.timeout(self.ack_seconds):
                reason = await check_access(spec, cmd.caller, self.directory, found.trigger)
        except TimeoutError:  # Slack is slow to say who this is: check after the ack
            reason, deferred = None, True
        if reason is not None:
            return Plan(note(f":no_entry: {escape(reason)}"))
        if self.running[cmd.user_id] >= self.max_runs_per_user:
            return Plan(
                note(
                    f":hourglass: You already have {self.running[cmd.user_id]} runs in progress; "
                    "wait for one to finish."
                )
            )

        self.running[cmd.user_id] += 1  # counted from now: the run starts after the ack

        async def work(reply: Reply) -> None:
            await self._run(cmd, found, given, reply, check=deferred)

        return Plan(note(f":hourglass_flowing_sand: running {spec.name}…"), work, spec.name)

    async def _run(
        self,
        cmd: Command,
        found: _Runnable,
        given: dict[str, Any],
        reply: Reply,
        *,
        check: bool,
    ) -> None:
        spec = found.spec
        try:
            if check:
                reason = await check_access(spec, cmd.caller, self.directory, found.trigger)
                if reason is not None:
                    await reply.send(note(f":no_entry: {escape(reason)}"))
                    return
            await self.directory.link(self.ledger, cmd.user_id)
            result = await self.runtime.run(
                spec, trigger="slash", triggered_by=cmd.user_id, inputs=given
            )
            messages = result_messages(result, channel_id=cmd.channel_id, limit=reply.left)
            sent = [await reply.send(message) for message in messages]
            if all(sent) and shows_answer(result):
                await self._record_ephemeral(cmd, spec, result.run_id)
            if self.on_result is not None:
                self.on_result(result.run_id, messages[-1]["blocks"])
        except asyncio.CancelledError:
            text = (
                f":warning: {spec.name} was interrupted: MeshAgent is stopping. "
                "Its ledger entry says interrupted; run it again later."
            )
            with contextlib.suppress(Exception):
                await asyncio.wait_for(reply.send(note(text)), 2)
            raise
        except Exception as exc:
            log.warning("slash run of %s failed: %s", spec.name, _plain(exc))
            await reply.send(note(f":x: {spec.name} could not run: {escape(_plain(exc))}"))
        finally:
            self.running[cmd.user_id] -= 1
            if self.running[cmd.user_id] <= 0:
                del self.running[cmd.user_id]

    # -- help and list ----------------------------------------------------------------------------

    def help_text(self) -> str:
        lines = [
            "*MeshAgent*: run agents from Slack and see what they cost and deliver.",
            f"`{MAIN_COMMAND} list`: the agents you may run",
            f"`{MAIN_COMMAND} run AGENT [key=value ...] [text]`: run one; text after the "
            "name goes to its first input",
            f"`{MAIN_COMMAND} NAME ...`: run an agent by its slash name",
            f"`{MAIN_COMMAND} status RUN_ID`: one run's status, tokens, cost and outcomes",
            f"`{MAIN_COMMAND} me`: your runs this week (only you see it)",
            f"`{MAIN_COMMAND} report [team] [day|week|month]`: the ledger report "
            "(small groups are folded into 'other')",
            f"`{MAIN_COMMAND} flags`: tokenmaxxing flags on your runs (admins: all)",
        ]
        names = sorted(name for name in self.commands() if own_command_problem(name) is None)
        if names:
            lines.append("Agent commands: " + ", ".join(f"`/{name}`" for name in names))
        return "\n".join(lines)

    async def _record_ephemeral(self, cmd: Command, spec: AgentSpec, run_id: str) -> None:
        """The answer shown only to the person who asked: an outcome whose audience is them
        (reaching someone other than the owner unless they are the owner)."""
        from meshagent.ledger.people import person_of

        def record() -> None:
            asker = person_of(self.ledger, cmd.user_id)
            names = {i.value for i in asker.identities} if asker else {cmd.user_id}
            owner = spec.owner.strip().lstrip("@").lower()
            own = owner in {n.lower() for n in names}
            self.ledger.add_outcome(
                run_id,
                "slack.ephemeral",
                f"{cmd.channel_id}:{cmd.user_id}",
                audience="ephemeral",
                audience_size=1,
                reaches_others=not own,
                reach_detail={"user": cmd.user_id, "channel": cmd.channel_id},
            )

        try:
            await asyncio.to_thread(record)
        except Exception as exc:  # noqa: BLE001 - the person has their answer either way
            log.warning("could not record the ephemeral answer of %s: %s", run_id, exc)

    async def _list(self, cmd: Command, reply: Reply) -> None:
        lines = []
        for spec in self.specs():
            triggers = slash_triggers(spec)
            if not triggers:
                continue
            places = await may_use_somewhere(spec, cmd.caller, self.directory)
            if not places:
                continue
            name = triggers[0].slash
            how = f"`{_invocation(name)}`"
            if own_command_problem(name) is None:
                how += f" (or `/{name}`)"
            line = f"• {how}: {escape(spec.description or spec.name)}"
            if places != ["*"]:
                line += f" _only in {escape(', '.join(places))}_"
            if spec.inputs:
                line += f"\n    inputs: {_inputs_text(spec)}"
            lines.append(line)
        if not lines:
            await reply.send(note("No agent lets you run it from Slack."))
            return
        text = "*Agents you may run*\n" + "\n".join(lines[:_MAX_LINES])
        if len(lines) > _MAX_LINES:
            text += f"\n…and {len(lines) - _MAX_LINES} more"
        await reply.send(note("Agents you may run", blocks=[section(text)]))

    # -- admins and who is asking ---------------------------------------------------------------

    async def admin_name(self, caller: Caller) -> str | None:
        """The name under which ``caller`` is an admin ([slack] or [privacy] admins), or None."""
        admins = {*self.config.slack.admins, *self.config.privacy.admins}
        if caller.user_id in admins:
            return caller.user_id
        lowered = {a.lower() for a in admins if not a.startswith(("U", "W"))}
        if not lowered:
            return None
        try:
            person = await self.directory.person(caller.user_id)
        except LookupFailed:
            return None
        for value in (person.email, person.name, f"@{person.name}"):
            if value and value.lower() in lowered:
                return next(a for a in admins if a.lower() == value.lower())
        return None

    async def _viewer(self, caller: Caller) -> str:
        """Who the reports see: the admin name when privacy admins list it, else the user id."""
        name = await self.admin_name(caller)
        if name is not None and name in self.config.privacy.admins:
            return name
        return caller.user_id

    # -- status ---------------------------------------------------------------------------------

    def _entry(self, ref: str) -> tuple[dict[str, Any] | None, str | None]:
        ref = ref.strip().strip("`")
        found = self.ledger.entry(ref)
        if found is not None:
            return found, None
        if len(ref) < 6 or not re.fullmatch(r"[0-9a-fA-F-]+", ref):
            return None, None
        query = select(entries.c.run_id).where(entries.c.run_id.like(f"{ref}%")).limit(2)
        ids = self.ledger.read(lambda c: c.execute(query).scalars().all(), what="find a run")
        if len(ids) > 1:
            return None, f"`{escape(ref)}` matches several runs: give more of the run id."
        return (self.ledger.entry(ids[0]), None) if ids else (None, None)

    def _annotations(self, run_id: str) -> tuple[list[Any], dict[int, int]]:
        votes_query = (
            select(feedback_table.c.vote, func.count())
            .where(feedback_table.c.run_id == run_id)
            .group_by(feedback_table.c.vote)
        )
        votes = dict(self.ledger.read(lambda c: c.execute(votes_query).all(), what="read votes"))
        return self.ledger.outcomes(run_id), votes

    async def _status(self, cmd: Command, reply: Reply, ref: str) -> None:
        entry, problem = await asyncio.to_thread(self._entry, ref)
        missing = f"No run `{escape(ref)}` that you may see."
        if problem:
            await reply.send(note(problem))
            return
        if entry is None or not await self._may_see(cmd.caller, entry):
            await reply.send(note(missing))
            return
        outcomes, votes = await asyncio.to_thread(self._annotations, entry["run_id"])
        await reply.send(
            note(f"run {entry['run_id']}", blocks=[section(_status_text(entry, outcomes, votes))])
        )

    async def _may_see(self, caller: Caller, entry: Mapping[str, Any]) -> bool:
        if entry.get("triggered_by") == caller.user_id:
            return True
        if await self.admin_name(caller) is not None:
            return True
        owner = str(entry.get("owner") or "").lower()
        if not owner:
            return False
        try:
            return owner in (await self.directory.person(caller.user_id)).names()
        except LookupFailed:
            return False

    # -- me ---------------------------------------------------------------------------------------

    def _my_week(self, user_id: str, period: Period) -> list[tuple[str, dict[str, Any]]]:
        """Per agent, the week's runs that are the person's (they asked for them, or own the
        agent when nobody asked), under any of their identities, with the accepted outcomes
        and minutes evidenced credited to them beside the minutes claimed."""
        people = directory(self.ledger)
        names = sorted(people.names(user_id))
        sums = [func.sum(daily.c[name]).label(name) for name in DAILY_SUMS]
        query = (
            select(daily.c.agent, *sums)
            .where(
                or_(daily.c.person.in_(names), func.lower(daily.c.person).in_(names)),
                daily.c.day >= period.start,
                daily.c.day < period.end,
            )
            .group_by(daily.c.agent)
            .order_by(daily.c.agent)
        )
        found = self.ledger.read(lambda c: c.execute(query).all(), what="read my runs")
        rows = [(row[0], dict(zip(DAILY_SUMS, row[1:], strict=True))) for row in found]
        me = people.key(user_id)
        for credit in credits(self.ledger, period, value=self.config.value, people=people):
            if credit.person == me:
                sums = next((s for agent, s in rows if agent == credit.agent), None)
                if sums is not None:
                    sums["accepted"] = sums.get("accepted", 0) + 1
                    sums["evidenced"] = sums.get("evidenced", Decimal(0)) + credit.minutes
        return rows

    async def _me(self, cmd: Command, reply: Reply) -> None:
        period = Period.week(datetime.now(UTC).date())
        await self.directory.link(self.ledger, cmd.user_id)  # their email's runs are theirs too
        rows = await asyncio.to_thread(self._my_week, cmd.user_id, period)
        title = f"*Your runs this week* ({period.label}; only you see this)"
        if not rows:
            await reply.send(note(f"{title}\nNo finished runs yet this week."))
            return
        lines = [f"• {escape(agent)}: {_sums_text(sums)}" for agent, sums in rows[:_MAX_LINES]]
        total: dict[str, Any] = {}
        for _, sums in rows:
            for key, value in sums.items():
                total[key] = total.get(key, 0) + (value or 0)
        text = "\n".join([title, *lines, f"*Total*: {_sums_text(total)}"])
        await reply.send(note("Your runs this week", blocks=[section(text)]))

    # -- report -----------------------------------------------------------------------------------

    def _team_agents(self, team: str, period: Period) -> set[str]:
        query = (
            select(daily.c.agent)
            .where(daily.c.team == team, daily.c.day >= period.start, daily.c.day < period.end)
            .distinct()
        )
        found = self.ledger.read(lambda c: c.execute(query).scalars().all(), what="read a team")
        return set(found)

    async def _report(self, cmd: Command, reply: Reply, args: str) -> None:
        words = args.split()
        name = next((w for w in words if w.lower() in PERIODS), "week").lower()
        rest = [w for w in words if w.lower() not in PERIODS]
        if len(rest) > 1:
            await reply.send(note(f"Usage: `{MAIN_COMMAND} report [team] [day|week|month]`"))
            return
        team = rest[0] if rest else None
        period = Period.named(name)
        viewer = await self._viewer(cmd.caller)
        try:
            report = await asyncio.to_thread(
                reports.summary,
                self.ledger,
                by="agent" if team else "team",
                period=period,
                viewer=viewer,
                privacy=self.config.privacy,
            )
            mine = await asyncio.to_thread(self._team_agents, team, period) if team else None
            adoption = (
                None
                if team
                else await asyncio.to_thread(
                    reports.adoption,
                    self.ledger,
                    period=period,
                    viewer=viewer,
                    privacy=self.config.privacy,
                )
            )
        except LedgerError as exc:
            await reply.send(note(f":x: {escape(str(exc))}"))
            return
        title = f"*Ledger report* by {'agent for team ' + escape(team) if team else 'team'}, "
        title += f"{period.label}"
        if report.withheld:
            await reply.send(
                note(
                    f"{title}\nWithheld: too few people ran agents in this period to report "
                    "without singling anyone out."
                )
            )
            return
        rows = list(report.rows)
        if mine is not None:
            rows = [row for row in rows if row.group in mine]
            if not rows:
                size = self.config.privacy.min_group_size
                why = f"Team {escape(team or '')} has no runs you may see in this period" + (
                    f": teams of fewer than {size} people are counted only in '{OTHER}'."
                    if mine
                    else "."
                )
                await reply.send(note(f"{title}\n{why}"))
                return
        if not rows:
            await reply.send(note(f"{title}\nNo runs recorded in this period."))
            return
        text = f"{title}\n```\n{_report_table(report, rows)}\n```"
        text += (
            "\n_accepted: fires and requests whose outcome someone else took up; min evidenced:"
            " minutes credited for them, beside the agent files' claim._"
        )
        honest = render.adoption_text(adoption) if adoption else ""
        if honest:
            text += f"\n{escape(honest)}"
        if report.folded:
            text += f"\n_{report.folded} small groups are counted in '{OTHER}' to protect privacy._"
        await reply.send(note("Ledger report", blocks=[section(text)]))

    # -- flags ------------------------------------------------------------------------------------

    async def _flags(self, cmd: Command, reply: Reply) -> None:
        """Every flag for an admin; anyone else the flags on runs they own or triggered (any
        of their identities: the app links a Slack id to its email), and whose they are."""
        admin = await self.admin_name(cmd.caller)
        if admin is None:  # flags on runs owned by their email are theirs too
            await self.directory.link(self.ledger, cmd.user_id)
        privacy: Any = self.config.privacy
        if admin is not None:
            privacy = _Privacy(privacy.min_group_size, (*privacy.admins, admin))
        found = await asyncio.to_thread(
            flag_report,
            self.ledger,
            period=Period.named("week"),
            settings=self.config.flags,
            viewer=admin or cmd.user_id,
            privacy=privacy,
            value=self.config.value,
        )
        if not found.flags:
            passed = "every rule passed" if found.everyone else "none on runs you own or triggered"
            await reply.send(
                note(f"No tokenmaxxing flags this week: {passed} ({escape(found.scope)}).")
            )
            return
        lines = [_flag_line(flag) for flag in found.flags[:_MAX_LINES]]
        if len(found.flags) > _MAX_LINES:
            lines.append(f"…and {len(found.flags) - _MAX_LINES} more: `meshagent ledger flags`")
        text = f"*Tokenmaxxing flags this week* ({escape(found.scope)})\n" + "\n".join(lines)
        await reply.send(note("Tokenmaxxing flags", blocks=[section(text)]))


def _flag_line(flag: Flag) -> str:
    """One flag: dollars, rule, agent, owner, people, reason, innocent explanation and fix."""
    who = escape(render.flag_people(flag))
    return (
        f"• *{render.money(flag.usd)}* *{escape(flag.rule)}* {escape(flag.subject)} "
        f"(owner {escape(flag.owner or '-')}; by {who}; {len(flag.run_ids)} runs): "
        f"{escape(flag.reason)}\n    _Innocent:_ {escape(flag.innocent or '-')} "
        f"_Fix:_ {escape(flag.fix or '-')}"
    )


@dataclass(frozen=True)
class _Privacy:
    min_group_size: int
    admins: tuple[str, ...]


def _plain(exc: BaseException) -> str:
    if isinstance(exc, MeshAgentError):
        return str(exc)
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {first}"[:300] if first else type(exc).__name__


def _invocation(name: str) -> str:
    """How to run the agent with slash name ``name`` through /meshagent (``run`` when the name
    is also a subcommand: `/meshagent status` means the run status)."""
    return f"{MAIN_COMMAND} run {name}" if name in SUBCOMMANDS else f"{MAIN_COMMAND} {name}"


def _inputs_text(spec: AgentSpec) -> str:
    parts = []
    for name, declared in spec.inputs.items():
        text = f"`{name}` ({declared.type}"
        if declared.required and declared.default is None:
            text += ", required"
        elif declared.default is not None:
            text += f", default {declared.default!r}"
        parts.append(escape(text + ")"))
    return ", ".join(parts)


def _usage(spec: AgentSpec) -> str:
    names = [t.slash for t in slash_triggers(spec)] or [spec.name]
    pairs = " ".join(f"{name}=..." for name in spec.inputs)
    usage = f"Usage: `{_invocation(names[0])}{' ' + pairs if pairs else ''}`"
    if spec.inputs:
        usage += f"; inputs: {_inputs_text(spec)}"
    return usage


def _sums_text(sums: Mapping[str, Any]) -> str:
    runs = int(sums.get("runs") or 0)
    with_outcome = int(sums.get("runs_with_outcome") or 0)
    spent = tokens_text(int(sums.get("input_tokens") or 0), int(sums.get("output_tokens") or 0))
    unknown = int(sums.get("runs_cost_unknown") or 0)
    cost = None if runs and unknown == runs else Decimal(sums.get("cost_usd") or 0)
    money = cost_text(cost) + (f" (+{unknown} unknown)" if cost is not None and unknown else "")
    minutes = Decimal(sums.get("minutes_saved") or 0)
    evidenced = Decimal(sums.get("evidenced") or 0)
    votes = f":thumbsup: {int(sums.get('feedback_pos') or 0)} "
    votes += f":thumbsdown: {int(sums.get('feedback_neg') or 0)}"
    return (
        f"{runs} run{'s' if runs != 1 else ''}, {with_outcome} with an outcome · "
        f"{int(sums.get('accepted') or 0)} accepted · {evidenced.normalize():f} min evidenced of "
        f"{minutes.normalize():f} claimed · {spent} · {money} · {votes}"
    )


def _status_text(entry: Mapping[str, Any], outcomes: list[Any], votes: dict[int, int]) -> str:
    started = entry.get("started_at")
    finished = entry.get("finished_at")
    lines = [
        f"*{escape(entry['agent'])}*: {escape(entry['status'])} "
        f"({escape(entry['trigger_kind'])}"
        + (f" by <@{entry['triggered_by']}>" if entry.get("triggered_by") else "")
        + ")",
        f"run `{entry['run_id']}`",
    ]
    if started is not None:
        when = f"started {started:%Y-%m-%d %H:%M:%S} UTC"
        if finished is not None:
            when += f", took {(finished - started).total_seconds():.1f}s"
        lines.append(when)
    spent = tokens_text(
        int(entry.get("input_tokens") or 0),
        int(entry.get("output_tokens") or 0),
        bool(entry.get("usage_estimated")),
    )
    calls = int(entry.get("model_calls") or 0)
    lines.append(
        f"{spent} · {cost_text(entry.get('cost_usd'))} · {calls} model call"
        f"{'s' if calls != 1 else ''}"
    )
    for outcome in outcomes[:10]:
        ref = escape(outcome.ref)
        lines.append(
            f"{escape(outcome.kind)}: " + (f"<{outcome.url}|{ref}>" if outcome.url else ref)
        )
    lines.append(f":thumbsup: {votes.get(1, 0)} :thumbsdown: {votes.get(-1, 0)}")
    if entry.get("error"):
        lines.append(f"error: {escape(str(entry['error'])[:500])}")
    return "\n".join(lines)


def _row_cost(row: reports.ReportRow) -> str:
    text = cost_text(row.cost_usd)
    if row.cost_usd is not None and row.runs_cost_unknown:
        text += f" +{row.runs_cost_unknown}?"
    return text


def _report_table(report: reports.Report, rows: list[reports.ReportRow]) -> str:
    """The headline first (accepted outcomes, cost per accepted outcome, minutes claimed and
    evidenced), then cost, runs and tokens."""
    headers = ["group", "accepted", "$/accepted", "min claimed", "min evidenced", "cost", "runs"]
    headers.append("tokens")
    body = []
    for row in rows[:_MAX_LINES]:
        evidence = report.evidence_of(row)
        per = evidence.cost_per_accepted
        body.append(
            [
                row.group[:24],
                f"{evidence.accepted_outcomes:,}",
                render.money(per) if per is not None else "-",
                render.minutes(evidence.minutes_claimed),
                render.minutes(evidence.minutes_evidenced),
                _row_cost(row),
                f"{row.runs:,}",
                f"{row.tokens:,}",
            ]
        )
    widths = [max(len(r[i]) for r in [headers, *body]) for i in range(len(headers))]
    lines = []
    for cells in [headers, *body]:
        padded = [
            cell.ljust(widths[i]) if i == 0 else cell.rjust(widths[i])
            for i, cell in enumerate(cells)
        ]
        lines.append("  ".join(padded).rstrip())
    if len(rows) > _MAX_LINES:
        lines.append(f"…and {len(rows) - _MAX_LINES} more groups")
    return "\n".join(lines)
