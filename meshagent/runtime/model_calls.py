"""Every model call of a run goes through one guarded chat model, in both modes.

``Guarded`` is a LangChain chat model around the real one. Before each call it stops a run that has
reached its budget, and writes what the run spent so far into the ledger, so a call that hangs,
fails or is killed still leaves the tokens spent before it. For an agent with ``max_usd_per_day``
it then reserves what the call may cost from the day's budget, in the ledger, where every run and
replica sees it (``reserve``; the reservation ends with the write of the call's spending). It makes
the call under the provider's semaphore and retries transient errors with exponential backoff and
jitter. Its callback, ``METER``, adds every response's usage to the run, also for calls that end
the run badly; a response the client received but could not read is read again without what
stopped it, or its prompt counted, estimated (``salvage``).

Why a chat model and not LangChain agent middleware: each middleware hook is wrapped in LangSmith's
``traceable``, which hops to a worker thread twice per call even with tracing off, and a
``before_model`` hook is a graph node of its own. Together they cost about as much as the whole
bare agent loop. Likewise the meter is the model's own callback and not the graph's: callbacks
given to the graph's invoke are called for every node and tool.

The run a call belongs to is found through the context variable ``active``, set for the length
of the run's work. asyncio tasks and LangGraph's nodes inherit it, so one guarded model and one
agent graph serve concurrent runs.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
from collections.abc import Awaitable, Callable, Sequence
from contextvars import ContextVar
from datetime import timedelta
from functools import partial
from typing import TYPE_CHECKING, Any

import langchain_core.exceptions as langchain_exceptions
from langchain_core.callbacks import BaseCallbackHandler, BaseCallbackManager
from langchain_core.language_models import BaseChatModel
from langchain_core.language_models.chat_models import agenerate_from_stream
from langchain_core.output_parsers.openai_tools import make_invalid_tool_call
from langchain_core.outputs import ChatResult
from langchain_core.runnables import RunnableBinding
from pydantic import ConfigDict, Field, ValidationError

from meshagent.exceptions import ConfigError, MeshAgentError, RunError
from meshagent.ledger import records
from meshagent.models import estimate_tokens
from meshagent.runtime.state import Stop

if TYPE_CHECKING:
    from langchain_core.messages import BaseMessage

    from meshagent.actions import ActionContext
    from meshagent.runtime.state import Host, RunState

__all__ = ["METER", "Guarded", "Stop", "active", "plain", "reserve", "text_of", "transient"]

log = logging.getLogger("meshagent.runtime.runner")

#: The run (and its action context) whose work is in progress in this context.
active: ContextVar[tuple[RunState, ActionContext]] = ContextVar("meshagent_active_run")

# langchain-core's classification of provider errors (absent from its early 1.x releases).
_ModelError: type[Exception] | None = getattr(langchain_exceptions, "ModelError", None)
_TRANSIENT_STATUS = frozenset({408, 409, 429, 500, 502, 503, 504, 529})
_TRANSIENT_NAMES = ("RateLimit", "Timeout", "APIConnection", "InternalServer", "Overloaded",
                    "ServiceUnavailable")  # fmt: skip


class Guarded(BaseChatModel):
    """A chat model that runs each call of ``inner`` under the run's budget, semaphore and retries.

    Tools are bound by ``inner`` (each provider formats them its own way) and the bound arguments
    handed to this model, which passes them back to ``inner`` on every call.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    inner: BaseChatModel
    runtime: Any = Field(exclude=True)

    @classmethod
    def around(cls, runtime: Host, chat: BaseChatModel) -> Guarded:
        """``chat`` guarded by ``runtime``; its callbacks, cache and rate limiter still apply."""
        own = chat.callbacks
        handlers = list(own.handlers) if isinstance(own, BaseCallbackManager) else list(own or [])
        return cls(
            inner=chat,
            runtime=runtime,
            callbacks=[*handlers, METER],
            cache=chat.cache,
            rate_limiter=chat.rate_limiter,
            tags=chat.tags,
            metadata=chat.metadata,
            output_version=chat.output_version,
        )

    @property
    def _llm_type(self) -> str:
        return self.inner._llm_type

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return dict(self.inner._identifying_params)

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> Any:
        return self.inner._get_ls_params(stop=stop, **kwargs)

    def bind_tools(self, tools: Sequence[Any], **kwargs: Any) -> RunnableBinding[Any, Any]:
        bound = self.inner.bind_tools(tools, **kwargs)
        if not isinstance(bound, RunnableBinding) or bound.bound is not self.inner:
            raise ConfigError(
                f"model {self.inner._llm_type!r} binds tools in a way MeshAgent cannot guard "
                "(its bind_tools did not return the model bound to arguments)"
            )
        return RunnableBinding(bound=self, kwargs=bound.kwargs, config=bound.config)

    def _generate(self, messages: list[BaseMessage], stop: Any = None, **kwargs: Any) -> ChatResult:
        raise NotImplementedError("MeshAgent calls models asynchronously only")

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: Any = None,
        **kwargs: Any,
    ) -> ChatResult:
        found = active.get(None)
        if found is None:
            raise RuntimeError("a guarded model was called outside a run")
        run = found[0]
        reason = run.over_budget(before_call=True)
        if reason is not None:
            raise Stop("over_budget", reason)
        await run.record()  # what the run spent so far, before it waits on the provider
        inner = self.inner
        if run.spec.budget.max_usd_per_day is not None:
            kwargs = await reserve(run, inner, messages, kwargs)
        run.framework.add_call(messages, kwargs.get("tools"))  # what of it the author did not write
        if inner._should_stream(async_api=True, run_manager=run_manager, **kwargs):
            # A client set to stream (ChatOpenAI(streaming=True)) asks its API for a stream,
            # which its _agenerate cannot read: its own ainvoke would call _astream instead.
            return await self.call(
                run,
                lambda: agenerate_from_stream(
                    inner._astream(messages, stop=stop, run_manager=run_manager, **kwargs)
                ),
            )
        try:
            return await self.call(
                run,
                lambda: inner._agenerate(messages, stop=stop, run_manager=run_manager, **kwargs),
            )
        except ValidationError as exc:  # a response the client could not read: see ``salvage``
            return salvage(inner, exc, run, prompt_tokens(messages, kwargs))

    async def call(self, run: RunState, attempt: Callable[[], Awaitable[ChatResult]]) -> ChatResult:
        """One model call under the provider's semaphore, retried when the error is transient."""
        runtime = self.runtime
        semaphore = runtime.semaphore(run.model)
        for tried in range(runtime.retries + 1):
            try:
                async with semaphore:
                    return await attempt()
            except Exception as exc:
                if tried >= runtime.retries or not transient(exc):
                    raise
                delay = min(8.0, runtime.retry_base_seconds * 2**tried)
                delay *= random.uniform(0.5, 1.0)
                log.warning(
                    "run %s: %s, retry %d/%d in %.2fs",
                    run.run_id,
                    plain(exc),
                    tried + 1,
                    runtime.retries,
                    delay,
                )
                await asyncio.sleep(delay)
        raise AssertionError("unreachable")


