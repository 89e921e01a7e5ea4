"""One call of an MCP tool: dry run, connection, timeout, size cap, result, outcome, record.

A dry run never calls a write tool: it records what it would have sent. A call the agent file
fixed (context, deliver) is recorded here as a ledger event of its run, arguments masked (the
model's own calls are recorded by the tool loop, ``meshagent.runtime.agent_loop.Attempts``). A
write's result becomes an outcome named after the tool, with a link when the result carries one (a
``url``/``link`` field, a resource link, or the first web address in its text).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from meshagent.actions import ActionContext, ActionResult, Outcome
from meshagent.config import looks_secret
from meshagent.config.mcp import McpServerSettings, secret_variables
from meshagent.exceptions import ConnectorError
from meshagent.masking import MASK, mask_known, mask_shapes, secrets_of
from meshagent.mcp.connection import McpConnection, McpUnavailable

__all__ = ["connection_for", "handler_for", "result_data"]

_URL = re.compile(r"https?://[^\s\"'<>)\]]+")
_LINK_KEYS = ("url", "link", "href", "web_url", "webUrl", "html_url", "permalink")
_REF_KEYS = ("id", "key", "slug", "title", "name", "path")


def handler_for(server: str, tool: str, kind: str) -> Any:
    """The handler of the action ``server.tool`` of kind ``kind`` (read or write)."""
    name = f"{server}.{tool}"

    async def handler(context: ActionContext, args: Any, grant: Any) -> ActionResult:
        arguments = args.model_dump()
        if context.dry_run and kind == "write":
            planned = ActionResult.planned(name, args, _target(arguments))
            _record("tool_planned", name, context, arguments, "dry run: not sent", fixed=grant)
            return planned
        if not context.settings:
            raise ConnectorError(
                name, "", f"the MCP server {server} is not declared: add [mcp.{server}] to "
                "meshagent.toml (command or url)"
            )  # fmt: skip
        settings = McpServerSettings.model_validate(dict(context.settings))
        connection, own = await connection_for(server, settings, context)
        try:
            result = await _call(connection, name, tool, arguments, settings)
        except ConnectorError as exc:
            _record("tool_failed", name, context, arguments, str(exc), fixed=grant)
            raise
        finally:
            if own:
                await connection.aclose()
        data, link = result_data(result)
        size = len(json.dumps(data, default=str, ensure_ascii=False).encode())
        if size > settings.max_result_bytes:
            reason = (
                f"the answer is {size:,} bytes, over max_result_bytes of "
                f"{settings.max_result_bytes:,} ([mcp.{server}])"
            )
            _record("tool_failed", name, context, arguments, reason, fixed=grant)
            raise ConnectorError(name, "", reason)
        if result.is_error:
            reason = f"the tool answered an error: {_text(data)[:300]}"
            _record("tool_failed", name, context, arguments, reason, fixed=grant)
            raise ConnectorError(name, "", reason)
        outcomes = []
        if kind == "write":
            outcomes.append(Outcome(kind=name, reference=_reference(name, data, link), url=link))
        _record("tool_call", name, context, arguments, "", fixed=grant)
        return ActionResult(data=data, outcomes=outcomes)

    return handler


async def _call(
    connection: McpConnection,
    name: str,
    tool: str,
    arguments: dict[str, Any],
    settings: McpServerSettings,
) -> Any:
    import asyncio

    from mcp import MCPError
    from mcp_types import CONNECTION_CLOSED, REQUEST_TIMEOUT

    try:
        client = await connection.client()
    except McpUnavailable as exc:
        raise ConnectorError(name, "", str(exc)) from None
    timeout = settings.timeout_seconds
    try:
        async with asyncio.timeout(timeout):
            return await client.call_tool(tool, arguments, read_timeout_seconds=timeout)
    except TimeoutError:
        await connection.broken(f"no answer to {tool} within {timeout:g}s")
        raise ConnectorError(
            name, "", f"{connection.where} gave no answer within {timeout:g}s (timeout_seconds)"
        ) from None
    except MCPError as exc:
        if exc.code == REQUEST_TIMEOUT:
            await connection.broken(f"no answer to {tool} within {timeout:g}s")
            raise ConnectorError(
                name, "", f"{connection.where} gave no answer within {timeout:g}s (timeout_seconds)"
            ) from None
        if exc.code != CONNECTION_CLOSED:  # the server refused the request; the connection holds
            raise ConnectorError(name, "", f"{connection.where} refused the call: {exc}") from None
        await connection.broken(str(exc))
        raise ConnectorError(
            name, "", f"{connection.where}: the connection failed ({exc}){connection.stderr_tail()}"
            "; it is started again on a later call"
        ) from None  # fmt: skip
    except Exception as exc:  # noqa: BLE001 - the connection broke under the call
        from meshagent.mcp.connection import _reason

        await connection.broken(_reason(exc))
        raise ConnectorError(
            name, "", f"{connection.where}: the connection failed ({_reason(exc)})"
            f"{connection.stderr_tail()}; it is started again on a later call"
        ) from None  # fmt: skip


async def connection_for(
    server: str, settings: McpServerSettings, context: ActionContext
) -> tuple[McpConnection, bool]:
    """The kept connection of the runtime (one per server and event loop), or one of the
    call's own to close after it (outside a runtime): (connection, own)."""
    config = context.services.get("config")
    root = getattr(config, "root", None)
    clients = context.services.get("clients")

    def make() -> McpConnection:
        return McpConnection(server, settings, context.env, cwd=root)

    if clients is None:
        return make(), True
    key = f"mcp:{server}:{settings.model_dump_json()}"
    return await clients.get(key, make), False


