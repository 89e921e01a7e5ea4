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

The identifiers, arguments and grants are in ``connectors.slack_ids``; the client, channel lookup
and error handling in ``connectors.slack_client``; the reads in ``connectors.slack_read``; the
writes and their reach in ``connectors.slack_write``.
"""

from __future__ import annotations

from connectors.slack_client import token_missing
from connectors.slack_ids import (
    ChannelGrant,
    DmArgs,
    HistoryArgs,
    PeopleGrant,
    PostArgs,
    ReactionArgs,
    ReplyArgs,
    ThreadArgs,
    UserArgs,
    channel_scope,
    user_scope,
)
from connectors.slack_read import read_history, read_thread, read_user
from connectors.slack_write import add_reaction, post_message, reply, send_dm
from meshagent.actions import Action, ActionGrant, ActionKind, Connector

__all__ = ["connector"]


READ, WRITE = ActionKind.READ, ActionKind.WRITE
connector = Connector(
    name="slack",
    description="Slack through the Web API (bot token).",
    missing=token_missing,
    actions=(
        Action(
            "slack.history",
            READ,
            "Messages of a channel over the last hours, optionally with thread replies.",
            args=HistoryArgs,
            grant=ChannelGrant,
            handler=read_history,
            scope=channel_scope,
        ),
        Action(
            "slack.thread",
            READ,
            "One thread of a channel: its first message and every reply.",
            args=ThreadArgs,
            grant=ChannelGrant,
            handler=read_thread,
            scope=channel_scope,
        ),
        Action(
            "slack.user",
            READ,
            "A Slack user's name, title and timezone, by id or email.",
            args=UserArgs,
            grant=ActionGrant,
            handler=read_user,
        ),
        Action(
            "slack.post_message",
            WRITE,
            "Post a message (text and/or Block Kit) to a channel or thread.",
            args=PostArgs,
            grant=ChannelGrant,
            handler=post_message,
            scope=channel_scope,
            answer_field="text",
        ),
        Action(
            "slack.reply",
            WRITE,
            "Reply in a thread.",
            args=ReplyArgs,
            grant=ChannelGrant,
            handler=reply,
            scope=channel_scope,
            answer_field="text",
        ),
        Action(
            "slack.add_reaction",
            WRITE,
            "Add an emoji reaction to a message.",
            args=ReactionArgs,
            grant=ChannelGrant,
            handler=add_reaction,
            scope=channel_scope,
        ),
        Action(
            "slack.dm",
            WRITE,
            "Send a direct message to a person.",
            args=DmArgs,
            grant=PeopleGrant,
            handler=send_dm,
            scope=user_scope,
            answer_field="text",
        ),
    ),
)
