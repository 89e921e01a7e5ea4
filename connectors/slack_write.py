"""The slack connector's writes: posts, replies, reactions and direct messages, each recorded as
an outcome with its reach: who can see the message (its audience and size), and whether anyone but
the run's owner and triggerer (and the bot) is among them.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from connectors.slack_client import granted_channel, guarded, pooled
from connectors.slack_ids import DmArgs, PostArgs, ReactionArgs, ReplyArgs
from meshagent.actions import ActionContext, ActionResult, Outcome

if TYPE_CHECKING:  # slack_sdk is imported when a call is made: validate and list do without it
    from slack_sdk.web.async_client import AsyncWebClient

__all__ = ["REACH_TTL", "add_reaction", "post_message", "reply", "send_dm", "user_email"]


#: (api url, channel) -> (read at, conversations.info's channel, its members or None), kept
#: REACH_TTL seconds: a run posting to one channel many times reads it once.
_infos: dict[tuple[str, str], tuple[float, dict[str, Any], list[str] | None]] = {}
REACH_TTL = 300.0


async def _posted(
    client: AsyncWebClient,
    channel: str,
    ts: str,
    context: ActionContext | None = None,
    *,
    thread_ts: str | None = None,
) -> ActionResult:
    """A posted message's channel and ts, and its outcome: its link and its reach."""
    link = await client.chat_getPermalink(channel=channel, message_ts=ts)
    reach = await _reach(client, channel, context, thread=thread_ts is not None)
    outcome = Outcome(
        kind="slack.message", reference=f"{channel}:{ts}", url=link.get("permalink"), **reach
    )
    return ActionResult(data={"channel": channel, "ts": ts}, outcomes=[outcome])


def _excluded(context: ActionContext | None) -> set[str]:
    """The names of the run's owner and triggerer, normalised, with every identity the ledger
    links to them (a Slack id beside an email)."""
    if context is None:
        return set()
    names = {
        str(n).strip().lstrip("@").lower()
        for n in (context.services.get("owner"), context.services.get("triggered_by"))
        if n
    }
    ledger = context.services.get("ledger")
    if ledger is not None and names:
        from meshagent.ledger.people import person_of

        for name in list(names):
            try:
                person = person_of(ledger, name)
            except Exception:  # noqa: BLE001 - reach is best effort
                person = None
            if person is not None:
                names |= {i.value.lower() for i in person.identities}
    return names


async def _channel_info(
    client: AsyncWebClient, channel: str, *, members: bool
) -> tuple[dict[str, Any], list[str] | None]:
    key = (client.base_url, channel)
    now = time.monotonic()
    cached = _infos.get(key)
    if (
        cached is not None
        and now - cached[0] < REACH_TTL
        and (cached[2] is not None or not members)
    ):
        return cached[1], cached[2]
    if cached is not None and now - cached[0] < REACH_TTL:
        info = cached[1]
    else:
        info = (await client.conversations_info(channel=channel, include_num_members=True))[
            "channel"
        ]
    found: list[str] | None = None
    if members:
        found = []
        pages = await client.conversations_members(channel=channel, limit=200)
        async for page in pages:
            found += page.get("members", [])
    _infos[key] = (now, dict(info), found)
    return info, found


async def _reach(
    client: AsyncWebClient, channel: str, context: ActionContext | None, *, thread: bool = False
) -> dict[str, Any]:
    """Who can see a message in `channel`: audience, size and whether anyone but the owner and
    the triggerer (and the bot) is among them. Unknown (no fields) when it cannot be read:
    a delivery never fails for its reach."""
    try:
        info, _ = await _channel_info(client, channel, members=False)
        excluded = _excluded(context)
        if info.get("is_im"):
            user = str(info.get("user") or "")
            others = user.lower() not in excluded and not await _same_email(client, user, excluded)
            return {
                "audience": "dm",
                "audience_size": 1,
                "reaches_others": others,
                "reach_detail": {"user": user},
            }
        private = bool(info.get("is_private") or info.get("is_group") or info.get("is_mpim"))
        size = info.get("num_members")
        detail: dict[str, Any] = {"channel": info.get("name"), "private": private}
        reaches: bool | None
        if isinstance(size, int) and size > len(excluded) + 1:
            reaches = True  # more members than the owner, the triggerer and the bot
        else:
            _, members = await _channel_info(client, channel, members=True)
            people = [m for m in members or [] if m.lower() not in excluded]
            bot = (await _bot_id(client)).lower()
            people = [m for m in people if m.lower() != bot]
            emails = await _emails(client, people) if excluded else {}
            reaches = any(emails.get(m, "") not in excluded for m in people)
            size = len(members or [])
        audience = "thread" if thread else ("private" if private else "public")
        return {
            "audience": audience,
            "audience_size": size,
            "reaches_others": reaches,
            "reach_detail": detail,
        }
    except Exception as exc:  # noqa: BLE001 - never fail a delivery for its reach
        from slack_sdk.errors import SlackApiError

        code = exc.response.data.get("error") if isinstance(exc, SlackApiError) else None
        return {"reach_detail": {"unknown": str(code or type(exc).__name__)}}


