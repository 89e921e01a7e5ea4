"""The sandbox Slack assembled: the /api routes, response_url posts and Socket Mode."""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from typing import Any

from aiohttp import web

from meshagent.sandbox.slack.api import _Api
from meshagent.sandbox.slack.state import (
    RESPONSE_URL_SECONDS,
    RESPONSE_URL_USES,
    SlackState,
    _ApiError,
)

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
