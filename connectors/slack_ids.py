"""The slack connector's identifiers, arguments and grants: every channel, user, timestamp and
emoji name is parsed against Slack's own format before the grant is checked and before any request;
a grant compares the parsed channel's id or name, or the person.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import Field, model_validator

from meshagent.actions import ActionArgs, ActionGrant, identifier

__all__ = [
    "Channel",
    "ChannelArg",
    "ChannelGrant",
    "DmArgs",
    "EmojiArg",
    "HistoryArgs",
    "PeopleGrant",
    "PostArgs",
    "ReactionArgs",
    "ReplyArgs",
    "ThreadArgs",
    "TsArg",
    "User",
    "UserArg",
    "UserArgs",
    "channel_scope",
    "user_scope",
]


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
    text: str = Field(default="", description="Message text.")
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


def channel_scope(args: Any, grant: ChannelGrant) -> str | None:
    target = Channel.parse(args.channel) if not isinstance(args.channel, Channel) else args.channel
    allowed = [Channel.parse(c) if not isinstance(c, Channel) else c for c in grant.channels]
    if any(target.id == c.id and target.name == c.name for c in allowed):
        return None
    if any((target.id is None) != (c.id is None) for c in allowed):
        return None  # an id against names or a name against ids: checked once resolved
    return f"channel {args.channel} is not granted (allowed: {', '.join(grant.channels)})"


def user_scope(args: DmArgs, grant: PeopleGrant) -> str | None:
    if str(args.user).lower() in {u.lower() for u in grant.users}:
        return None
    return f"user {args.user} is not granted (allowed: {', '.join(grant.users)})"
