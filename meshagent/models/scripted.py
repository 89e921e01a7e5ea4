"""The scripted model: a test double that replays queued answers, tool calls, usage and errors."""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from functools import partial
from typing import Any

from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.messages.ai import InputTokenDetails, OutputTokenDetails, UsageMetadata
from langchain_core.messages.tool import tool_call
from langchain_core.outputs import ChatGeneration, ChatResult
from pydantic import Field, PrivateAttr, field_validator

from meshagent.exceptions import RunError
from meshagent.models.base import (
    LocalChatModel,
    input_estimate,
    output_estimate,
    plural,
    token_usage,
)

__all__ = ["ScriptedChatModel"]

_RESPONSE_KEYS = {"content", "tool_calls", "usage"}
_USAGE_KEYS = {"input_tokens", "output_tokens", "cache_read", "cache_creation", "reasoning"}


def _check_usage(usage: Any) -> None:
    """Refuse a usage dict with unknown keys, bad numbers or cache beyond the input it is in."""
    if not isinstance(usage, Mapping):
        raise ValueError(f"usage must be a dict with keys {sorted(_USAGE_KEYS)}")
    unknown = set(usage) - _USAGE_KEYS
    if unknown:
        raise ValueError(f"unknown usage keys {sorted(unknown)}; known: {sorted(_USAGE_KEYS)}")
    for key, value in usage.items():
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise ValueError(f"usage {key} must be a non-negative int, got {value!r}")
    cached = usage.get("cache_read", 0) + usage.get("cache_creation", 0)
    if "input_tokens" in usage and usage["input_tokens"] < cached:
        raise ValueError(
            "usage input_tokens includes cache_read and cache_creation, "
            f"so it cannot be below their sum {cached}"
        )
    if "output_tokens" in usage and usage["output_tokens"] < usage.get("reasoning", 0):
        raise ValueError("usage output_tokens includes reasoning, so it cannot be below it")


def _check_response(index: int, item: Any) -> None:
    if isinstance(item, str | AIMessage | BaseException):
        return
    if not isinstance(item, dict):
        raise ValueError(
            f"response {index}: expected str, AIMessage, dict or exception, got {type(item)}"
        )
    unknown = set(item) - _RESPONSE_KEYS
    if unknown:
        raise ValueError(f"response {index}: unknown keys {sorted(unknown)}")
    for call in item.get("tool_calls") or []:
        if not isinstance(call, dict) or not isinstance(call.get("name"), str):
            raise ValueError(f"response {index}: each tool call needs a 'name'")
    if "usage" in item:
        _check_usage(item["usage"])


def _usage_from(
    usage: Mapping[str, int], input_estimate: int, output_estimate: int
) -> UsageMetadata:
    """UsageMetadata from a scripted usage dict; input_tokens includes cache reads and writes."""
    cached = usage.get("cache_read", 0) + usage.get("cache_creation", 0)
    input_tokens = usage.get("input_tokens", max(input_estimate, cached))
    output_tokens = usage.get("output_tokens", max(output_estimate, usage.get("reasoning", 0)))
    metadata = token_usage(input_tokens, output_tokens)
    input_details = InputTokenDetails()
    for key in ("cache_read", "cache_creation"):
        if key in usage:
            input_details[key] = usage[key]  # type: ignore[literal-required]
    if input_details:
        metadata["input_token_details"] = input_details
    if "reasoning" in usage:
        metadata["output_token_details"] = OutputTokenDetails(reasoning=usage["reasoning"])
    return metadata


class ScriptedChatModel(LocalChatModel):
    """A test model that replays queued responses in order, one per call.

    Each response is a str (the answer), an AIMessage (used as is), a dict with ``content``,
    ``tool_calls`` (``name``, ``args``, ``id``) and ``usage`` (``input_tokens`` including
    ``cache_read`` and ``cache_creation``, ``output_tokens`` including ``reasoning``), or an
    exception to raise. Usage not given is estimated. Calls are recorded in ``calls``.
    """

    __test__ = False  # a test double, not a test class

    responses: list[Any] = Field(default_factory=list)
    latency: float = Field(default=0.0, ge=0.0)
    """Seconds each call takes."""
    model_name: str = "scripted"

    _lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)
    _next: int = PrivateAttr(default=0)
    _calls: list[list[BaseMessage]] = PrivateAttr(default_factory=list)
    _bound_tools: list[str] = PrivateAttr(default_factory=list)

    @field_validator("responses")
    @classmethod
    def _check_responses(cls, value: list[Any]) -> list[Any]:
        for index, item in enumerate(value):
            _check_response(index, item)
        return value

    @property
    def _llm_type(self) -> str:
        return "meshagent-scripted"

    @property
    def calls(self) -> list[list[BaseMessage]]:
        """The messages of every call made so far, in order."""
        with self._lock:
            return [list(messages) for messages in self._calls]

    @property
    def bound_tools(self) -> list[str]:
        """Names of the tools last bound with ``bind_tools``."""
        return list(self._bound_tools)

    @property
    def remaining(self) -> int:
        """How many queued responses are left."""
        with self._lock:
            return len(self.responses) - self._next

    def _record_tools(self, names: list[str]) -> None:
        self._bound_tools = names

    def _take(self, messages: list[BaseMessage]) -> tuple[int, Any]:
        """Record the call and pop the next response, atomically across threads and tasks."""
        with self._lock:
            self._calls.append(list(messages))
            index = self._next
            if index >= len(self.responses):
                raise RunError(
                    f"ScriptedChatModel {self.model_name!r} has no response left for call "
                    f"{len(self._calls)}: all {plural(len(self.responses), 'queued response')} "
                    "were used"
                )
            self._next += 1
            return index, self.responses[index]

    def _answer(self, index: int, item: Any, messages: list[BaseMessage]) -> ChatResult:
        if isinstance(item, BaseException):
            raise item
        estimated = False
        if isinstance(item, AIMessage):
            message = item.model_copy(deep=True)
        else:
            spec = {"content": item} if isinstance(item, str) else item
            calls = [
                tool_call(
                    name=call["name"],
                    args=dict(call.get("args") or {}),
                    id=call.get("id") or f"scripted-{index}-{number}",
                )
                for number, call in enumerate(spec.get("tool_calls") or [])
            ]
            message = AIMessage(content=spec.get("content") or "", tool_calls=calls)
            if "usage" in spec:
                message.usage_metadata = _usage_from(
                    spec["usage"], input_estimate(messages), output_estimate(message)
                )
                estimated = not {"input_tokens", "output_tokens"} <= set(spec["usage"])
        if message.usage_metadata is None:
            message.usage_metadata = token_usage(input_estimate(messages), output_estimate(message))
            estimated = True
        metadata = {"model_name": self.model_name, **message.response_metadata}
        if estimated:
            metadata["token_usage_estimated"] = True
        message.response_metadata = metadata
        return ChatResult(generations=[ChatGeneration(message=message)])

    def _respond(self, messages: list[BaseMessage]) -> tuple[float, Callable[[], ChatResult]]:
        index, item = self._take(messages)
        return self.latency, partial(self._answer, index, item, messages)
