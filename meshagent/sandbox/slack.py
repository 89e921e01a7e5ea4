"""A local Slack Web API: the methods MeshAgent's connector and Slack app use, with Slack's shapes.

Every method answers the way Slack does: HTTP 200 with ``{"ok": false, "error": "..."}`` for
API errors (``not_authed``, ``invalid_auth``, ``channel_not_found``, ``not_in_channel``,
``users_not_found``, ...), cursor paging through ``response_metadata.next_cursor``, and the bot
token checked on every call. ``response_url`` endpoints accept five posts each, as Slack's do.
What was posted is kept in :class:`SlackState` for tests and the demo to read.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import secrets
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from meshagent.sandbox.seed import ago_seconds

__all__ = ["Ephemeral", "Posted", "SlackState", "build_slack_app"]

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
        ts = f"{now - ago_seconds(message.get('ago', '1h')):.6f}"
        record = {
            "type": "message",
            "user": self._user_id(message["user"]),
            "text": message["text"],
            "ts": ts,
        }
        replies = message.get("replies", [])
        if replies:
            record.update(thread_ts=ts, reply_count=len(replies), replies=[])
        self.messages[channel].append(record)
        for reply in replies:
            rts = f"{now - ago_seconds(reply.get('ago', '30m')):.6f}"
            item = {
                "type": "message",
                "user": self._user_id(reply["user"]),
                "text": reply["text"],
                "ts": rts,
                "thread_ts": ts,
            }
            record["replies"].append(item)

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
            parent = _Api(self)._find(cid, ts)
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


def _cursor(offset: int) -> str:
    return base64.b64encode(f"offset:{offset}".encode()).decode()


def _offset(cursor: str | None) -> int:
    if not cursor:
        return 0
    try:
        return int(base64.b64decode(cursor).decode().split(":", 1)[1])
    except (ValueError, IndexError):
        raise _ApiError("invalid_cursor") from None


class _ApiError(Exception):
    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


def _page(items: list[Any], args: dict[str, Any], default: int = 100) -> tuple[list[Any], str]:
    limit = max(1, min(int(args.get("limit") or default), 1000))
    start = _offset(args.get("cursor"))
    chunk = items[start : start + limit]
    more = start + limit < len(items)
    return chunk, _cursor(start + limit) if more else ""


def _public_message(message: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in message.items() if k != "replies"}


class _Api:
    """The Web API methods, each taking the merged arguments and returning the JSON body."""

    def __init__(self, state: SlackState) -> None:
        self.state = state

    def _channel(self, args: dict[str, Any], *, member: bool = True) -> dict[str, Any]:
        cid = str(args.get("channel") or "")
        if not cid:
            raise _ApiError("channel_not_found")
        if cid.startswith("D"):
            return {"id": cid, "is_member": True, "dm": True}
        if cid.startswith("#"):  # Slack accepts names for posting
            try:
                cid = self.state.channel_id(cid)
            except KeyError:
                raise _ApiError("channel_not_found") from None
        channel = self.state.channels.get(cid)
        if channel is None:
            try:
                channel = self.state.channels[self.state.channel_id(cid)]
            except KeyError:
                raise _ApiError("channel_not_found") from None
        if channel["is_private"] and not channel["is_member"]:
            raise _ApiError("channel_not_found")  # private channels are invisible to outsiders
        if member and not channel["is_member"]:
            raise _ApiError("not_in_channel")
        if channel["is_archived"] and member:
            raise _ApiError("is_archived")
        return channel

    def _find(self, channel: str, ts: str) -> dict[str, Any]:
        for message in self.state.messages.get(channel, []):
            if message["ts"] == ts:
                return message
            for reply in message.get("replies", []):
                if reply["ts"] == ts:
                    return reply
        raise _ApiError("message_not_found")

    def auth_test(self, args: dict[str, Any]) -> dict[str, Any]:
        team, bot = self.state.team, self.state.bot
        return {
            "url": f"https://{team['domain']}.slack.com/",
            "team": team["name"],
            "user": bot["name"],
            "team_id": team["id"],
            "user_id": bot["id"],
            "bot_id": bot["bot_id"],
            "is_enterprise_install": False,
        }

    def conversations_list(self, args: dict[str, Any]) -> dict[str, Any]:
        types = set(str(args.get("types") or "public_channel").split(","))
        exclude = str(args.get("exclude_archived", "false")).lower() in ("true", "1")
        channels = [
            {k: v for k, v in c.items() if k != "members"}
            | {"is_channel": True, "num_members": len(c["members"])}
            for c in self.state.channels.values()
            if (("private_channel" if c["is_private"] else "public_channel") in types)
            and not (exclude and c["is_archived"])
            and (not c["is_private"] or c["is_member"])
        ]
        chunk, cursor = _page(channels, args)
        return {"channels": chunk, "response_metadata": {"next_cursor": cursor}}

    def conversations_history(self, args: dict[str, Any]) -> dict[str, Any]:
        channel = self._channel(args)
        oldest = float(args.get("oldest") or 0)
        latest = float(args.get("latest") or time.time() + 1)
        messages = [
            _public_message(m)
            for m in reversed(self.state.messages.get(channel["id"], []))
            if oldest <= float(m["ts"]) <= latest
        ]
        messages.sort(key=lambda m: float(m["ts"]), reverse=True)
        chunk, cursor = _page(messages, args)
        return {
            "messages": chunk,
            "has_more": bool(cursor),
            "pin_count": 0,
            "response_metadata": {"next_cursor": cursor},
        }

    def conversations_replies(self, args: dict[str, Any]) -> dict[str, Any]:
        channel = self._channel(args)
        parent = self._find(channel["id"], str(args.get("ts") or ""))
        thread = [_public_message(parent), *parent.get("replies", [])]
        chunk, cursor = _page(thread, args, default=1000)
        return {
            "messages": chunk,
            "has_more": bool(cursor),
            "response_metadata": {"next_cursor": cursor},
        }

    def conversations_open(self, args: dict[str, Any]) -> dict[str, Any]:
        users = [u for u in str(args.get("users") or "").split(",") if u]
        if len(users) != 1:
            raise _ApiError("users_list_not_supplied" if not users else "not_implemented")
        if users[0] not in self.state.users:
            raise _ApiError("user_not_found")
        return {"channel": {"id": _dm_channel(users[0])}}

    def chat_postMessage(self, args: dict[str, Any]) -> dict[str, Any]:
        channel = self._channel(args)
        text, blocks = args.get("text") or "", args.get("blocks")
        if isinstance(blocks, str):
            blocks = json.loads(blocks)
        if not text and not blocks:
            raise _ApiError("no_text")
        if len(text) > 40_000:
            raise _ApiError("msg_too_long")
        ts = self.state.next_ts()
        thread_ts = args.get("thread_ts") or None
        message = {"type": "message", "user": self.state.bot["id"], "text": text, "ts": ts}
        message["bot_id"] = self.state.bot["bot_id"]
        if blocks:
            message["blocks"] = blocks
        if thread_ts:
            parent = self._find(channel["id"], thread_ts)
            message["thread_ts"] = thread_ts
            parent.setdefault("replies", []).append(message)
            parent["reply_count"] = len(parent["replies"])
            parent.setdefault("thread_ts", thread_ts)
        else:
            self.state.messages.setdefault(channel["id"], []).append(message)
        self.state.posted.append(
            Posted(channel["id"], ts, text, self.state.bot["id"], thread_ts, blocks)
        )
        return {"channel": channel["id"], "ts": ts, "message": _public_message(message)}

    def chat_update(self, args: dict[str, Any]) -> dict[str, Any]:
        channel = self._channel(args)
        ts = str(args.get("ts") or "")
        message = self._find(channel["id"], ts)
        if message.get("user") != self.state.bot["id"]:
            raise _ApiError("cant_update_message")
        text, blocks = args.get("text") or "", args.get("blocks")
        if isinstance(blocks, str):
            blocks = json.loads(blocks)
        if not text and not blocks:
            raise _ApiError("no_text")
        message["text"] = text
        if blocks:
            message["blocks"] = blocks
        for posted in self.state.posted:
            if posted.channel == channel["id"] and posted.ts == ts:
                posted.text, posted.blocks = text, blocks or posted.blocks
        updated = Posted(channel["id"], ts, text, self.state.bot["id"], blocks=blocks)
        self.state.updated.append(updated)
        return {"channel": channel["id"], "ts": ts, "text": text}

    def views_open(self, args: dict[str, Any]) -> dict[str, Any]:
        trigger = str(args.get("trigger_id") or "")
        view = args.get("view")
        if isinstance(view, str):
            try:
                view = json.loads(view)
            except ValueError:
                raise _ApiError("invalid_arguments") from None
        if not trigger:
            raise _ApiError("invalid_trigger_id")
        if not isinstance(view, dict) or view.get("type") != "modal":
            raise _ApiError("invalid_arguments")
        opened = {
            **view,
            "id": f"V{secrets.token_hex(5).upper()}",
            "team_id": self.state.team["id"],
        }
        self.state.views.append({"trigger_id": trigger, "view": opened})
        return {"view": opened}

    def chat_getPermalink(self, args: dict[str, Any]) -> dict[str, Any]:
        channel = self._channel(args, member=False)
        ts = str(args.get("message_ts") or "")
        if not channel.get("dm"):
            self._find(channel["id"], ts)
        domain = self.state.team["domain"]
        link = f"https://{domain}.slack.com/archives/{channel['id']}/p{ts.replace('.', '')}"
        return {"channel": channel["id"], "permalink": link}

    def reactions_add(self, args: dict[str, Any]) -> dict[str, Any]:
        channel = self._channel(args)
        name = str(args.get("name") or "").strip(":")
        if not name or not name.replace("_", "").replace("-", "").replace("+", "").isalnum():
            raise _ApiError("invalid_name")
        message = self._find(channel["id"], str(args.get("timestamp") or ""))
        key = (channel["id"], message["ts"], name)
        if key in self.state.reactions:
            raise _ApiError("already_reacted")
        self.state.reactions.append(key)
        self.state.reacted.setdefault(key[:2], []).append((name, self.state.bot["id"]))
        return {}

    def reactions_get(self, args: dict[str, Any]) -> dict[str, Any]:
        channel = self._channel(args, member=False)
        ts = str(args.get("timestamp") or "")
        message = self._find(channel["id"], ts)
        by_name: dict[str, list[str]] = {}
        for name, user in self.state.reacted.get((channel["id"], ts), []):
            by_name.setdefault(name, []).append(user)
        reactions = [{"name": n, "users": u, "count": len(u)} for n, u in by_name.items()]
        shown = _public_message(message) | ({"reactions": reactions} if reactions else {})
        return {"type": "message", "channel": channel["id"], "message": shown}

    def conversations_info(self, args: dict[str, Any]) -> dict[str, Any]:
        channel = self._channel(args, member=False)
        if channel.get("dm"):
            user = "U" + channel["id"][1:]
            return {"channel": {"id": channel["id"], "is_im": True, "user": user}}
        shown = {k: v for k, v in channel.items() if k != "members"}
        shown |= {"is_channel": not channel["is_private"], "is_group": channel["is_private"]}
        shown |= {"is_im": False, "is_mpim": False}
        if str(args.get("include_num_members", "false")).lower() in ("true", "1"):
            shown["num_members"] = len(channel["members"]) + (1 if channel["is_member"] else 0)
        return {"channel": shown}

    def conversations_members(self, args: dict[str, Any]) -> dict[str, Any]:
        channel = self._channel(args, member=False)
        if channel.get("dm"):
            members = [self.state.bot["id"], "U" + channel["id"][1:]]
        else:
            members = list(channel["members"])
            if channel["is_member"]:
                members.append(self.state.bot["id"])
        chunk, cursor = _page(members, args)
        return {"members": chunk, "response_metadata": {"next_cursor": cursor}}

    def users_info(self, args: dict[str, Any]) -> dict[str, Any]:
        user = self.state.users.get(str(args.get("user") or ""))
        if user is None:
            raise _ApiError("user_not_found")
        return {"user": _user_json(user, self.state.team["id"])}

    def users_lookupByEmail(self, args: dict[str, Any]) -> dict[str, Any]:
        email = str(args.get("email") or "").lower()
        for user in self.state.users.values():
            if user.get("email", "").lower() == email and email:
                return {"user": _user_json(user, self.state.team["id"])}
        raise _ApiError("users_not_found")

    def users_list(self, args: dict[str, Any]) -> dict[str, Any]:
        members = [_user_json(u, self.state.team["id"]) for u in self.state.users.values()]
        chunk, cursor = _page(members, args, default=200)
        return {"members": chunk, "response_metadata": {"next_cursor": cursor}}

    def chat_postEphemeral(self, args: dict[str, Any]) -> dict[str, Any]:
        channel = self._channel(args)
        user = str(args.get("user") or "")
        if user not in self.state.users:
            raise _ApiError("user_not_found")
        if not channel.get("dm") and user not in channel["members"]:
            raise _ApiError("user_not_in_channel")
        text, blocks = args.get("text") or "", args.get("blocks")
        if isinstance(blocks, str):
            blocks = json.loads(blocks)
        if not text and not blocks:
            raise _ApiError("no_text")
        ts = self.state.next_ts()
        self.state.ephemeral.append(Ephemeral(channel["id"], user, ts, text, blocks))
        return {"message_ts": ts}

    def usergroups_list(self, args: dict[str, Any]) -> dict[str, Any]:
        with_users = str(args.get("include_users", "false")).lower() in ("true", "1")
        groups = []
        for group in self.state.usergroups.values():
            shown = {k: v for k, v in group.items() if k != "users"}
            shown["user_count"] = len(group["users"])
            if with_users:
                shown["users"] = list(group["users"])
            groups.append(shown)
        return {"usergroups": groups}

    def usergroups_users_list(self, args: dict[str, Any]) -> dict[str, Any]:
        group = self.state.usergroups.get(str(args.get("usergroup") or ""))
        if group is None:
            raise _ApiError("no_such_subteam")
        return {"users": list(group["users"])}


def _user_json(user: dict[str, Any], team_id: str) -> dict[str, Any]:
    real_name = user.get("real_name", user.get("name", ""))
    return {
        "id": user["id"],
        "team_id": team_id,
        "name": user.get("name", ""),
        "real_name": real_name,
        "tz": user.get("tz", "UTC"),
        "is_bot": bool(user.get("bot", False)),
        "deleted": False,
        "profile": {
            "real_name": real_name,
            "display_name": user.get("display_name", user.get("name", "")),
            "title": user.get("title", ""),
            "email": user.get("email", ""),
        },
    }


_NO_AUTH = {"api.test"}


async def _arguments(request: web.Request) -> dict[str, Any]:
    args: dict[str, Any] = dict(request.query)
    if request.method == "POST" and request.can_read_body:
        if request.content_type == "application/json":
            body = await request.json()
            if isinstance(body, dict):
                args.update(body)
        else:
            args.update(dict(await request.post()))
    return args


def _token(request: web.Request, args: dict[str, Any]) -> str | None:
    header = request.headers.get("Authorization", "")
    if header.startswith("Bearer "):
        return header.removeprefix("Bearer ").strip()
    return args.pop("token", None)


def build_slack_app(state: SlackState, *, middlewares: tuple[Any, ...] = ()) -> web.Application:
    """The aiohttp application serving ``/api/<method>`` and ``/response/<key>``."""
    api = _Api(state)

    async def method(request: web.Request) -> web.Response:
        name = request.match_info["method"]
        state.calls.append(name)
        args = await _arguments(request)
        token = _token(request, args)
        state.received.append((name, dict(args)))
        handler = getattr(api, name.replace(".", "_"), None)
        if handler is None:
            return web.json_response({"ok": False, "error": "unknown_method"}, status=404)
        if name not in _NO_AUTH:
            if not token:
                return web.json_response({"ok": False, "error": "not_authed"})
            if not secrets.compare_digest(token, state.token):
                return web.json_response({"ok": False, "error": "invalid_auth"})
        try:
            with state._lock:
                body = handler(args)
        except _ApiError as exc:
            return web.json_response({"ok": False, "error": exc.code})
        return web.json_response({"ok": True, **body})

    async def response_url(request: web.Request) -> web.Response:
        entry = state.response_urls.get(request.match_info["key"])
        if entry is None:
            return web.Response(status=404, text="no_such_url")
        if time.time() - entry.created > RESPONSE_URL_SECONDS:
            return web.Response(status=404, text="expired_url")
        if entry.uses >= RESPONSE_URL_USES:
            return web.Response(status=404, text="used_url")
        try:
            body = await request.json()
        except ValueError:
            return web.Response(status=400, text="invalid_payload")
        if not isinstance(body, dict) or not (body.get("text") or body.get("blocks")):
            return web.Response(status=400, text="no_text")
        entry.uses += 1
        entry.posts.append(body)
        state.calls.append("response_url")
        return web.Response(text="ok")

    app = web.Application(middlewares=list(middlewares))
    _add_socket_mode(app, state)  # before /api/{method}: it answers apps.connections.open
    app.router.add_route("*", "/api/{method}", method)
    app.router.add_post("/response/{key}", response_url)
    return app


async def _quiet_for(ws: web.WebSocketResponse, seconds: float) -> bool:
    """Wait ``seconds`` while answering the client's frames; False when it closed meanwhile."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while (left := deadline - loop.time()) > 0:
        try:
            message = await asyncio.wait_for(ws.receive(), left)
        except TimeoutError:
            return True
        if message.type in (web.WSMsgType.CLOSE, web.WSMsgType.CLOSING, web.WSMsgType.CLOSED):
            return False
    return True


