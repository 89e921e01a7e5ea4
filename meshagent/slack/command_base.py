"""What the slash commands share: the command as Slack sent it, the plan that answers it, the
agents that answer slash names, and who is asking (an admin or not).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from meshagent.agentfile.spec import AgentSpec, SlashTrigger
from meshagent.config import Config
from meshagent.runtime.runner import Runtime
from meshagent.slack.access import (
    Caller,
    Directory,
    LookupFailed,
    slash_triggers,
)
from meshagent.slack.messages import (
    escape,
)
from meshagent.slack.respond import Reply

log = logging.getLogger(__name__)

MAIN_COMMAND = "/meshagent"
SUBCOMMANDS = ("help", "list", "run", "status", "me", "report", "flags")
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


@dataclass(frozen=True)
class _Runnable:
    spec: AgentSpec
    trigger: SlashTrigger | None  # None: named by the agent's name, any slash trigger


class CommandsBase:
    """What the commands share (agents, people, ledger, limits)."""

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
        # Awaited before the bookkeeping that follows an answer (the Slack app's AcksFirst):
        # the next burst's acknowledgements go first.
        self.settled: Callable[[], Awaitable[None]] | None = None

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
