"""The `slack` connector on slack_sdk's AsyncWebClient: channel history and users, posts,
replies, reactions and direct messages, each scoped to the channels or people granted.

The bot token comes from the environment variable named in meshagent.toml ([slack] token_env,
default SLACK_BOT_TOKEN); SLACK_API_URL points the client elsewhere (the sandbox). Channel
names are resolved once per workspace through conversations.list and cached.

Reads return what was asked and nothing around it: the list of a channel's messages (each with
its ``ts``, the identifier a reply or a reaction needs), not the channel's name again.

Every channel, user, timestamp and emoji name is parsed against Slack's own format before the
grant is checked and before any request (an id such as C0123ABCD or a #name of lowercase
letters, digits, '-' and '_'; U.../W... or an email; 1700000000.000100); grants compare the
parsed channel's id or name.
"""

from __future__ import annotations

import re
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from pydantic import Field, model_validator

from meshagent.actions import (
    Action,
    ActionArgs,
    ActionContext,
    ActionGrant,
    ActionKind,
    ActionResult,
    Connector,
    Outcome,
    identifier,
)
from meshagent.exceptions import ConnectorError, GrantDenied

if TYPE_CHECKING:  # slack_sdk is imported when a call is made: validate and list do without it
    from slack_sdk.web.async_client import AsyncWebClient

__all__ = ["connector"]

SESSION_TIMEOUT_SECONDS = 30  # slack_sdk's default timeout of a call

_names: dict[tuple[str, str], dict[str, str]] = {}  # (api url, token tail) -> name -> id
#: (api url, channel) -> (read at, conversations.info's channel, its members or None), kept
#: REACH_TTL seconds: a run posting to one channel many times reads it once.
_infos: dict[tuple[str, str], tuple[float, dict[str, Any], list[str] | None]] = {}
REACH_TTL = 300.0

# Identifiers, parsed before any grant check or request. Slack's channel names are lowercase
# letters, digits, '-' and '_' (at most 80); '#Payments' means #payments, and the name is
# checked before lower(), which turns the Kelvin sign into a k.
_CHANNEL_ID = r"[CGD][A-Z0-9]{8,20}"
_CHANNEL_NAME = r"#?[A-Za-z0-9_-]{1,80}"
_USER_ID = r"[UW][A-Z0-9]{8,20}"
_EMAIL = r"[A-Za-z0-9._+-]{1,64}@[A-Za-z0-9-]{1,63}(?:\.[A-Za-z0-9-]{1,63}){1,8}"


class Channel(str):
    """A parsed channel: ``id`` (C0PAYMENTS) or ``name`` (payments, shown as #payments)."""

    id: str | None
    name: str | None

    @classmethod
    def parse(cls, text: str) -> Channel:
        if re.fullmatch(_CHANNEL_ID, text):
            channel = cls(text)
            channel.id, channel.name = text, None
        else:
            name = text.removeprefix("#").lower()
            channel = cls(f"#{name}")
            channel.id, channel.name = None, name
        return channel


class User(str):
    """A parsed person: a user id (U0ALICE01) or an email address (lowercased)."""

    @classmethod
    def parse(cls, text: str) -> User:
        if "@" in text:
            if len(text) > 254:
                raise ValueError(text)
            return cls(text.lower())
        return cls(text)


ChannelArg = identifier(
    "a Slack channel",
    rf"{_CHANNEL_ID}|{_CHANNEL_NAME}",
    "an id such as C0123ABCD or a name such as #payments (letters, digits, '-' and '_')",
    parse=Channel.parse,
)
UserArg = identifier(
    "a Slack user",
    rf"{_USER_ID}|{_EMAIL}",
    "a user id such as U0123ABCD or an email address",
    parse=User.parse,
)


def _ts(text: str) -> str:
    """A message timestamp; the form of a message's link (p1700000000000100) is turned into it."""
    return f"{text[1:11]}.{text[11:]}" if text.startswith("p") else text


TsArg = identifier(
    "a Slack message timestamp",
    r"[0-9]{10}\.[0-9]{6}|p[0-9]{16}",
    "seconds and microseconds such as 1700000000.000100 (or p1700000000000100, from its link)",
    parse=_ts,
)
EmojiArg = identifier(
    "an emoji name",
    r"[a-z0-9_+'-]{1,80}(?:::skin-tone-[2-6])?",
    "a name without colons such as eyes or thumbsup",
)


class ChannelGrant(ActionGrant):
    channels: list[ChannelArg] = Field(min_length=1, description="Channels allowed (#name or id).")


