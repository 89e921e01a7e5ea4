"""One task: an agent file becomes work done and one honest ledger entry.

In order: inputs are checked; the ledger entry is opened before anything is spent; the daily budget
is checked against what the agent spent today and what its calls in flight reserved (each model
call reserves its own share before it is made, ``model_calls.reserve``); the context actions run;
the context is hashed and, with ``skip_if_unchanged``, a run whose context equals the last ok run's
closes as ``skipped_unchanged`` with no model call; otherwise the model is called once with
instructions and compact context (fetch, think, deliver), or, when ``tools:`` are granted,
LangChain's ``create_agent`` runs the tool loop with every call checked against its grant; the
deliver actions post the answer; the entry is closed with its outcomes. What a model response spent
is written to the ledger before the run does anything more (a tool call, another model call, a
delivery), or with the close when nothing comes between, so a run that fails or is killed still
shows what it spent. The entry's writes are group-committed with those of the other runs of the
moment (``Ledger.aopen_run`` and friends): each returns once durable, and the event loop never
waits on the database.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from meshagent.actions import (
    ActionContext,
    Outcome,
    Registry,
    closest,
    default_registry,
)
from meshagent.clients import Clients
from meshagent.config import Config, load_config
from meshagent.exceptions import ConfigError, ConnectorError, GrantDenied, RunError
from meshagent.ledger import records
from meshagent.model_calls import Guarded, active, plain, text_of, unpriced
from meshagent.models import estimate_tokens
from meshagent.prompt import first_messages
from meshagent.providers import BUILTIN_MODELS, api_key_env, client_options
from meshagent.run_state import Refusal, RunState, Stop, compact

if TYPE_CHECKING:
    from langchain_core.language_models import BaseChatModel

    from meshagent.ledger.store import Ledger
    from meshagent.spec import AgentSpec

__all__ = ["Refusal", "RunResult", "Runtime", "entry_facts", "run_agent"]

log = logging.getLogger(__name__)

TRIGGERS = ("schedule", "slash", "cli", "api")
_PLACEHOLDER = re.compile(r"\{\{\s*([a-z_][a-z0-9_]*(?:\.[a-z_][a-z0-9_]*)?)\s*\}\}")
_MAX_AGENTS = 256  # agent graphs kept per runtime


@dataclass
class RunResult:
    """What one task did: its answer, what it delivered, what it spent, and its ledger entry."""

    run_id: str
    agent: str
    status: str
    model: str
    answer: str | None = None
    outcomes: list[Outcome] = field(default_factory=list)
    usage: records.Usage = field(default_factory=records.Usage)
    cost_usd: Decimal | None = Decimal(0)
    #: Prompt tokens the framework wrote (estimated), and their parts in words (README:
    #: "framework share"): headings, tool schemas, refusal notes, over every model call.
    framework_prompt_tokens: int = 0
    framework_share: str = ""
    refusals: list[Refusal] = field(default_factory=list)
    error: str | None = None
    dry_run: bool = False
    input_hash: str | None = None
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0
    entry: dict[str, Any] | None = None  # the ledger entry, when the caller asked for it
    staged: list[Any] = field(default_factory=list)  # writes waiting for approval (Approval)

    @property
    def ok(self) -> bool:
        return self.status in ("ok", "skipped_unchanged")


def _is_quiet(answer: str, quiet: str) -> bool:
    """Whether `answer` is the agent's declared "nothing to report": the sentinel alone,
    whatever its case, spacing, quotes, markup or final full stop."""
    strip = " \t\r\n.!`*_\"'"
    return answer.strip(strip).casefold() == quiet.strip(strip).casefold()


class Runtime:
    """Runs agents: the registry, the ledger, prices and per-provider concurrency, shared."""

    def __init__(
        self,
        config: Config | None = None,
        *,
        ledger: Ledger | None = None,
        registry: Registry | None = None,
        env: Mapping[str, str] | None = None,
        chat_model: BaseChatModel | None = None,
        retry_base_seconds: float = 0.5,
        retries: int = 3,
        clock: Any = None,
    ) -> None:
        import os

        from meshagent.pricing import Pricer

        self.config = config or load_config()
        if ledger is None:
            from meshagent.ledger.store import Ledger

            ledger = Ledger.open(self.config.ledger_url)
        self.ledger = ledger
        if registry is None:  # the installed connectors and the project's locked MCP tools
            from meshagent.mcp.tools import project_registry

            registry = project_registry(self.config, default_registry())
        self.registry = registry
        self.env = env if env is not None else os.environ
        self.chat_model = chat_model
        self.pricer = Pricer(self.config.prices)
        self.connector_settings = self.config.connector_settings()
        self.now = clock or (lambda: datetime.now(UTC))
        self.retry_base_seconds = retry_base_seconds
        self.retries = retries
        self._semaphores: dict[str, asyncio.Semaphore] = {}
        self._models: dict[str, Guarded] = {}
        self._given: Guarded | None = None  # chat_model, guarded
        self._agents: dict[tuple[str, str, str, int], tuple[BaseChatModel, Any]] = {}
        self._in_flight = 0  # runs started and not finished
        self.clients = Clients()  # the connectors' clients, kept between runs (``aclose``)

    # -- public -------------------------------------------------------------------------------

    async def run(
        self,
        spec: AgentSpec,
        *,
        trigger: str = "api",
        triggered_by: str | None = None,
        inputs: Mapping[str, Any] | None = None,
        dry_run: bool = False,
        model: str | None = None,
        scheduled_for: datetime | None = None,
        idempotency_key: str | None = None,
    ) -> RunResult:
        """Run one task of ``spec`` now and return what it did; the ledger has its entry."""
        if trigger not in TRIGGERS:
            raise RunError(f"trigger must be one of {', '.join(TRIGGERS)}, not {trigger!r}")
        values = self.check_inputs(spec, inputs or {})
        model_name = model or spec.model or self.config.default_model
        chat = self._chat_model(model_name)
        self.check_credentials(spec, dry_run=dry_run)
        self._in_flight += 1
        try:
            started = time.perf_counter()
            run_id = await self._open(
                spec.name,
                **entry_facts(spec, model_name),
                trigger_kind=trigger,
                triggered_by=triggered_by,
                scheduled_for=scheduled_for,
                started_at=self.now(),
                idempotency_key=idempotency_key,
            )
            run = RunState(self, spec, run_id, model_name)
            context = ActionContext(
                dry_run=dry_run,
                env=self.env,
                services={
                    "ledger": self.ledger,
                    "config": self.config,
                    "now": self.now,
                    "owner": spec.owner,
                    "triggered_by": triggered_by,
                    "clients": self.clients,
                    # (kind, action, detail): an event of this run, for calls the agent file
                    # fixed that a connector records itself (MCP tools)
                    "record_event": run.tool_event,
                },
                connector_settings=self.connector_settings,
            )
            status, error, input_hash = "ok", None, None
            limit, limit_is_budget = self.time_limit(spec)
            running = active.set((run, context))  # how the model's guard and tools find the run
            try:
                async with asyncio.timeout(limit):
                    input_hash = await self._work(run, chat, context, values)
            except Stop as stop:
                status, error = stop.status, stop.reason
            except TimeoutError:
                status = "over_budget" if limit_is_budget else "failed"
                error = f"wall-clock limit of {limit:g}s reached"
            except asyncio.CancelledError:
                self.ledger.close_run(
                    run_id,
                    **self._closing(run, "interrupted", "cancelled while running", input_hash),
                )
                raise
            except GrantDenied as exc:
                status, error = "denied", str(exc)
            except (ConnectorError, RunError, ConfigError) as exc:
                status, error = "failed", str(exc)
            except Exception as exc:  # a provider's error, in plain words, never a traceback
                log.warning("run %s of %s failed: %s", run_id, spec.name, plain(exc))
                status, error = "failed", plain(exc)
            finally:
                active.reset(running)
            if run.stopped is not None and status == "ok":
                status, error = run.stopped.status, run.stopped.reason
            # Shielded: a run cancelled now is still closed with what it did.
            closing = self._closing(run, status, error, input_hash)
            if self.alone():
                self.ledger.close_run(run_id, **closing)
            else:
                await asyncio.shield(self.ledger.aclose_run(run_id, **closing))
            result = RunResult(
                run_id=run_id,
                agent=spec.name,
                status=status,
                model=model_name,
                answer=run.answer,
                outcomes=run.outcomes,
                usage=run.usage,
                cost_usd=run.cost if run.cost_known else None,
                framework_prompt_tokens=run.framework.total,
                framework_share=run.framework.describe() if run.framework.calls else "",
                refusals=run.refusals,
                error=error,
                dry_run=dry_run,
                input_hash=input_hash,
                seconds=time.perf_counter() - started,
            )
            if not run.cost_known:
                from meshagent.pricing import unknown_cost_message

                result.notes.append(unknown_cost_message(model_name))
            if spec.approve is not None:  # its staged writes, asked for in Slack
                from meshagent.approval_asks import ask_staged

                await ask_staged(self, run, result)
            return result
        finally:
            self._in_flight -= 1

    def check_inputs(self, spec: AgentSpec, given: Mapping[str, Any]) -> dict[str, Any]:
        """The run's input values: given ones converted to their declared types, then defaults."""
        where = f"agent {spec.name}"
        values: dict[str, Any] = {}
        for name, raw in given.items():
            declared = spec.inputs.get(name)
            if declared is None:
                hint = closest(name, spec.inputs)
                suggestion = f"; did you mean {hint!r}?" if hint else ""
                known = ", ".join(spec.inputs) or "none"
                raise RunError(f"{where}: unknown input {name!r}{suggestion} (inputs: {known})")
            values[name] = _convert(where, name, declared.type, raw)
        for name, declared in spec.inputs.items():
            if name in values:
                continue
            if declared.required and declared.default is None:
                raise RunError(f"{where}: input {name!r} is required ({declared.description})")
            values[name] = declared.default
        return values

    def check_credentials(self, spec: AgentSpec, *, dry_run: bool = False) -> None:
        """Raise ConfigError naming each variable the agent's actions need and the runtime's
        environment lacks: found before the run opens its entry and spends anything, not when
        the answer that cost tokens cannot be delivered."""
        context = ActionContext(
            dry_run=dry_run, env=self.env, connector_settings=self.connector_settings
        )
        needs: dict[str, list[str]] = {}
        for use in (*spec.context, *spec.tools, *spec.deliver):
            action = self.registry.get(use.action)
            missing = self.registry.missing(action, context)
            if missing is not None and action.name not in needs.setdefault(missing, []):
                needs[missing].append(action.name)
        if needs:
            said = "; ".join(f"{', '.join(names)}: {what}" for what, names in needs.items())
            raise ConfigError(f"agent {spec.name} cannot run: {said}")

    def price(self, model: str, usage: records.Usage) -> records.Cost | None:
        from meshagent.pricing import Usage as PricedUsage

        try:
            counts = PricedUsage(
                input_tokens=usage.input_tokens,
                cache_read_tokens=usage.cache_read_tokens,
                cache_write_tokens=usage.cache_write_tokens,
                output_tokens=usage.output_tokens,
                reasoning_tokens=usage.reasoning_tokens,
            )
        except ValueError as exc:  # counts that do not add up: record them, price unknown
            log.warning("model %s reported inconsistent usage (%s): cost unknown", model, exc)
            return None
        priced = self.pricer.price(model, counts)
        if priced is None:
            return None
        return records.Cost(
            priced.input_usd, priced.cache_usd, priced.output_usd, priced.source, priced.version
        )

    # -- the steps ------------------------------------------------------------------------------

    async def _work(
        self, run: RunState, chat: BaseChatModel, context: ActionContext, values: dict[str, Any]
    ) -> str:
        spec = run.spec
        await self._check_daily_budget(run)
        gathered = await self._gather(spec, context, values)
        input_hash = _hash(spec.version, gathered, values)
        if spec.skip_if_unchanged:
            last = await asyncio.to_thread(self.ledger.last_ok_input_hash, spec.name)
            if last == input_hash:
                raise Stop("skipped_unchanged", "context unchanged since the last ok run")
        if spec.tools:
            answer = await self._agent_loop(run, chat, gathered, values)
        else:
            answer = await self._think(run, chat, gathered, values)
        run.answer = answer
        reason = run.over_budget(before_call=False)
        if reason and run.stopped is None:  # the last response went over: nothing delivered
            run.stopped = Stop("over_budget", reason)
        if run.stopped is not None:
            return input_hash  # over budget: keep the answer, deliver nothing
        if not answer or not answer.strip():
            raise RunError("the model returned no answer: nothing to deliver")
        if spec.quiet_answer is not None and _is_quiet(answer, spec.quiet_answer):
            run.outcomes.append(Outcome(kind=records.QUIET, reference=spec.quiet_answer))
            return input_hash  # nothing to report: a result, delivered nowhere
        if spec.deliver:
            await run.record()
        from meshagent.approvals import needs_approval, stage

        for use in spec.deliver:
            action = self.registry.get(use.action)
            known = values | {"answer": answer}
            if use.for_each is None:
                batches = [known]
            else:  # once per item of a context result, e.g. each issue of jira.search
                batches = [known | {"item": item} for item in _items(gathered[use.for_each])]
            for known_here in batches:
                params = _substitute(use.params, known_here, spec, use.action, self.now())
                if params is None:
                    continue  # an item without the value a parameter needs (no assignee)
                if action.answer_field and action.answer_field not in use.params:
                    params[action.answer_field] = answer
                args = action.parse(params)
                if use.grant is not None:  # the agent file's scope of a filled-in call
                    try:
                        action.check(args, action.grant.model_validate(use.grant))
                    except GrantDenied as exc:
                        run.tool_event("tool_refused", action.name, exc.reason)
                        raise
                if needs_approval(spec, action, dry_run=context.dry_run):
                    await stage(run, action, args, source="deliver")
                    continue  # staged with its exact payload; executed once approved
                result = await action(context, args)
                run.outcomes.extend(result.outcomes)
        return input_hash

    async def _check_daily_budget(self, run: RunState) -> None:
        """Refuse a run whose agent's day is spent or held by calls in flight, before its
        context is read; each model call then reserves its share (`model_calls.reserve`)."""
        limit = run.spec.budget.max_usd_per_day
        if limit is None:
            return
        from meshagent.ledger import budget

        if self.price(run.model, records.Usage(input_tokens=1, output_tokens=1)) is None:
            raise Stop("over_budget", unpriced(limit, run.model))
        now = self.now()
        run.day = budget.day_of(now)
        if self.alone():  # as its writes: nobody else waits on the loop meanwhile
            found = budget.standing(self.ledger, run.spec.name, run.day, now)
        else:
            found = await asyncio.to_thread(
                budget.standing, self.ledger, run.spec.name, run.day, now
            )
        refusal = found.refusal(limit)
        if refusal is not None:
            raise Stop("over_budget", refusal)

    async def _gather(
        self, spec: AgentSpec, context: ActionContext, values: dict[str, Any]
    ) -> dict[str, Any]:
        gathered: dict[str, Any] = {}
        for use in spec.context:
            action = self.registry.get(use.action)
            params = _substitute(use.params, values, spec, use.action, self.now())
            result = await action(context, action.parse(params))
            key = use.action
            n = 2
            while key in gathered:
                key, n = f"{use.action} #{n}", n + 1
            gathered[key] = compact(result.data)
        return gathered

    async def _think(
        self, run: RunState, chat: Guarded, gathered: dict[str, Any], values: dict[str, Any]
    ) -> str:
        messages, run.framework.message = first_messages(run.spec.instructions, gathered, values)
        prompt = text_of(messages[-1].content)  # the context (or the instructions, when none)
        budget = run.spec.budget.max_tokens_per_run
        if budget is not None and estimate_tokens(prompt) >= budget:
            raise Stop(
                "over_budget",
                f"the prompt alone (~{estimate_tokens(prompt):,} tokens) exceeds "
                f"max_tokens_per_run of {budget:,}",
            )
        reply = await chat.ainvoke(messages)
        return text_of(reply.content)

    async def _agent_loop(
        self,
        run: RunState,
        chat: Guarded,
        gathered: dict[str, Any],
        values: dict[str, Any],
    ) -> str:
        messages, run.framework.message = first_messages(run.spec.instructions, gathered, values)
        agent = self._agent(run.spec, chat, run.model)
        try:
            state = await agent.ainvoke({"messages": messages}, config={"recursion_limit": 100})
        except Stop as stop:  # over budget before a model call: keep what the model said last
            run.stopped = stop
            return run.said or ""
        return text_of(state["messages"][-1].content)

    def _agent(self, spec: AgentSpec, chat: Guarded, model: str) -> Any:
        """The agent graph of ``spec`` on ``chat``, built once per spec version and model."""
        from meshagent.agent_loop import build_agent

        key = (spec.name, spec.version, model, id(chat))
        found = self._agents.get(key)
        if found is None or found[0] is not chat:
            if len(self._agents) >= _MAX_AGENTS:  # agent files reloaded many times: start over
                self._agents.clear()
            found = self._agents[key] = (chat, build_agent(self, spec, chat))
        return found[1]

    async def aclose(self) -> None:
        """Close the clients the connectors kept (the ledger is its opener's to close)."""
        await self.clients.aclose()

    def alone(self) -> bool:
        """Whether one run is in flight: its writes then go straight to the database.

        The event loop waits for them, but there is nobody else to wait, and handing a write
        to the group-commit thread and back costs two thread switches. With other runs in flight,
        writes are group-committed and the loop never waits on the database.
        """
        return self._in_flight <= 1

    async def _open(self, agent: str, **options: Any) -> str:
        """Open the run's entry; durable on return, even when the run is cancelled meanwhile."""
        if self.alone():
            return self.ledger.open_run(agent, **options)
        opening = asyncio.ensure_future(self.ledger.aopen_run(agent, **options))
        try:
            return await asyncio.shield(opening)
        except asyncio.CancelledError:
            opening.add_done_callback(self._close_unstarted)
            raise

    def _close_unstarted(self, opening: asyncio.Future[str]) -> None:
        if not opening.cancelled() and opening.exception() is None:
            self.ledger.close_run(
                opening.result(), "interrupted", error="cancelled before it started"
            )

    def _closing(
        self, run: RunState, status: str, error: str | None, input_hash: str | None
    ) -> dict[str, Any]:
        """The arguments of close_run: the status, the spending not yet written, what it made."""
        usage, cost, answered = run.take_unrecorded()
        finished, events = self.now(), list(run.events)
        if run.framework.calls:  # what of its prompts the framework wrote, call by call
            share = run.framework.as_detail()
            events.append(records.Event(records.PROMPT_SHARE, "framework share", share, finished))
        return {
            "status": status,
            "usage": usage + records.Usage(tool_calls=run.tool_calls),
            "cost": cost,
            "model_answered": answered,
            "error": error[:2000] if error else None,
            "outcomes": [o.record() for o in run.outcomes],
            "input_hash": input_hash,
            "finished_at": finished,
            "events": events,
            "release_reservations": run.reserved,
        }

    # -- helpers ------------------------------------------------------------------------------

    def time_limit(self, spec: AgentSpec) -> tuple[float, bool]:
        own = spec.budget.max_seconds_per_run
        if own is not None and own <= self.config.timeout_seconds:
            return own, True
        return self.config.timeout_seconds, False

    def semaphore(self, model: str) -> asyncio.Semaphore:
        """The semaphore capping concurrent calls to ``model``'s provider."""
        provider = model.partition(":")[0]
        if provider not in self._semaphores:
            self._semaphores[provider] = asyncio.Semaphore(self.config.max_concurrent_model_calls)
        return self._semaphores[provider]

    def _chat_model(self, model: str) -> Guarded:
        """The chat model for ``model`` (or the one given), guarded by this runtime."""
        given = self.chat_model
        if given is not None:
            if self._given is None or self._given.inner is not given:
                self._given = Guarded.around(self, given)
            return self._given
        if model not in self._models:
            from meshagent.models import resolve_model

            provider = model.partition(":")[0]
            if model not in BUILTIN_MODELS:
                missing = [name for name in api_key_env(provider) if not self.env.get(name)]
                if missing and len(missing) == len(api_key_env(provider)):
                    raise ConfigError(
                        f"model {model!r} needs an API key: set {' or '.join(missing)}"
                    )
            options = client_options(provider, self.env)
            self._models[model] = Guarded.around(self, resolve_model(model, **options))
        return self._models[model]


