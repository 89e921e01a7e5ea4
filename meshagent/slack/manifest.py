"""The Slack app manifest: commands, scopes, event subscriptions and interactivity.

With a request URL (``https://host/slack/events``) the app runs in HTTP mode and every part
points at that one endpoint; without one it runs in Socket Mode (no public URL).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

from meshagent.agentfile.spec import AgentSpec, SlashTrigger

__all__ = [
    "BOT_EVENTS",
    "BOT_SCOPES",
    "SLACK_BUILTIN_COMMANDS",
    "build_manifest",
    "left_out",
    "own_command_problem",
    "request_url",
]

MAIN_COMMAND = "/meshagent"
MAIN_USAGE = "help | list | run AGENT [key=value ...] | status RUN_ID | me | report [team] | flags"
BOT_SCOPES = (
    "commands",  # slash commands
    "chat:write",  # results, deliveries, direct messages
    "chat:write.public",  # deliveries to public channels the bot has not joined
    "channels:history",  # slack.history
    "groups:history",
    "channels:read",  # channel names to ids
    "groups:read",
    "im:write",  # slack.dm, and replies when a response_url is spent
    "reactions:read",  # 👍 / 👎 feedback on delivered messages
    "reactions:write",  # slack.add_reaction
    "users:read",  # allow lists by @handle
    "users:read.email",  # allow lists and admins by email
    "usergroups:read",  # allow lists by user group
)
BOT_EVENTS = ("reaction_added", "reaction_removed")
# Slack's built-in commands: an app's command of the same name never runs.
SLACK_BUILTIN_COMMANDS = frozenset(
    {
        "/active",
        "/away",
        "/archive",
        "/apps",
        "/call",
        "/clear",
        "/collapse",
        "/dm",
        "/dnd",
        "/expand",
        "/feed",
        "/feedback",
        "/invite",
        "/kick",
        "/leave",
        "/me",
        "/msg",
        "/mute",
        "/open",
        "/prefs",
        "/remind",
        "/remove",
        "/rename",
        "/search",
        "/shortcuts",
        "/shrug",
        "/star",
        "/status",
        "/topic",
        "/who",
    }
)
_COMMAND_LIMIT = 32
_NAME_LIMIT = 35
_DESCRIPTION_LIMIT = 140
_USAGE_LIMIT = 100


def request_url(url: str) -> str:
    """The events URL from ``url``: https only; a bare host gets ``/slack/events``."""
    parts = urlsplit(url.strip())
    if parts.scheme != "https" or not parts.netloc:
        raise ValueError(f"{url!r} is not an https:// URL; Slack sends requests over https only")
    if parts.path in ("", "/"):
        return f"https://{parts.netloc}/slack/events"
    return url.strip()


def _clip(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def _usage_hint(spec: AgentSpec) -> str:
    if not spec.inputs:
        return ""
    names = list(spec.inputs)
    first = f"[{names[0]}]" if not spec.inputs[names[0]].required else names[0]
    return _clip(" ".join([first, *(f"[{name}=...]" for name in names[1:])]), _USAGE_LIMIT)


def _command(name: str, description: str, usage: str, url: str | None) -> dict[str, Any]:
    command: dict[str, Any] = {"command": name}
    if url:
        command["url"] = url
    command["description"] = _clip(description, _DESCRIPTION_LIMIT)
    if usage:
        command["usage_hint"] = usage
    command["should_escape"] = False
    return command


def own_command_problem(slash: str) -> str | None:
    """Why ``/slash`` cannot be an agent's own Slack command, or None when it can."""
    command = f"/{slash}"
    if command == MAIN_COMMAND:
        return f"{command} is MeshAgent's own command"
    if command in SLACK_BUILTIN_COMMANDS:
        return f"{command} is one of Slack's built-in commands"
    if len(command) > _COMMAND_LIMIT:
        return f"{command} is longer than Slack's {_COMMAND_LIMIT} characters"
    return None


def left_out(agents: Iterable[AgentSpec]) -> list[str]:
    """One line per enabled agent's slash trigger that gets no command of its own, and why."""
    lines = []
    for spec in sorted(agents, key=lambda s: s.name):
        for trigger in spec.triggers if spec.enabled else ():
            if isinstance(trigger, SlashTrigger):
                problem = own_command_problem(trigger.slash)
                if problem:
                    lines.append(
                        f"/{trigger.slash} ({spec.name}) left out: {problem}; run it with "
                        f"{MAIN_COMMAND} run {trigger.slash}"
                    )
    return lines


def build_manifest(
    agents: Iterable[AgentSpec], *, name: str = "MeshAgent", url: str | None = None
) -> dict[str, Any]:
    """The manifest for ``agents``: /meshagent, plus /NAME for every agent's slash trigger."""
    url = request_url(url) if url else None
    commands = [_command(MAIN_COMMAND, "Run MeshAgent agents and read the ledger", MAIN_USAGE, url)]
    taken = {MAIN_COMMAND}
    for spec in sorted(agents, key=lambda s: s.name):
        if not spec.enabled:
            continue
        for trigger in spec.triggers:
            if not isinstance(trigger, SlashTrigger):
                continue
            command = f"/{trigger.slash}"
            if command in taken or own_command_problem(trigger.slash):
                continue
            taken.add(command)
            about = spec.description or f"Run the {spec.name} agent"
            commands.append(_command(command, about, _usage_hint(spec), url))
    events: dict[str, Any] = {"bot_events": list(BOT_EVENTS)}
    interactivity: dict[str, Any] = {"is_enabled": True}
    if url:
        events = {"request_url": url, **events}
        interactivity["request_url"] = url
    return {
        "_metadata": {"major_version": 1, "minor_version": 1},
        "display_information": {
            "name": _clip(name, _NAME_LIMIT),
            "description": "AI agents in YAML, with a ledger of what each task cost and delivered.",
            "background_color": "#1d3557",
        },
        "features": {
            "bot_user": {"display_name": _clip(name, 80), "always_online": True},
            "slash_commands": commands,
        },
        "oauth_config": {"scopes": {"bot": list(BOT_SCOPES)}},
        "settings": {
            "event_subscriptions": events,
            "interactivity": interactivity,
            "org_deploy_enabled": False,
            "socket_mode_enabled": url is None,
            "token_rotation_enabled": False,
        },
    }