def _add_socket_mode(app: web.Application, state: SlackState) -> None:
    """Socket Mode: apps.connections.open (app-level token) and its one-use WebSocket URL, shaped
    as Slack's (``wss://wss-primary.slack.com/link/?ticket=...&app_id=...``)."""

    async def connections_open(request: web.Request) -> web.Response:
        state.calls.append("apps.connections.open")
        token = _token(request, await _arguments(request))
        if not token:
            return web.json_response({"ok": False, "error": "not_authed"})
        if not secrets.compare_digest(token, state.app_token):
            return web.json_response({"ok": False, "error": "invalid_auth"})
        ticket = secrets.token_hex(16)
        state.socket_tickets.append(ticket)
        state._open_tickets.add(ticket)
        url = f"ws://{request.host}/link/?ticket={ticket}&app_id=A0SANDBOX"
        return web.json_response({"ok": True, "url": url})

    async def socket(request: web.Request) -> web.StreamResponse:
        ticket = request.query.get("ticket", "")
        if ticket not in state._open_tickets:
            return web.Response(status=404, text="no_such_url")
        if state.socket_refusals > 0:
            state.socket_refusals -= 1
            return web.Response(status=401, text="invalid_ticket")
        state._open_tickets.discard(ticket)
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        entry = (ws, asyncio.get_running_loop())
        state._socket_change(entry, opened=True)
        try:
            if state.socket_hello_delay and not await _quiet_for(ws, state.socket_hello_delay):
                return ws  # the client left before hello
            await ws.send_json({"type": "hello", "num_connections": len(state._sockets)})
            async for message in ws:
                if message.type != web.WSMsgType.TEXT:
                    continue
                data = json.loads(message.data)
                if isinstance(data, dict) and data.get("envelope_id"):
                    state._socket_acked(data["envelope_id"], data.get("payload") or {})
        finally:
            state._socket_change(entry, opened=False)
        return ws

    async def close_sockets(app: web.Application) -> None:
        for ws, _ in list(state._sockets):
            await ws.close()

    app.router.add_route("*", "/api/apps.connections.open", connections_open)
    app.router.add_get("/link/", socket)
    app.on_shutdown.append(close_sockets)