class PeopleGrant(ActionGrant):
    users: list[str] = Field(min_length=1, description="People who may get messages (id/email).")


class HistoryArgs(ActionArgs):
    channel: ChannelArg = Field(description="Channel to read (#name or id).")
    hours: float = Field(default=24, gt=0, le=24 * 90, description="How far back to read.")
    limit: int = Field(default=200, ge=1, le=2000, description="At most this many messages.")
    replies: bool = Field(default=False, description="Include thread replies.")


class ThreadArgs(ActionArgs):
    channel: ChannelArg = Field(description="Channel of the thread (#name or id).")
    ts: TsArg = Field(description="Timestamp of the thread's first message.")
    limit: int = Field(default=200, ge=1, le=1000, description="At most this many messages.")


class UserArgs(ActionArgs):
    user: UserArg = Field(description="A user id (U...) or email address.")


class PostArgs(ActionArgs):
    channel: ChannelArg = Field(description="Channel to post in (#name or id).")
    text: str = Field(default="", description="Message text (the answer, under deliver).")
    blocks: list[dict[str, Any]] | None = Field(default=None, description="Block Kit blocks.")
    thread_ts: TsArg | None = Field(default=None, description="Post into this thread.")

    @model_validator(mode="after")
    def _something(self) -> PostArgs:
        if not self.text and not self.blocks:
            raise ValueError("a message needs text or blocks")
        return self


class ReplyArgs(ActionArgs):
    channel: ChannelArg = Field(description="Channel of the thread (#name or id).")
    thread_ts: TsArg = Field(description="Timestamp of the thread's first message.")
    text: str = Field(description="Reply text.")


class ReactionArgs(ActionArgs):
    channel: ChannelArg = Field(description="Channel of the message (#name or id).")
    ts: TsArg = Field(description="Timestamp of the message.")
    name: EmojiArg = Field(description="Emoji name without colons, e.g. eyes.")


class DmArgs(ActionArgs):
    user: UserArg = Field(description="Recipient: user id or email.")
    text: str = Field(description="Message text.")


def _channel_scope(args: Any, grant: ChannelGrant) -> str | None:
    target = Channel.parse(args.channel) if not isinstance(args.channel, Channel) else args.channel
    allowed = [Channel.parse(c) if not isinstance(c, Channel) else c for c in grant.channels]
    if any(target.id == c.id and target.name == c.name for c in allowed):
        return None
    if any((target.id is None) != (c.id is None) for c in allowed):
        return None  # an id against names or a name against ids: checked once resolved
    return f"channel {args.channel} is not granted (allowed: {', '.join(grant.channels)})"


def _user_scope(args: DmArgs, grant: PeopleGrant) -> str | None:
    if str(args.user).lower() in {u.lower() for u in grant.users}:
        return None
    return f"user {args.user} is not granted (allowed: {', '.join(grant.users)})"


def _missing(context: ActionContext, action: Any = None) -> str | None:
    """Every action needs the bot token, dry runs too (they resolve channels and people)."""
    token_env = context.settings.get("token_env", "SLACK_BOT_TOKEN")
    if context.env.get(token_env):
        return None
    return f"set {token_env} to the Slack bot token (xoxb-...)"


def _client(context: ActionContext, action: str) -> AsyncWebClient:
    missing = _missing(context)
    if missing is not None:
        raise ConnectorError(action, "", missing)
    token = context.env[context.settings.get("token_env", "SLACK_BOT_TOKEN")]
    url_env = context.settings.get("api_url_env", "SLACK_API_URL")
    from slack_sdk.http_retry.builtin_async_handlers import (
        AsyncConnectionErrorRetryHandler,
        AsyncRateLimitErrorRetryHandler,
        AsyncServerErrorRetryHandler,
    )
    from slack_sdk.web.async_client import AsyncWebClient

    handlers = [
        AsyncRateLimitErrorRetryHandler(max_retry_count=3),
        AsyncServerErrorRetryHandler(max_retry_count=2),
        AsyncConnectionErrorRetryHandler(max_retry_count=2),
    ]
    base_url = context.env.get(url_env) or "https://slack.com/api/"
    return AsyncWebClient(token=token, base_url=base_url, retry_handlers=handlers)


async def _pooled(context: ActionContext, action: str) -> AsyncWebClient:
    """A client on the runtime's pooled HTTP session (one per runtime and event loop, see
    ``meshagent.clients``), or on a session of each request's own outside a runtime."""
    client = _client(context, action)
    clients = context.services.get("clients")
    if clients is not None:
        client.session = await clients.get("slack", _session)
    return client