_bots: dict[tuple[str, str], str] = {}
_user_emails: dict[tuple[str, str], tuple[float, str]] = {}


async def _bot_id(client: AsyncWebClient) -> str:
    key = (client.base_url, (client.token or "")[-6:])
    if key not in _bots:
        _bots[key] = str((await client.auth_test()).get("user_id") or "")
    return _bots[key]


async def user_email(client: AsyncWebClient, user: str) -> str:
    """The lowercased email of the Slack user `user` ('' when Slack has none), from users.info,
    kept REACH_TTL seconds."""
    key = (client.base_url, user)
    now = time.monotonic()
    cached = _user_emails.get(key)
    if cached is not None and now - cached[0] < REACH_TTL:
        return cached[1]
    found = await client.users_info(user=user)
    email = str(found["user"].get("profile", {}).get("email") or "").lower()
    _user_emails[key] = (now, email)
    return email


async def _emails(client: AsyncWebClient, users: list[str]) -> dict[str, str]:
    return {user: await user_email(client, user) for user in users}


async def _same_email(client: AsyncWebClient, user: str, excluded: set[str]) -> bool:
    if not excluded or not user:
        return False
    return await user_email(client, user) in excluded


@guarded("slack.post_message", lambda a: a.channel)
async def post_message(context: ActionContext, args: PostArgs, grant: Any) -> ActionResult:
    client = await pooled(context, "slack.post_message")
    channel = await granted_channel(client, args, grant, "slack.post_message")
    if context.dry_run:
        return ActionResult.planned("slack.post_message", args, args.channel)
    sent = await client.chat_postMessage(
        channel=channel, text=args.text, blocks=args.blocks, thread_ts=args.thread_ts
    )
    return await _posted(client, sent["channel"], sent["ts"], context, thread_ts=args.thread_ts)


@guarded("slack.reply", lambda a: a.channel)
async def reply(context: ActionContext, args: ReplyArgs, grant: Any) -> ActionResult:
    post = PostArgs(channel=args.channel, text=args.text, thread_ts=args.thread_ts)
    client = await pooled(context, "slack.reply")
    channel = await granted_channel(client, post, grant, "slack.reply")
    if context.dry_run:
        return ActionResult.planned("slack.reply", args, f"{args.channel} thread {args.thread_ts}")
    sent = await client.chat_postMessage(channel=channel, text=args.text, thread_ts=args.thread_ts)
    return await _posted(client, sent["channel"], sent["ts"], context, thread_ts=args.thread_ts)


@guarded("slack.add_reaction", lambda a: a.channel)
async def add_reaction(context: ActionContext, args: ReactionArgs, grant: Any) -> ActionResult:
    client = await pooled(context, "slack.add_reaction")
    channel = await granted_channel(client, args, grant, "slack.add_reaction")
    if context.dry_run:
        return ActionResult.planned("slack.add_reaction", args, f"{args.channel} {args.ts}")
    await client.reactions_add(channel=channel, timestamp=args.ts, name=args.name)
    reference = f"{channel}:{args.ts}:{args.name}"
    return ActionResult(data={"ok": True}, outcomes=[Outcome("slack.reaction", reference)])


@guarded("slack.dm", lambda a: a.user)
async def send_dm(context: ActionContext, args: DmArgs, grant: Any) -> ActionResult:
    client = await pooled(context, "slack.dm")
    user = args.user
    if "@" in user:
        user = (await client.users_lookupByEmail(email=user))["user"]["id"]
    if context.dry_run:
        return ActionResult.planned("slack.dm", args, args.user)
    opened = await client.conversations_open(users=user)
    channel = opened["channel"]["id"]
    sent = await client.chat_postMessage(channel=channel, text=args.text)
    return await _posted(client, channel, sent["ts"], context)
