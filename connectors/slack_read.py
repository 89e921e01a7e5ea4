"""The slack connector's reads: a channel's history, one thread, a person's name and title."""

from __future__ import annotations

import time
from typing import Any

from connectors.slack_client import granted_channel, guarded, pooled
from connectors.slack_ids import HistoryArgs, ThreadArgs, UserArgs
from meshagent.actions import ActionContext, ActionResult

__all__ = ["read_history", "read_thread", "read_user"]


@guarded("slack.history", lambda a: a.channel)
async def read_history(context: ActionContext, args: HistoryArgs, grant: Any) -> ActionResult:
    client = await pooled(context, "slack.history")
    channel = await granted_channel(client, args, grant, "slack.history")
    oldest = f"{time.time() - args.hours * 3600:.6f}"
    messages: list[dict[str, Any]] = []
    pages = await client.conversations_history(channel=channel, oldest=oldest, limit=200)
    async for page in pages:
        for message in page.get("messages", []):
            item = {"ts": message["ts"], "user": message.get("user"), "text": message.get("text")}
            if args.replies and message.get("reply_count"):
                thread = await client.conversations_replies(channel=channel, ts=message["ts"])
                item["replies"] = [
                    {"user": r.get("user"), "text": r.get("text")}
                    for r in thread.get("messages", [])[1:]
                ]
            messages.append(item)
        if len(messages) >= args.limit:
            break
    messages = sorted(messages[: args.limit], key=lambda m: float(m["ts"]))
    return ActionResult(data=messages)


@guarded("slack.thread", lambda a: f"{a.channel} thread {a.ts}")
async def read_thread(context: ActionContext, args: ThreadArgs, grant: Any) -> ActionResult:
    client = await pooled(context, "slack.thread")
    channel = await granted_channel(client, args, grant, "slack.thread")
    messages: list[dict[str, Any]] = []
    pages = await client.conversations_replies(channel=channel, ts=args.ts, limit=200)
    async for page in pages:
        messages += [
            {"ts": m["ts"], "user": m.get("user"), "text": m.get("text")}
            for m in page.get("messages", [])
        ]
        if len(messages) >= args.limit:
            break
    return ActionResult(data=messages[: args.limit])


@guarded("slack.user", lambda a: a.user)
async def read_user(context: ActionContext, args: UserArgs, grant: Any) -> ActionResult:
    client = await pooled(context, "slack.user")
    if "@" in args.user:
        found = await client.users_lookupByEmail(email=args.user)
    else:
        found = await client.users_info(user=args.user)
    user = found["user"]
    profile = user.get("profile", {})
    found_id = user["id"]  # an answer without one is no user: the call fails
    data = {
        "id": found_id if "@" in args.user else None,  # asked by id: no echo
        "name": user.get("name"),
        "real_name": user.get("real_name") or profile.get("real_name"),
        "title": profile.get("title"),
        "tz": user.get("tz"),
    }
    return ActionResult(data={k: v for k, v in data.items() if v not in (None, "")})
