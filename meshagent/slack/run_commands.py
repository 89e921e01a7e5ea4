"""Running an agent from Slack (`/meshagent run AGENT`, `/meshagent NAME`, an agent's own
`/NAME`), and the commands that say what may be run: `help` and `list`.
"""

from __future__ import annotations

import asyncio
import contextlib
import difflib
import logging
import re
from typing import TYPE_CHECKING, Any

from meshagent.actions import closest
from meshagent.agentfile.spec import AgentSpec
from meshagent.exceptions import MeshAgentError, RunError
from meshagent.slack.access import (
    check_access,
    may_use_somewhere,
    slash_triggers,
)
from meshagent.slack.command_base import (
    _MAX_LINES,
    MAIN_COMMAND,
    Command,
    CommandsBase,
    Plan,
    _inputs_text,
    _invocation,
    _Runnable,
)
from meshagent.slack.manifest import own_command_problem
from meshagent.slack.messages import (
    escape,
    note,
    result_messages,
    section,
    shows_answer,
)
from meshagent.slack.respond import Reply

if TYPE_CHECKING:
    from sqlalchemy import Connection

log = logging.getLogger(__name__)

_PAIR = re.compile(  # key=value, the value bare or in straight or curly (Slack's) quotes
    r"""(?<!\S)([A-Za-z_][A-Za-z0-9_]*)="""
    r"""(?:"([^"]*)"|'([^']*)'|\u201c([^\u201d]*)\u201d|\u2018([^\u2019]*)\u2019|(\S*))"""
)


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


class RunCommands(CommandsBase):
    """Running agents, and saying which may be run."""

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
        answered = False  # every message of the result reached the person
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
            answered = all(sent)
            if answered and shows_answer(result):
                await self._record_after_acks(cmd, spec, result.run_id)
            if self.on_result is not None:
                self.on_result(result.run_id, messages[-1]["blocks"])
        except asyncio.CancelledError:
            if answered:  # stopping after the answer: nothing was interrupted
                raise
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

    async def _record_after_acks(self, cmd: Command, spec: AgentSpec, run_id: str) -> None:
        """`_record_ephemeral` once the acknowledgements in flight are sent (``settled``): the
        person has the answer, and the writes of a burst's answers on the group commit's thread
        would take the interpreter from the next burst's acknowledgements. Stopping meanwhile
        records it at once."""
        if self.settled is not None:
            try:
                await self.settled()
            except asyncio.CancelledError:
                await self._record_ephemeral(cmd, spec, run_id)
                raise
        await self._record_ephemeral(cmd, spec, run_id)

    async def _record_ephemeral(self, cmd: Command, spec: AgentSpec, run_id: str) -> None:
        """The answer shown only to the person who asked: an outcome whose audience is them
        (reaching someone other than the owner unless they are the owner).

        Written through the ledger's group commit: the answers of a burst share a few
        transactions on its writer thread, instead of a thread and a transaction each.
        """
        from meshagent.ledger.people import names_of
        from meshagent.ledger.records import Outcome

        owner = spec.owner.strip().lstrip("@").lower()

        def answer(connection: Connection) -> Outcome:
            own = owner in {n.lower() for n in names_of(connection, cmd.user_id)}
            return Outcome(
                "slack.ephemeral",
                f"{cmd.channel_id}:{cmd.user_id}",
                audience="ephemeral",
                audience_size=1,
                reaches_others=not own,
                reach_detail={"user": cmd.user_id, "channel": cmd.channel_id},
            )

        try:
            await self.ledger.aadd_outcome(run_id, answer)
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


def _plain(exc: BaseException) -> str:
    if isinstance(exc, MeshAgentError):
        return str(exc)
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {first}"[:300] if first else type(exc).__name__


def _usage(spec: AgentSpec) -> str:
    names = [t.slash for t in slash_triggers(spec)] or [spec.name]
    pairs = " ".join(f"{name}=..." for name in spec.inputs)
    usage = f"Usage: `{_invocation(names[0])}{' ' + pairs if pairs else ''}`"
    if spec.inputs:
        usage += f"; inputs: {_inputs_text(spec)}"
    return usage