# -- small pure helpers ----------------------------------------------------------------------


def _hash(version: str, gathered: dict[str, Any], values: dict[str, Any]) -> str:
    text = json.dumps([version, gathered, values], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


class _Empty(Exception):
    """A for_each item lacks the value a placeholder names."""


def _items(data: Any) -> list[Any]:
    """The items of a context result: its first list (issues, messages), or the list itself."""
    if isinstance(data, list):
        return data
    if isinstance(data, dict):
        for value in data.values():
            if isinstance(value, list):
                return value
    return []


def _substitute(
    params: Any, values: dict[str, Any], spec: AgentSpec, action: str, now: datetime
) -> Any:
    """``{{name}}`` in string parameters replaced by input values (and today, now, answer,
    ``item.field`` under for_each); None when an item lacks a value it names."""
    builtins = {"today": now.date().isoformat(), "now": now.isoformat(timespec="seconds")}
    known = builtins | values

    def lookup(name: str) -> Any:
        head, _, field_name = name.partition(".")
        if head not in known or (field_name and not isinstance(known[head], dict)):
            names = ", ".join(sorted(k for k in known if k != "item"))
            hint = " (item.<field> needs for_each)" if head == "item" else ""
            raise RunError(
                f"agent {spec.name}, {action}: unknown placeholder {{{{{name}}}}}{hint} "
                f"(known: {names})"
            )
        found = known[head].get(field_name) if field_name else known[head]
        if field_name and found in (None, ""):
            raise _Empty(name)
        return found

    def one(value: Any) -> Any:
        if isinstance(value, str):

            def replace(match: re.Match[str]) -> str:
                found = lookup(match.group(1))
                return "" if found is None else str(found)

            return _PLACEHOLDER.sub(replace, value)
        if isinstance(value, dict):
            return {k: one(v) for k, v in value.items()}
        if isinstance(value, list):
            return [one(v) for v in value]
        return value

    try:
        return one(dict(params))
    except _Empty:
        return None


def _convert(where: str, name: str, kind: str, raw: Any) -> Any:
    try:
        if kind == "string":
            return str(raw)
        if kind == "integer":
            return int(raw)
        if kind == "number":
            return float(raw)
        if kind == "boolean":
            if isinstance(raw, bool):
                return raw
            text = str(raw).strip().lower()
            if text in ("true", "yes", "1", "on"):
                return True
            if text in ("false", "no", "0", "off"):
                return False
            raise ValueError(raw)
        if kind == "list":
            if isinstance(raw, list):
                return [str(v) for v in raw]
            return [part.strip() for part in str(raw).split(",") if part.strip()]
    except (TypeError, ValueError):
        pass
    raise RunError(f"{where}: input {name!r} must be {_A[kind]} {kind}, got {raw!r}")


_A = {"string": "a", "integer": "an", "number": "a", "boolean": "a", "list": "a"}


def entry_facts(spec: AgentSpec, model: str) -> dict[str, Any]:
    """The facts of a ledger entry that come from the agent file and the model it runs on."""
    return {
        "version": spec.version,
        "owner": spec.owner,
        "team": spec.team,
        "value_tag": spec.value.tag,
        "minutes_saved": spec.value.minutes_saved,
        "provider": model.partition(":")[0],
        "model_requested": model,
    }


async def run_agent(
    spec: AgentSpec,
    *,
    trigger: str = "api",
    triggered_by: str | None = None,
    inputs: Mapping[str, Any] | None = None,
    dry_run: bool = False,
    model: str | None = None,
    config: Config | None = None,
    ledger: Ledger | None = None,
    chat_model: BaseChatModel | None = None,
    env: Mapping[str, str] | None = None,
) -> RunResult:
    """Run one task of ``spec`` now (see :class:`Runtime` to run many with shared state)."""
    runtime = Runtime(config, ledger=ledger, chat_model=chat_model, env=env)
    try:
        return await runtime.run(
            spec,
            trigger=trigger,
            triggered_by=triggered_by,
            inputs=inputs,
            dry_run=dry_run,
            model=model,
        )
    finally:
        await runtime.aclose()
        if ledger is None:
            runtime.ledger.close()
