"""The Slack Web API methods, each answering with Slack's shapes and errors."""

from __future__ import annotations

import base64
import json
import secrets
import time
from typing import Any

from meshagent.sandbox.slack.state import (
    Ephemeral,
    Posted,
    SlackState,
    _ApiError,
    _dm_channel,
)


def _cursor(offset: int) -> str:
    return base64.b64encode(f"offset:{offset}".encode()).decode()


def _offset(cursor: str | None) -> int:
    if not cursor:
        return 0
    try:
        return int(base64.b64decode(cursor).decode().split(":", 1)[1])
    except (ValueError, IndexError):
        raise _ApiError("invalid_cursor") from None


def _page(items: list[Any], args: dict[str, Any], default: int = 100) -> tuple[list[Any], str]:
    limit = max(1, min(int(args.get("limit") or default), 1000))
    start = _offset(args.get("cursor"))
    chunk = items[start : start + limit]
    more = start + limit < len(items)
    return chunk, _cursor(start + limit) if more else ""


def _content(args: dict[str, Any]) -> tuple[str, Any]:
    """A message's text and blocks (a JSON string or a list); no_text when both are empty."""
    text, blocks = args.get("text") or "", args.get("blocks")
    if isinstance(blocks, str):
        blocks = json.loads(blocks)
    if not text and not blocks:
        raise _ApiError("no_text")
    return text, blocks


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
        parent = self.state._message(channel["id"], str(args.get("ts") or ""))
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
        text, blocks = _content(args)
        if len(text) > 40_000:
            raise _ApiError("msg_too_long")
        ts = self.state.next_ts()
        thread_ts = args.get("thread_ts") or None
        message = {"type": "message", "user": self.state.bot["id"], "text": text, "ts": ts}
        message["bot_id"] = self.state.bot["bot_id"]
        if blocks:
            message["blocks"] = blocks
        if thread_ts:
            parent = self.state._message(channel["id"], thread_ts)
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
        message = self.state._message(channel["id"], ts)
        if message.get("user") != self.state.bot["id"]:
            raise _ApiError("cant_update_message")
        text, blocks = _content(args)
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
            self.state._message(channel["id"], ts)
        domain = self.state.team["domain"]
        link = f"https://{domain}.slack.com/archives/{channel['id']}/p{ts.replace('.', '')}"
        return {"channel": channel["id"], "permalink": link}

    def reactions_add(self, args: dict[str, Any]) -> dict[str, Any]:
        channel = self._channel(args)
        name = str(args.get("name") or "").strip(":")
        if not name or not name.replace("_", "").replace("-", "").replace("+", "").isalnum():
            raise _ApiError("invalid_name")
        message = self.state._message(channel["id"], str(args.get("timestamp") or ""))
        key = (channel["id"], message["ts"], name)
        if key in self.state.reactions:
            raise _ApiError("already_reacted")
        self.state.reactions.append(key)
        self.state.reacted.setdefault(key[:2], []).append((name, self.state.bot["id"]))
        return {}

    def reactions_get(self, args: dict[str, Any]) -> dict[str, Any]:
        channel = self._channel(args, member=False)
        ts = str(args.get("timestamp") or "")
        message = self.state._message(channel["id"], ts)
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
        text, blocks = _content(args)
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
