"""Who may run what, where: an agent's slash allow list (users, user groups, channels).

People in an allow list are written as user ids, @handles or emails, user groups as @handles or
ids, channels as #names or ids. Ids are compared at once; handles, emails and group members are
looked up through the Web API (users.info, usergroups.list) and cached for a few minutes. A
lookup that fails refuses: access is never granted on an error.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.web.async_client import AsyncWebClient

from meshagent.agentfile.spec import AgentSpec, AllowList, SlashTrigger

log = logging.getLogger(__name__)

__all__ = [
    "Caller",
    "Directory",
    "LookupFailed",
    "Person",
    "check_access",
    "may_use_somewhere",
    "slash_triggers",
]

_USER_ID = re.compile(r"^[UW][A-Z0-9]{6,}$")
_GROUP_ID = re.compile(r"^S[A-Z0-9]{6,}$")
_CHANNEL_ID = re.compile(r"^[CGD][A-Z0-9]{6,}$")


class LookupFailed(Exception):
    """Slack could not tell who someone is; the caller is refused."""


@dataclass(frozen=True)
class Caller:
    """Who sent a command, and from where."""

    user_id: str
    channel_id: str = ""
    channel_name: str = ""
    user_name: str = ""


@dataclass(frozen=True)
class Person:
    """What Slack says about one user: the names an allow list may use for them."""

    user_id: str
    name: str = ""
    display_name: str = ""
    email: str = ""

    def names(self) -> set[str]:
        """Every way an allow list may refer to this person, lowercased."""
        found = {self.user_id.lower()}
        for value in (self.name, self.display_name):
            if value:
                found |= {value.lower(), f"@{value.lower()}"}
        if self.email:
            found.add(self.email.lower())
        return found


class Directory:
    """People and user groups of the workspace, looked up on demand and cached for ``ttl``."""

    def __init__(
        self,
        client: AsyncWebClient,
        *,
        ttl: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client = client
        self.ttl = ttl
        self._clock = clock
        self._people: dict[str, tuple[float, Person]] = {}
        self._linked: dict[str, float] = {}  # user id -> when it was linked to its email
        self._groups: tuple[float, dict[str, set[str]]] | None = None
        self._lock = asyncio.Lock()

    async def person(self, user_id: str) -> Person:
        """The user's names and email; raises LookupFailed when Slack does not answer."""
        cached = self._people.get(user_id)
        if cached is not None and self._clock() - cached[0] < self.ttl:
            return cached[1]
        try:
            found = await self.client.users_info(user=user_id)
        except (SlackApiError, SlackClientError, OSError) as exc:
            raise LookupFailed(f"users.info: {_code(exc)}") from None
        user = found.get("user") or {}
        profile = user.get("profile") or {}
        person = Person(
            user_id=user_id,
            name=user.get("name") or "",
            display_name=profile.get("display_name") or "",
            email=profile.get("email") or "",
        )
        self._people[user_id] = (self._clock(), person)
        return person

    async def link(self, ledger: Any, user_id: str) -> None:
        """Make the Slack user `user_id` and their email one person in the ledger (once per
        ``ttl``), so that a trigger, a vote and an owner named by email are counted as one.
        Best effort: a Slack or ledger failure leaves them unlinked."""
        from meshagent.ledger.people import alink

        linked = self._linked.get(user_id)
        if not user_id or (linked is not None and self._clock() - linked < self.ttl):
            return
        try:
            person = await self.person(user_id)
            if person.email:
                await alink(ledger, user_id, person.email, source="slack")
            self._linked[user_id] = self._clock()
        except Exception as exc:  # noqa: BLE001 - the command or vote goes on unlinked
            log.info("could not link %s to an email: %s", user_id, exc)

    async def groups(self) -> dict[str, set[str]]:
        """Members of every active user group, by lowercased @handle, handle and id."""
        async with self._lock:
            if self._groups is not None and self._clock() - self._groups[0] < self.ttl:
                return self._groups[1]
            try:
                found = await self.client.usergroups_list(include_users=True)
            except (SlackApiError, SlackClientError, OSError) as exc:
                raise LookupFailed(f"usergroups.list: {_code(exc)}") from None
            groups: dict[str, set[str]] = {}
            for group in found.get("usergroups") or []:
                if group.get("date_delete"):
                    continue
                members = set(group.get("users") or [])
                group_id = str(group.get("id") or "")
                handle = str(group.get("handle") or "").lower()
                if group_id:
                    groups[group_id] = members
                if handle:
                    groups[handle] = groups[f"@{handle}"] = members
            self._groups = (self._clock(), groups)
            return groups