def result_data(result: Any) -> tuple[Any, str | None]:
    """The data of a tool's result, compact, and the link it carries (or None)."""
    link: str | None = None
    if result.structured_content is not None:
        data: Any = result.structured_content
        if isinstance(data, dict) and set(data) == {"result"}:
            data = data["result"]  # the SDK wraps a function's plain return value
    else:
        parts: list[Any] = []
        for block in result.content or ():
            kind = getattr(block, "type", "")
            if kind == "text":
                parts.append(_json_or_text(block.text))
            elif kind == "resource_link":
                link = link or str(block.uri)
                parts.append({"link": str(block.uri), "name": getattr(block, "name", None)})
            elif kind == "resource":
                resource = block.resource
                text = getattr(resource, "text", None)
                parts.append(text if text is not None else f"[resource {resource.uri}]")
            else:
                parts.append(f"[{kind}]")
        data = parts[0] if len(parts) == 1 else parts
    return data, link or _link(data)


def _json_or_text(text: str) -> Any:
    stripped = text.strip()
    if stripped[:1] in ("{", "["):
        try:
            return json.loads(stripped)
        except ValueError:
            pass
    return text


def _link(data: Any) -> str | None:
    if isinstance(data, dict):
        for key in _LINK_KEYS:
            value = data.get(key)
            if isinstance(value, str) and _URL.fullmatch(value):
                return value
        return None
    if isinstance(data, str):
        found = _URL.search(data)
        return found.group(0) if found else None
    return None


def _reference(name: str, data: Any, link: str | None) -> str:
    if isinstance(data, dict):
        for key in _REF_KEYS:
            value = data.get(key)
            if isinstance(value, str | int) and str(value):
                return f"{name} {str(value)[:150]}"
    return f"{name} {link}" if link else name


def _target(arguments: Mapping[str, Any]) -> str:
    for key in _REF_KEYS + ("space", "channel", "project"):
        value = arguments.get(key)
        if isinstance(value, str | int) and str(value):
            return str(value)[:100]
    return ""


def _text(data: Any) -> str:
    return data if isinstance(data, str) else json.dumps(data, default=str, ensure_ascii=False)


def _record(
    kind: str,
    name: str,
    context: ActionContext,
    arguments: Any,
    reason: str,
    *,
    fixed: Any = None,
) -> None:
    """An event of the run for a call the agent file fixed (``fixed`` is the grant: None for
    context and deliver; the tool loop records the model's own calls)."""
    record = context.services.get("record_event")
    if fixed is not None or record is None:
        return  # a model's call, or outside a run (an approved write: its caller records it)
    secrets = secrets_of(_secret_values(context))
    shown = json.dumps(_masked(arguments, secrets), default=str, ensure_ascii=False)[:_SHOWN]
    detail = f"{_mask_text(reason, secrets)}; arguments {shown}" if reason else shown
    record(kind, name, detail)


_SHOWN = 500  # characters of arguments an event keeps, as for the model's calls


def _secret_values(context: ActionContext) -> list[str]:
    """The environment's secrets: secret-named variables, and those [mcp.NAME] names."""
    names = {name for name in context.env if looks_secret(name)}
    names.update(secret_variables(dict(context.settings or {})))
    return [context.env.get(name) or "" for name in names]


def _mask_text(text: str, secrets: tuple[str, ...]) -> str:
    return mask_shapes(mask_known(text, secrets))


def _masked(value: Any, secrets: tuple[str, ...]) -> Any:
    if isinstance(value, str):
        return _mask_text(value, secrets)
    if isinstance(value, dict):
        return {
            key: MASK
            if isinstance(key, str) and looks_secret(key) and item not in (None, "")
            else _masked(item, secrets)
            for key, item in value.items()
        }
    if isinstance(value, list | tuple):
        return [_masked(item, secrets) for item in value]
    return value
