"""The slack connector's client: the bot token, slack_sdk's AsyncWebClient with its retries (on
the runtime's pooled HTTP session when there is one), channel names resolved to ids once per
workspace, the grant checked on the resolved channel, and Slack's errors turned into ConnectorErrors
that name the action.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from connectors.slack_ids import Channel, ChannelGrant
from meshagent.actions import ActionContext, ActionResult
from meshagent.exceptions import ConnectorError, GrantDenied

if TYPE_CHECKING:  # slack_sdk is imported when a call is made: validate and list do without it
    from slack_sdk.web.async_client import AsyncWebClient

__all__ = [
    "Handler",
    "SESSION_TIMEOUT_SECONDS",
    "channel_id",
    "granted_channel",
    "guarded",
    "make_client",
    "token_missing",
    "pooled",
]


SESSION_TIMEOUT_SECONDS = 30  # slack_sdk's default timeout of a call

_names: dict[tuple[str, str], dict[str, str]] = {}  # (api url, token tail) -> name -> id


def token_missing(context: ActionContext, action: Any = None) -> str | None:
    """Every action needs the bot token, dry runs too (they resolve channels and people)."""
    token_env = context.settings.get("token_env", "SLACK_BOT_TOKEN")
    if context.env.get(token_env):
        return None
    return f"set {token_env} to the Slack bot token (xoxb-...)"


def make_client(context: ActionContext, action: str) -> AsyncWebClient:
    missing = token_missing(context)
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


async def pooled(context: ActionContext, action: str) -> AsyncWebClient:
    """A client on the runtime's pooled HTTP session (one per runtime and event loop, see
    ``meshagent.runtime.clients``), or on a session of each request's own outside a runtime."""
    client = make_client(context, action)
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


async def channel_id(client: AsyncWebClient, channel: str) -> str:
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


def guarded(name: str, target: Callable[[Any], str]) -> Callable[[Handler], Handler]:
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


async def granted_channel(
    client: AsyncWebClient, args: Any, grant: ChannelGrant | None, action: str
) -> str:
    channel = await channel_id(client, args.channel)
    if grant is not None:
        allowed = {await channel_id(client, c) for c in grant.channels}
        if channel not in allowed:
            raise GrantDenied(action, f"channel {args.channel} is not granted")
    return channel
