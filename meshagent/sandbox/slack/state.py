"""The workspace's state: users, channels, messages, and all the API was asked to do."""

from __future__ import annotations

import asyncio
import itertools
import secrets
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from meshagent.sandbox.seed import ago_seconds

RESPONSE_URL_USES = 5
RESPONSE_URL_SECONDS = 30 * 60


@dataclass
class Posted:
    """One message the API was asked to post (chat.postMessage or a response_url)."""

    channel: str
    ts: str
    text: str
    user: str
    thread_ts: str | None = None
    blocks: list[dict[str, Any]] | None = None


@dataclass
class Ephemeral:
    """One message shown to one person in a channel (chat.postEphemeral)."""

    channel: str
    user: str
    ts: str
    text: str
    blocks: list[dict[str, Any]] | None = None


@dataclass
class _ResponseUrl:
    created: float
    channel: str
    uses: int = 0
    posts: list[dict[str, Any]] = field(default_factory=list)


class SlackState:
    """The workspace: users, channels and their messages, plus everything the API changed."""

    def __init__(self, seed: dict[str, Any], *, token: str) -> None:
        self.token = token
        self._lock = threading.RLock()
        self._clock = itertools.count()
        team = seed.get("team", {})
        self.team = {
            "id": team.get("id", "T0SANDBOX"),
            "name": team.get("name", "Sandbox"),
            "domain": team.get("domain", "sandbox"),
        }
        bot = seed.get("bot", {})
        self.bot = {
            "id": bot.get("id", "U0MESHBOT"),
            "bot_id": bot.get("bot_id", "B0MESHBOT"),
            "name": bot.get("name", "meshagent"),
        }
        self.users: dict[str, dict[str, Any]] = {}
        for user in [{"id": self.bot["id"], "name": self.bot["name"], "bot": True}] + list(
            seed.get("users", [])
        ):
            self.users[user["id"]] = user
        self.channels: dict[str, dict[str, Any]] = {}
        self.messages: dict[str, list[dict[str, Any]]] = {}
        now = time.time()
        for channel in seed.get("channels", []):
            cid = channel["id"]
            self.channels[cid] = {
                "id": cid,
                "name": channel["name"],
                "is_private": bool(channel.get("private", False)),
                "is_archived": bool(channel.get("archived", False)),
                "is_member": bool(channel.get("bot_member", True)),
                "members": [self._user_id(m) for m in channel.get("members", [])],
                "topic": channel.get("topic", ""),
            }
            self.messages[cid] = []
            for message in channel.get("messages", []):
                self._seed_message(cid, message, now)
        self.posted: list[Posted] = []
        self.reactions: list[tuple[str, str, str]] = []  # (channel, ts, name)
        #: Who reacted with what to each message, the bot's reactions too: (channel, ts) ->
        #: [(name, user)], as reactions.get reports them.
        self.reacted: dict[tuple[str, str], list[tuple[str, str]]] = {}
        self.calls: list[str] = []  # every API method called, in order, refused ones too
        #: Every API call with its arguments (the token left out), in order, refused ones too.
        self.received: list[tuple[str, dict[str, Any]]] = []
        self.response_urls: dict[str, _ResponseUrl] = {}
        self.ephemeral: list[Ephemeral] = []  # chat.postEphemeral, in order
        self.updated: list[Posted] = []  # chat.update, in order: each message as updated
        self.views: list[dict[str, Any]] = []  # views.open: each view with its trigger_id
        self.app_token = f"xapp-1-A0SANDBOX-{secrets.token_hex(12)}"  # for Socket Mode
        self.socket_acks: dict[str, dict[str, Any]] = {}  # envelope id -> the app's ack payload
        self.socket_hello_delay = 0.0  # seconds between the WebSocket opening and "hello"
        self.socket_refusals = 0  # WebSocket handshakes still to refuse (401), as for a bad ticket
        self.socket_tickets: list[str] = []  # every ticket apps.connections.open gave, in order
        self._open_tickets: set[str] = set()  # those not used yet
        self._sockets: list[tuple[web.WebSocketResponse, asyncio.AbstractEventLoop]] = []
        self._socket_events = threading.Condition()
        self.socket_opens = 0  # Socket Mode connections opened, in all
        self.usergroups: dict[str, dict[str, Any]] = {}
        for group in seed.get("usergroups", []):
            self.add_usergroup(group["handle"], group.get("users", []), group_id=group.get("id"))

    # -- seeding -------------------------------------------------------------------------------

    def _user_id(self, ref: str) -> str:
        for user in self.users.values():
            if ref in (user["id"], user.get("name"), user.get("email")):
                return user["id"]
        raise ValueError(f"seed: unknown Slack user {ref!r}")

    def _seed_message(self, channel: str, message: dict[str, Any], now: float) -> None:
        record = self._seed_record(message, now, "1h")
        ts = record["ts"]
        replies = message.get("replies", [])
        if replies:
            record.update(thread_ts=ts, reply_count=len(replies), replies=[])
        self.messages[channel].append(record)
        for reply in replies:
            record["replies"].append(self._seed_record(reply, now, "30m") | {"thread_ts": ts})

    def _seed_record(self, message: dict[str, Any], now: float, ago: str) -> dict[str, Any]:
        """A seeded message or reply, posted its ``ago`` (or the default ``ago``) before now."""
        ts = f"{now - ago_seconds(message.get('ago', ago)):.6f}"
        return {
            "type": "message",
            "user": self._user_id(message["user"]),
            "text": message["text"],
            "ts": ts,
        }

    # -- helpers used by tests and the demo ----------------------------------------------------

    def channel_id(self, name: str) -> str:
        """The id of a channel given as ``#name``, ``name`` or id."""
        plain = name.removeprefix("#")
        for channel in self.channels.values():
            if plain in (channel["id"], channel["name"]):
                return channel["id"]
        raise KeyError(name)

    def posted_to(self, channel: str) -> list[Posted]:
        """Messages posted to a channel (``#name`` or id), oldest first."""
        cid = self.channel_id(channel) if not channel.startswith("D") else channel
        return [p for p in self.posted if p.channel == cid]

    def dms_to(self, user: str) -> list[Posted]:
        """Direct messages posted to a user (id, name or email)."""
        uid = self._user_id(user)
        return [p for p in self.posted if p.channel == _dm_channel(uid)]

    def writes(self) -> list[str]:
        """The write methods called (posts, reactions, DM opens, response_url posts)."""
        return [c for c in self.calls if c in _WRITES]

    def posted_via_response_urls(self) -> list[dict[str, Any]]:
        """Every body posted to a response_url, in order."""
        return [body for entry in self.response_urls.values() for body in entry.posts]

    def new_response_url(self, base_url: str, channel: str = "") -> str:
        """A response_url as Slack sends with a command: five posts within 30 minutes."""
        key = secrets.token_hex(8)
        self.response_urls[key] = _ResponseUrl(created=time.time(), channel=channel)
        return f"{base_url.rstrip('/')}/response/{key}"

    def add_usergroup(
        self, handle: str, users: list[str], *, group_id: str | None = None, name: str = ""
    ) -> str:
        """Create a user group (``handle`` without @, members by id, name or email); its id."""
        gid = group_id or f"S0{secrets.token_hex(4).upper()}"
        self.usergroups[gid] = {
            "id": gid,
            "team_id": self.team["id"],
            "handle": handle.removeprefix("@"),
            "name": name or handle.removeprefix("@"),
            "users": [self._user_id(u) for u in users],
            "date_delete": 0,
        }
        return gid

    def react(self, channel: str, ts: str, name: str, user: str) -> None:
        """``user`` (id, name or email) reacts to a message with ``name``, as a person would."""
        cid = channel if channel.startswith("D") else self.channel_id(channel)
        with self._lock:
            self.reacted.setdefault((cid, ts), []).append((name, self._user_id(user)))

    def reply(self, channel: str, ts: str, user: str, text: str) -> str:
        """``user`` replies in the thread of the message ``ts``; the reply's ts."""
        cid = channel if channel.startswith("D") else self.channel_id(channel)
        with self._lock:
            parent = self._message(cid, ts)
            rts = self.next_ts()
            item = {"type": "message", "user": self._user_id(user), "text": text, "ts": rts}
            item["thread_ts"] = ts
            parent.setdefault("replies", []).append(item)
            parent["reply_count"] = len(parent["replies"])
            parent.setdefault("thread_ts", ts)
            return rts

    def delete(self, channel: str, ts: str) -> None:
        """Delete the message ``ts`` (a top-level message or a reply), as its author could."""
        cid = channel if channel.startswith("D") else self.channel_id(channel)
        with self._lock:
            kept = []
            for message in self.messages.get(cid, []):
                if message["ts"] == ts:
                    continue
                message["replies"] = [r for r in message.get("replies", []) if r["ts"] != ts]
                kept.append(message)
            self.messages[cid] = kept

    def ephemeral_to(self, user: str) -> list[Ephemeral]:
        """Ephemeral messages shown to a user (id, name or email), oldest first."""
        uid = self._user_id(user)
        return [e for e in self.ephemeral if e.user == uid]

    @property
    def socket_connected(self) -> bool:
        """Whether a Socket Mode client is connected."""
        return bool(self._sockets)

    def wait_socket(self, *, connected: bool, opens: int = 0, timeout: float = 5.0) -> None:
        """Wait until a Socket Mode client is connected (or none is), after at least ``opens``
        connections in all; TimeoutError otherwise.

        A client's close handshake ends before the sandbox's side of it has run: wait for it.
        """

        def reached() -> bool:
            return bool(self._sockets) == connected and self.socket_opens >= opens

        with self._socket_events:
            if not self._socket_events.wait_for(reached, timeout):
                state = "connected" if connected else "disconnected"
                raise TimeoutError(
                    f"no Socket Mode client {state} after {opens} connections within {timeout}s"
                    f" ({self.socket_opens} so far)"
                )

    def socket_refresh(self, reason: str = "refresh_requested", *, timeout: float = 5.0) -> None:
        """Tell the connected client to reconnect, as Slack does every few hours."""
        message = {"type": "disconnect", "reason": reason, "debug_info": {"host": "sandbox"}}
        self._socket_send_json(message, timeout)

    def socket_ack(self, envelope_id: str, *, timeout: float = 5.0) -> dict[str, Any]:
        """Wait for the app's acknowledgement of an envelope; its payload (``{}`` if none)."""
        with self._socket_events:
            if not self._socket_events.wait_for(lambda: envelope_id in self.socket_acks, timeout):
                raise TimeoutError(f"no acknowledgement of envelope {envelope_id} in {timeout}s")
            return self.socket_acks[envelope_id]

    def _socket_acked(self, envelope_id: str, payload: dict[str, Any]) -> None:
        with self._socket_events:
            self.socket_acks[envelope_id] = payload
            self._socket_events.notify_all()

    def _socket_change(
        self, entry: tuple[web.WebSocketResponse, asyncio.AbstractEventLoop], *, opened: bool
    ) -> None:
        with self._socket_events:
            if opened:
                self._sockets.append(entry)
                self.socket_opens += 1
            else:
                self._sockets.remove(entry)
            self._socket_events.notify_all()

    def socket_send(
        self,
        kind: str,
        payload: dict[str, Any],
        *,
        retry_attempt: int = 0,
        retry_reason: str = "",
        timeout: float = 5.0,
    ) -> str:
        """Send an envelope (``slash_commands``, ``interactive``, ``events_api``) to the
        connected Socket Mode client, from any thread but the sandbox's; its envelope id."""
        envelope_id = secrets.token_hex(8)
        envelope = {
            "envelope_id": envelope_id,
            "type": kind,
            "payload": payload,
            "accepts_response_payload": kind != "events_api",
            "retry_attempt": retry_attempt,
            "retry_reason": retry_reason,
        }
        self._socket_send_json(envelope, timeout)
        return envelope_id

    def _socket_send_json(self, message: dict[str, Any], timeout: float) -> None:
        if not self._sockets:
            raise RuntimeError("no Socket Mode client is connected to the sandbox")
        socket, loop = self._sockets[-1]
        asyncio.run_coroutine_threadsafe(socket.send_json(message), loop).result(timeout)

    def _message(self, channel: str, ts: str) -> dict[str, Any]:
        """The message or reply ``ts`` in ``channel``; message_not_found otherwise."""
        for message in self.messages.get(channel, []):
            if message["ts"] == ts:
                return message
            for reply in message.get("replies", []):
                if reply["ts"] == ts:
                    return reply
        raise _ApiError("message_not_found")

    def next_ts(self) -> str:
        with self._lock:
            return f"{time.time():.0f}.{next(self._clock) % 1_000_000:06d}"


_WRITES = {
    "chat.postMessage",
    "chat.update",
    "chat.postEphemeral",
    "reactions.add",
    "conversations.open",
    "response_url",
}


def _dm_channel(user_id: str) -> str:
    return "D" + user_id[1:]


class _ApiError(Exception):
    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code