async def reserve(
    run: RunState, inner: BaseChatModel, messages: list[BaseMessage], kwargs: dict[str, Any]
) -> dict[str, Any]:
    """Reserve what the next call may cost from the agent's max_usd_per_day, or raise Stop.

    The reservation is an upper bound of the call's cost: its prompt (estimated tokens, with
    the tools' schemas, times 1.5, as the estimate is within ~30%) at the input price, and its
    output cap at the output price. The cap is the smallest of the client's own max_tokens,
    the agent's model_settings.max_output_tokens (DEFAULT_OUTPUT_CAP when unset) and the tokens
    left of max_tokens_per_run; a client that takes ``max_tokens`` is sent the cap, so the
    provider holds the call to it (for one that does not, a call that costs more than it
    reserved is logged). Returns the call's keyword arguments.
    """
    from meshagent.ledger import budget

    runtime, spec = run.runtime, run.spec
    limit = spec.budget.max_usd_per_day
    assert limit is not None
    prompt = prompt_tokens(messages, kwargs)
    cap = output_cap(run, inner, kwargs)
    if "max_tokens" in type(inner).model_fields:  # never above its own or the caller's
        kwargs = {**kwargs, "max_tokens": cap}
    estimate = records.Usage(input_tokens=prompt * 3 // 2 + 16, output_tokens=cap)
    cost = runtime.price(run.model, estimate)
    if cost is None:  # an unknown price is an unknown cost, never 0
        raise Stop("over_budget", unpriced(limit, run.model))
    amount = cost.total_usd
    if not amount:  # a free model (offline) holds nothing; a spent day was refused at the start
        run.reservation = None
        return kwargs
    now = runtime.now()
    if run.day is None:
        run.day = budget.day_of(now)
    expires = now + timedelta(seconds=runtime.time_limit(spec)[0] + RESERVATION_GRACE_SECONDS)
    taking = partial(budget.reserve, runtime.ledger, agent=spec.name, day=run.day,
                     run_id=run.run_id, amount=amount, limit=limit, now=now,
                     expires_at=expires)  # fmt: skip
    run.reserved = True  # set first: a run cancelled while reserving releases at its close
    if runtime.alone():
        taken, found = taking()
    else:
        taken, found = await asyncio.to_thread(taking)
    if taken is None:
        raise Stop("over_budget", found.refusal(limit) or f"max_usd_per_day of ${limit} reached")
    run.reservation = amount
    return kwargs


def salvage(inner: BaseChatModel, exc: ValidationError, run: RunState, prompt: int) -> ChatResult:
    """The result of a response that ``inner`` received but could not read, or RunError.

    langchain-openai builds the AIMessage of a whole (not streamed) response with each tool
    call's arguments as parsed, and pydantic refuses arguments that are JSON but no object
    (``[1, 2]``, ``"x"``): the response, its tokens included, is lost with the error. Its
    ``_create_chat_result(response, generation_info)`` is found in the error's traceback and
    given the response again without those calls, which are added to the message as
    ``invalid_tool_calls``: the agent loop records them as failed calls and tells the model,
    and the meter adds the response's usage. A response that cannot be read so still spent
    tokens: its prompt is added to the run, estimated, and the run fails saying why.
    """
    reading = _reading(exc, inner)
    if reading is not None:
        response, info = reading
        data = (
            response
            if isinstance(response, dict)  # as langchain-openai dumps it: no parsed output
            else response.model_dump(exclude=_UNPARSED, warnings=False)
        )
        dropped: list[list[dict[str, Any]]] = []
        choices = [dict(choice) for choice in data.get("choices") or []]
        for choice in choices:
            message = choice["message"] = dict(choice.get("message") or {})
            calls = message.get("tool_calls") or []
            dropped.append([call for call in calls if _not_an_object(call)])
            message["tool_calls"] = [call for call in calls if not _not_an_object(call)] or None
        read_again = inner._create_chat_result  # type: ignore[attr-defined]
        try:
            result = read_again({**data, "choices": choices}, info)
        except ValidationError:
            pass
        else:
            for generation, calls in zip(result.generations, dropped, strict=True):
                invalid = generation.message.invalid_tool_calls  # type: ignore[attr-defined]
                for call in calls:
                    arguments = call["function"]["arguments"]
                    kind = type(json.loads(arguments)).__name__
                    invalid.append(make_invalid_tool_call(call, f"a JSON {kind}, not an object"))
            return result
    run.spend(records.Usage(input_tokens=prompt, model_calls=1, estimated=True), None)
    raise RunError(f"the model's response could not be read: {plain(exc)}") from exc


_UNPARSED = {"choices": {"__all__": {"message": {"parsed"}}}}


def _reading(exc: BaseException, inner: BaseChatModel) -> tuple[Any, Any] | None:
    """The response and generation info that ``inner._create_chat_result`` was reading when
    ``exc`` was raised, from the frames of its traceback."""
    trace = exc.__traceback__
    while trace is not None:
        frame = trace.tb_frame
        if frame.f_code.co_name == "_create_chat_result" and frame.f_locals.get("self") is inner:
            response = frame.f_locals.get("response")
            if isinstance(response, dict) or hasattr(response, "model_dump"):
                return response, frame.f_locals.get("generation_info")
        trace = trace.tb_next
    return None


def _not_an_object(call: Any) -> bool:
    """Whether a raw tool call's arguments are JSON, but not an object (nor empty)."""
    arguments = (call.get("function") or {}).get("arguments") if isinstance(call, dict) else None
    if not isinstance(arguments, str) or not arguments:
        return False
    try:
        return not isinstance(json.loads(arguments), dict)
    except ValueError:
        return False  # not JSON: langchain-openai makes it an invalid tool call itself


#: The output cap of a call of an agent with max_usd_per_day and no model_settings.
#: max_output_tokens (the client or max_tokens_per_run may lower it); sent to the provider as
#: the call's max_tokens where it takes one.
DEFAULT_OUTPUT_CAP = 4096
#: How long after its run's time limit a reservation of a run that never released it (its
#: process died) still counts.
RESERVATION_GRACE_SECONDS = 60


def unpriced(limit: Any, model: str) -> str:
    """Why a daily budget cannot hold a model without a price: its calls' cost is unknown."""
    return (
        f"max_usd_per_day of ${limit} cannot be kept: the price of {model} is unknown "
        f'(add [prices."{model}"] to meshagent.toml)'
    )


def prompt_tokens(messages: list[BaseMessage], kwargs: dict[str, Any]) -> int:
    """Estimated input tokens of a call: its messages, their tool calls and the tools' schemas."""
    parts = [text_of(message.content) for message in messages]
    for message in messages:
        calls = getattr(message, "tool_calls", None)
        if calls:
            parts.append(json.dumps(calls, default=str))
    if kwargs.get("tools"):
        parts.append(json.dumps(kwargs["tools"], default=str))
    return estimate_tokens("\n".join(parts)) + 4 * len(messages)


def output_cap(run: RunState, inner: BaseChatModel, kwargs: dict[str, Any]) -> int:
    """The most output tokens the next call may produce (see ``reserve``)."""
    own = run.spec.model_settings.max_output_tokens
    caps = [kwargs.get("max_tokens"), getattr(inner, "max_tokens", None),
            own if own is not None else DEFAULT_OUTPUT_CAP]  # fmt: skip
    per_run = run.spec.budget.max_tokens_per_run
    if per_run is not None:
        caps.append(max(1, per_run - run.usage.input_tokens - run.usage.output_tokens))
    return min(cap for cap in caps if isinstance(cap, int) and cap > 0)


class Meter(BaseCallbackHandler):
    """Adds every model response's usage, priced, to the run it belongs to."""

    run_inline = True  # in the caller's context, where ``active`` is set
    raise_error = True

    def __init__(self) -> None:
        self.prompts: dict[Any, list[list[BaseMessage]]] = {}

    def on_chat_model_start(
        self, serialized: Any, messages: list[list[BaseMessage]], *, run_id: Any, **kw: Any
    ) -> None:
        if active.get(None) is not None:
            self.prompts[run_id] = messages  # estimated only if the provider reports no usage

    def on_llm_end(self, response: Any, *, run_id: Any, **kw: Any) -> None:
        prompt = self.prompts.pop(run_id, None)
        found = active.get(None)
        if found is None:
            return
        run = found[0]
        for generations in response.generations:
            for generation in generations:
                message = getattr(generation, "message", None)
                usage, answered = usage_of(message, prompt)
                run.spend(usage, answered)
                said = text_of(getattr(message, "content", ""))
                if said.strip():
                    run.said = said

    def on_llm_error(self, error: BaseException, *, run_id: Any, **kw: Any) -> None:
        self.prompts.pop(run_id, None)


#: The one meter, on every guarded model: it finds each call's run through ``active``.
METER = Meter()


def usage_of(
    message: Any, prompt: list[list[BaseMessage]] | None
) -> tuple[records.Usage, str | None]:
    """Usage of one response from its usage_metadata; estimated when the provider gave none."""
    meta = getattr(message, "usage_metadata", None) or {}
    response = getattr(message, "response_metadata", None) or {}
    answered = response.get("model_name") or response.get("model") or response.get("model_id")
    if not meta:
        sent = " ".join(text_of(m.content) for batch in prompt or [] for m in batch)
        output = estimate_tokens(text_of(getattr(message, "content", "")))
        return records.Usage(
            input_tokens=estimate_tokens(sent), output_tokens=output, model_calls=1, estimated=True
        ), answered
    inputs = meta.get("input_token_details") or {}
    outputs = meta.get("output_token_details") or {}
    usage = records.Usage(
        input_tokens=int(meta.get("input_tokens") or 0),  # cached tokens are inside, once
        cache_read_tokens=int(inputs.get("cache_read") or 0),
        cache_write_tokens=int(inputs.get("cache_creation") or 0),
        output_tokens=int(meta.get("output_tokens") or 0),
        reasoning_tokens=int(outputs.get("reasoning") or 0),
        model_calls=1,
        estimated=bool(response.get("token_usage_estimated", False)),
    )
    return usage, answered


def text_of(content: Any) -> str:
    """The text of a message's content (a string, or a list of text and other blocks)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            part if isinstance(part, str) else str(part.get("text", ""))
            for part in content
            if isinstance(part, str) or part.get("type") in (None, "text")
        )
    return str(content or "")


def transient(exc: BaseException) -> bool:
    """Whether a provider's error is worth retrying (rate limits, 5xx, timeouts, connections).

    LangChain's provider packages classify their errors (``ModelError.is_retryable``); for one
    that does not yet, the status code and the names of the error's classes decide (a
    subclass such as langchain-openai's ``OpenAIConnectionError`` keeps the SDK's
    ``APIConnectionError`` among its bases).
    """
    if _ModelError is not None and isinstance(exc, _ModelError):
        return bool(exc.is_retryable)
    if isinstance(exc, TimeoutError | ConnectionError):
        return True
    status = getattr(exc, "status_code", None)
    if status is None:
        status = getattr(getattr(exc, "response", None), "status_code", None)
    if status in _TRANSIENT_STATUS:
        return True
    names = [cls.__name__ for cls in type(exc).__mro__]
    return any(part in name for name in names for part in _TRANSIENT_NAMES)


def plain(exc: BaseException) -> str:
    """An exception in plain words: its type and first line, never a traceback."""
    if isinstance(exc, MeshAgentError):
        return str(exc)
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {first}"[:500] if first else type(exc).__name__
