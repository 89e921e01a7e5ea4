"""A local OpenAI-compatible server: POST /v1/chat/completions answers from a queue of scripted
replies and records every request it got, so tests can run the real ``ChatOpenAI`` against it.

It runs as the sandbox's servers do (``meshagent.sandbox.Sandbox``): an aiohttp app on an event
loop of its own, in a background thread, on a free port of 127.0.0.1. A reply is a completion
(``answer`` or ``tool_calls``) or an error status (``failure``); a request that asks to stream
gets the same completion as server-sent chunks, its usage last when ``stream_options`` asks.
With no reply left, the server answers 400, which fails the run loudly.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

__all__ = ["Completion", "Failure", "OpenAIServer", "answer", "failure", "tool_calls", "usage"]

API_KEY = "sk-meshagent-test-not-a-real-key"
_CALL_IDS = itertools.count(1)  # every tool call gets an id of its own, as OpenAI's do


@dataclass
class Completion:
    """One chat completion: the assistant message, why it finished, and its usage block."""

    message: dict[str, Any]
    finish_reason: str
    usage: dict[str, Any] | None = None


@dataclass
class Failure:
    """An error response, as OpenAI sends them (429 rate limits, 5xx)."""

    status: int
    message: str
    type: str = "error"
    headers: dict[str, str] = field(default_factory=dict)


def usage(prompt: int, completion: int, *, cached: int = 0, reasoning: int = 0) -> dict[str, Any]:
    """An OpenAI usage block: cached tokens are part of ``prompt_tokens``, reasoning of
    ``completion_tokens``."""
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": cached, "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": reasoning, "audio_tokens": 0},
    }


def answer(content: str, spent: dict[str, Any] | None = None) -> Completion:
    """A final text answer."""
    return Completion({"role": "assistant", "content": content}, "stop", spent)


def tool_calls(
    *calls: tuple[str, dict[str, Any]],
    content: str | None = None,
    spent: dict[str, Any] | None = None,
) -> Completion:
    """The model asks for tools: ``(name, arguments)`` pairs, as OpenAI's function calls."""
    asked = [
        {
            "id": f"call_{next(_CALL_IDS)}_{name}",
            "type": "function",
            "function": {"name": name, "arguments": json.dumps(arguments)},
        }
        for name, arguments in calls
    ]
    return Completion(
        {"role": "assistant", "content": content, "tool_calls": asked}, "tool_calls", spent
    )


def failure(status: int, message: str = "Rate limit reached", **headers: str) -> Failure:
    """An error response with ``status`` (and headers, e.g. ``**{"retry-after-ms": "1"}``)."""
    kinds = {429: "rate_limit_exceeded"}
    kind = kinds.get(status, "server_error" if status >= 500 else "invalid_request_error")
    return Failure(status, message, kind, dict(headers))


class OpenAIServer:
    """Scripted chat completions on a free port of 127.0.0.1. Use as a context manager."""

    __test__ = False

    def __init__(self, host: str = "127.0.0.1", *, answered_as: str | None = None) -> None:
        self.host = host
        self.answered_as = answered_as  # the model the responses name (a dated snapshot)
        self.port = 0
        self.replies: deque[Completion | Failure] = deque()
        self.requests: list[dict[str, Any]] = []  # the JSON bodies, in order
        self.headers: list[dict[str, str]] = []
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None

    @property
    def base_url(self) -> str:
        """What ``ChatOpenAI(base_url=...)`` and ``OPENAI_BASE_URL`` want."""
        return f"http://{self.host}:{self.port}/v1"

    def script(self, *replies: Completion | Failure) -> None:
        """Queue replies, answered one per request in order."""
        with self._lock:
            self.replies.extend(replies)

    def chat_model(self, model: str = "gpt-4o-mini", **options: Any) -> Any:
        """The real ``ChatOpenAI`` pointed at this server; the client's own retries are off."""
        from langchain_openai import ChatOpenAI

        settings: dict[str, Any] = {"max_retries": 0, "timeout": 10}
        return ChatOpenAI(
            model=model, base_url=self.base_url, api_key=API_KEY, **(settings | options)
        )

    # -- the endpoint --------------------------------------------------------------------------

    async def _completions(self, request: web.Request) -> web.StreamResponse:
        response = await self._reply(request)
        # No keep-alive: the client's pooled connection would outlive the run's event loop
        # (langchain-openai shares one httpx client per base URL) and warn when collected.
        response.force_close()
        return response

    async def _reply(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        with self._lock:
            self.requests.append(body)
            self.headers.append(dict(request.headers))
            reply = self.replies.popleft() if self.replies else None
        if reply is None:
            reply = Failure(400, "the test server has no scripted reply left", "invalid_request")
        if isinstance(reply, Failure):
            error = {"message": reply.message, "type": reply.type, "param": None, "code": None}
            return web.json_response({"error": error}, status=reply.status, headers=reply.headers)
        head = {
            "id": f"chatcmpl-test{next(self._ids)}",
            "created": int(time.time()),
            "model": self.answered_as or body.get("model"),
            "system_fingerprint": "fp_test",
        }
        if body.get("stream"):
            include = (body.get("stream_options") or {}).get("include_usage", False)
            return await self._stream(request, head, reply, include_usage=bool(include))
        choice = {"index": 0, "message": reply.message, "logprobs": None}
        return web.json_response(
            head
            | {
                "object": "chat.completion",
                "choices": [choice | {"finish_reason": reply.finish_reason}],
                "usage": reply.usage,
            }
        )

    async def _stream(
        self, request: web.Request, head: dict[str, Any], reply: Completion, *, include_usage: bool
    ) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        response.force_close()
        await response.prepare(request)

        async def send(
            delta: dict[str, Any] | None, finish: str | None = None, **extra: Any
        ) -> None:
            choices = [] if delta is None else [
                {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
            ]  # fmt: skip
            chunk = head | {"object": "chat.completion.chunk", "choices": choices} | extra
            await response.write(f"data: {json.dumps(chunk)}\n\n".encode())

        await send({"role": "assistant", "content": ""})
        content = reply.message.get("content") or ""
        half = len(content) // 2
        for piece in (content[:half], content[half:]):
            if piece:
                await send({"content": piece})
        for index, call in enumerate(reply.message.get("tool_calls") or []):
            function = call["function"]
            opening = {"name": function["name"], "arguments": ""}
            await send({"tool_calls": [call | {"index": index, "function": opening}]})
            arguments = {"arguments": function["arguments"]}
            await send({"tool_calls": [{"index": index, "function": arguments}]})
        await send({}, reply.finish_reason)
        if include_usage:
            await send(None, usage=reply.usage)
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        return response

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self) -> OpenAIServer:
        loop = asyncio.new_event_loop()
        self._loop = loop
        self._thread = threading.Thread(target=loop.run_forever, name="openai-server", daemon=True)
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._serve(), loop).result(timeout=10)
        return self

    async def _serve(self) -> None:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._completions)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        await web.TCPSite(self._runner, self.host, 0).start()
        self.port = self._runner.addresses[-1][1]

    def stop(self) -> None:
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), loop).result(timeout=10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()
        self._loop = self._thread = self._runner = None

    def __enter__(self) -> OpenAIServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