def slash_triggers(spec: AgentSpec) -> list[SlashTrigger]:
    """The agent's slash triggers, in file order."""
    return [t for t in spec.triggers if isinstance(t, SlashTrigger)]


def _channel_allowed(allowed: Iterable[str], caller: Caller) -> bool:
    name = caller.channel_name.lower().removeprefix("#")
    for entry in allowed:
        if _CHANNEL_ID.match(entry):
            if entry == caller.channel_id:
                return True
        elif entry.lower().removeprefix("#") == name and name:
            return True
    return False


async def _person_allowed(allow: AllowList, caller: Caller, directory: Directory) -> bool:
    if caller.user_id in allow.users:
        return True
    names = [u for u in allow.users if not _USER_ID.match(u)]
    if names:
        known = (await directory.person(caller.user_id)).names()
        if any(name.lower() in known for name in names):
            return True
    if allow.usergroups:
        groups = await directory.groups()
        for ref in allow.usergroups:
            key = ref if _GROUP_ID.match(ref) else ref.lower()
            if caller.user_id in groups.get(key, ()):
                return True
    return False


def _listing(values: list[str]) -> str:
    return ", ".join(values)


async def _why_not(
    spec: AgentSpec, trigger: SlashTrigger, caller: Caller, directory: Directory
) -> str | None:
    allow = trigger.allow
    if allow.channels and not _channel_allowed(allow.channels, caller):
        here = f"#{caller.channel_name}" if caller.channel_name else "this conversation"
        return f"{spec.name} may be run only from {_listing(allow.channels)}, not from {here}."
    if allow.users or allow.usergroups:
        try:
            allowed = await _person_allowed(allow, caller, directory)
        except LookupFailed as exc:
            return f"could not check who may run {spec.name} ({exc}); try again in a minute."
        if not allowed:
            who = _listing([*allow.users, *allow.usergroups])
            return (
                f"{spec.name} may be run only by {who}; ask its owner {spec.owner} "
                "to add you to its allow list."
            )
    return None


async def check_access(
    spec: AgentSpec,
    caller: Caller,
    directory: Directory,
    trigger: SlashTrigger | None = None,
) -> str | None:
    """Why ``caller`` may not run ``spec`` (through ``trigger``, else any of its slash
    triggers), or None when they may."""
    if not spec.enabled:
        return f"{spec.name} is disabled (enabled: false in its file)."
    triggers = [trigger] if trigger is not None else slash_triggers(spec)
    if not triggers:
        return (
            f"{spec.name} has no slash trigger, so it cannot be run from Slack; its owner can "
            "add `- slash: NAME` under triggers."
        )
    first: str | None = None
    for candidate in triggers:
        reason = await _why_not(spec, candidate, caller, directory)
        if reason is None:
            return None
        first = first or reason
    return first


async def may_use_somewhere(spec: AgentSpec, caller: Caller, directory: Directory) -> list[str]:
    """The channel restrictions under which ``caller`` may run ``spec`` (empty list: nowhere;
    ``["*"]``: anywhere)."""
    if not spec.enabled:
        return []
    places: list[str] = []
    for trigger in slash_triggers(spec):
        allow = trigger.allow
        if allow.users or allow.usergroups:
            try:
                if not await _person_allowed(allow, caller, directory):
                    continue
            except LookupFailed:
                continue
        if not allow.channels:
            return ["*"]
        places += [c for c in allow.channels if c not in places]
    return places


def _code(exc: BaseException) -> str:
    if isinstance(exc, SlackApiError):
        data: Any = exc.response.data
        return str(data.get("error") if isinstance(data, dict) else exc.response.status_code)
    return type(exc).__name__
