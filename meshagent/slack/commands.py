"""The slash commands: `/meshagent help | list | run | status | me | report | flags | NAME` and
each agent's own `/NAME`.

Every command becomes a :class:`Plan`: what the acknowledgement says (sent within Slack's three
seconds) and, for anything slower, the work that runs in the background and answers through
the command's :class:`~meshagent.slack.respond.Reply`. Refusals and mistakes are answered in the
acknowledgement, to the person who typed the command only.
"""

from __future__ import annotations

import difflib

from meshagent.actions import closest
from meshagent.agentfile.spec import AgentSpec
from meshagent.slack.command_base import (
    MAIN_COMMAND,
    SUBCOMMANDS,
    Command,
    Plan,
)
from meshagent.slack.ledger_commands import LedgerCommands
from meshagent.slack.messages import escape, note, section
from meshagent.slack.report_commands import ReportCommands
from meshagent.slack.run_commands import RunCommands, parse_inputs

__all__ = ["MAIN_COMMAND", "SUBCOMMANDS", "Command", "Commands", "Plan", "parse_inputs"]


class Commands(RunCommands, LedgerCommands, ReportCommands):
    """Turns commands into plans; holds what they share (agents, people, ledger, limits).

    Each group of commands is a module of its own: running agents, help and list
    (`run_commands`), a run's status and the person's week (`ledger_commands`), the report and
    the flags (`report_commands`); what they share is in `command_base`.
    """

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