def _session() -> Any:
    import aiohttp

    # As slack_sdk makes its own sessions (timeout, no proxy from the environment), and no
    # cookie kept from one call (another run, another token) to the next.
    return aiohttp.ClientSession(
        timeout=aiohttp.ClientTimeout(total=SESSION_TIMEOUT_SECONDS),
        cookie_jar=aiohttp.DummyCookieJar(),
        trust_env=False,
    )


async def _channel_id(client: AsyncWebClient, channel: str) -> str:
    parsed = channel if isinstance(channel, Channel) else Channel.parse(channel)
    if parsed.id is not None:
        return parsed.id
    key = (client.base_url, (client.token or "")[-6:])
    if key not in _names:
        names: dict[str, str] = {}
        pages = await client.conversations_list(
            types="public_channel,private_channel", limit=200, exclude_archived=True
        )
        async for page in pages:
            names.update({c["name"].lower(): c["id"] for c in page.get("channels", [])})
        _names[key] = names
    try:
        return _names[key][parsed.name or ""]
    except KeyError:
        raise ConnectorError("slack", channel, "channel_not_found") from None


Handler = Callable[[ActionContext, Any, Any], Awaitable[ActionResult]]


def _guarded(name: str, target: Callable[[Any], str]) -> Callable[[Handler], Handler]:
    """Turn Slack's errors into ConnectorErrors naming the action, the target and the code."""

    def wrap(handler: Handler) -> Handler:
        async def run(context: ActionContext, args: Any, grant: Any) -> ActionResult:
            import aiohttp
            from slack_sdk.errors import SlackApiError, SlackClientError

            try:
                return await handler(context, args, grant)
            except SlackApiError as exc:
                data = exc.response.data
                code = data.get("error") if isinstance(data, dict) else None
                code = code or f"HTTP {exc.response.status_code}"
                raise ConnectorError(name, target(args), str(code)) from None
            except (SlackClientError, aiohttp.ClientError, TimeoutError) as exc:
                reason = f"cannot reach Slack ({type(exc).__name__})"
                raise ConnectorError(name, target(args), reason) from None
            except ConnectorError as exc:
                if exc.action == "slack":  # raised by a shared helper: name the action
                    raise ConnectorError(name, exc.target, exc.code) from None
                raise

        return run

    return wrap


async def _granted_channel(
    client: AsyncWebClient, args: Any, grant: ChannelGrant | None, action: str
) -> str:
    channel = await _channel_id(client, args.channel)
    if grant is not None:
        allowed = {await _channel_id(client, c) for c in grant.channels}
        if channel not in allowed:
            raise GrantDenied(action, f"channel {args.channel} is not granted")
    return channel


async def _message_outcome(
    client: AsyncWebClient,
    channel: str,
    ts: str,
    context: ActionContext | None = None,
    *,
    thread_ts: str | None = None,
) -> Outcome:
    link = await client.chat_getPermalink(channel=channel, message_ts=ts)
    reach = await _reach(client, channel, context, thread=thread_ts is not None)
    return Outcome(
        kind="slack.message", reference=f"{channel}:{ts}", url=link.get("permalink"), **reach
    )


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


@_guarded("slack.history", lambda a: a.channel)
async def _history(context: ActionContext, args: HistoryArgs, grant: Any) -> ActionResult:
    client = await _pooled(context, "slack.history")
    channel = await _granted_channel(client, args, grant, "slack.history")
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


@_guarded("slack.thread", lambda a: f"{a.channel} thread {a.ts}")
async def _thread(context: ActionContext, args: ThreadArgs, grant: Any) -> ActionResult:
    client = await _pooled(context, "slack.thread")
    channel = await _granted_channel(client, args, grant, "slack.thread")
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


@_guarded("slack.user", lambda a: a.user)
async def _user(context: ActionContext, args: UserArgs, grant: Any) -> ActionResult:
    client = await _pooled(context, "slack.user")
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


@_guarded("slack.post_message", lambda a: a.channel)
async def _post(context: ActionContext, args: PostArgs, grant: Any) -> ActionResult:
    client = await _pooled(context, "slack.post_message")
    channel = await _granted_channel(client, args, grant, "slack.post_message")
    if context.dry_run:
        return ActionResult.planned("slack.post_message", args, args.channel)
    sent = await client.chat_postMessage(
        channel=channel, text=args.text, blocks=args.blocks, thread_ts=args.thread_ts
    )
    outcome = await _message_outcome(
        client, sent["channel"], sent["ts"], context, thread_ts=args.thread_ts
    )
    return ActionResult(data={"channel": sent["channel"], "ts": sent["ts"]}, outcomes=[outcome])


@_guarded("slack.reply", lambda a: a.channel)
async def _reply(context: ActionContext, args: ReplyArgs, grant: Any) -> ActionResult:
    post = PostArgs(channel=args.channel, text=args.text, thread_ts=args.thread_ts)
    client = await _pooled(context, "slack.reply")
    channel = await _granted_channel(client, post, grant, "slack.reply")
    if context.dry_run:
        return ActionResult.planned("slack.reply", args, f"{args.channel} thread {args.thread_ts}")
    sent = await client.chat_postMessage(channel=channel, text=args.text, thread_ts=args.thread_ts)
    outcome = await _message_outcome(
        client, sent["channel"], sent["ts"], context, thread_ts=args.thread_ts
    )
    return ActionResult(data={"channel": sent["channel"], "ts": sent["ts"]}, outcomes=[outcome])


@_guarded("slack.add_reaction", lambda a: a.channel)
async def _react(context: ActionContext, args: ReactionArgs, grant: Any) -> ActionResult:
    client = await _pooled(context, "slack.add_reaction")
    channel = await _granted_channel(client, args, grant, "slack.add_reaction")
    if context.dry_run:
        return ActionResult.planned("slack.add_reaction", args, f"{args.channel} {args.ts}")
    await client.reactions_add(channel=channel, timestamp=args.ts, name=args.name)
    reference = f"{channel}:{args.ts}:{args.name}"
    return ActionResult(data={"ok": True}, outcomes=[Outcome("slack.reaction", reference)])


@_guarded("slack.dm", lambda a: a.user)
async def _dm(context: ActionContext, args: DmArgs, grant: Any) -> ActionResult:
    client = await _pooled(context, "slack.dm")
    user = args.user
    if "@" in user:
        user = (await client.users_lookupByEmail(email=user))["user"]["id"]
    if context.dry_run:
        return ActionResult.planned("slack.dm", args, args.user)
    opened = await client.conversations_open(users=user)
    channel = opened["channel"]["id"]
    sent = await client.chat_postMessage(channel=channel, text=args.text)
    outcome = await _message_outcome(client, channel, sent["ts"], context)
    return ActionResult(data={"channel": channel, "ts": sent["ts"]}, outcomes=[outcome])


def _action(name: str, kind: ActionKind, description: str, **parts: Any) -> Action:
    return Action(name=name, kind=kind, description=description, **parts)


READ, WRITE = ActionKind.READ, ActionKind.WRITE
connector = Connector(
    name="slack",
    description="Slack through the Web API (bot token).",
    missing=_missing,
    actions=(
        _action(
            "slack.history",
            READ,
            "Messages of a channel over the last hours, optionally with thread replies.",
            args=HistoryArgs,
            grant=ChannelGrant,
            handler=_history,
            scope=_channel_scope,
        ),
        _action(
            "slack.thread",
            READ,
            "One thread of a channel: its first message and every reply.",
            args=ThreadArgs,
            grant=ChannelGrant,
            handler=_thread,
            scope=_channel_scope,
        ),
        _action(
            "slack.user",
            READ,
            "A Slack user's name, title and timezone, by id or email.",
            args=UserArgs,
            grant=ActionGrant,
            handler=_user,
        ),
        _action(
            "slack.post_message",
            WRITE,
            "Post a message (text and/or Block Kit) to a channel or thread.",
            args=PostArgs,
            grant=ChannelGrant,
            handler=_post,
            scope=_channel_scope,
            answer_field="text",
        ),
        _action(
            "slack.reply",
            WRITE,
            "Reply in a thread.",
            args=ReplyArgs,
            grant=ChannelGrant,
            handler=_reply,
            scope=_channel_scope,
            answer_field="text",
        ),
        _action(
            "slack.add_reaction",
            WRITE,
            "Add an emoji reaction to a message.",
            args=ReactionArgs,
            grant=ChannelGrant,
            handler=_react,
            scope=_channel_scope,
        ),
        _action(
            "slack.dm",
            WRITE,
            "Send a direct message to a person.",
            args=DmArgs,
            grant=PeopleGrant,
            handler=_dm,
            scope=_user_scope,
            answer_field="text",
        ),
    ),
)
