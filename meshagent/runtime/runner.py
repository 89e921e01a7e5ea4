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
import inspect
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from weakref import WeakKeyDictionary

from meshagent.actions import (
    ActionContext,
    Outcome,
    Registry,
    closest,
    default_registry,
)
from meshagent.config import Config, load_config
from meshagent.exceptions import ConfigError, ConnectorError, GrantDenied, RunError
from meshagent.ledger import records
from meshagent.models import estimate_tokens
from meshagent.models.providers import BUILTIN_MODELS, api_key_env, client_options
from meshagent.runtime.clients import Clients
from meshagent.runtime.model_calls import Guarded, active, plain, text_of, unpriced
from meshagent.runtime.prompt import first_messages
from meshagent.runtime.state import Refusal, RunResult, RunState, Stop, compact
from meshagent.runtime.values import (
    context_hash,
    convert_input,
    entry_facts,
    is_quiet,
    items_of,
    substitute,
)

if TYPE_CHECKING:
    from langchain_core.language_models import BaseChatModel

    from meshagent.agentfile.spec import AgentSpec
    from meshagent.ledger.store import Ledger

__all__ = ["Refusal", "RunResult", "Runtime", "entry_facts", "kept", "run_agent"]

log = logging.getLogger(__name__)

TRIGGERS = ("schedule", "slash", "cli", "api")
_MAX_AGENTS = 256  # agent graphs kept per runtime


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

        from meshagent.models.pricing import Pricer

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
        # per event loop: an asyncio semaphore belongs to the loop it first waited on
        self._semaphores: WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, Any]] = (
            WeakKeyDictionary()
        )
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
                    **run.closing("interrupted", "cancelled while running", input_hash),
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
            closing = run.closing(status, error, input_hash)
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
                from meshagent.models.pricing import unknown_cost_message

                result.notes.append(unknown_cost_message(model_name))
            if spec.approve is not None:  # its staged writes, asked for in Slack
                from meshagent.approvals.asks import ask_staged

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
            values[name] = convert_input(where, name, declared.type, raw)
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
        from meshagent.models.pricing import Usage as PricedUsage

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
        input_hash = context_hash(spec.version, gathered, values)
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
        if spec.quiet_answer is not None and is_quiet(answer, spec.quiet_answer):
            run.outcomes.append(Outcome(kind=records.QUIET, reference=spec.quiet_answer))
            return input_hash  # nothing to report: a result, delivered nowhere
        if spec.deliver:
            await run.record()
        from meshagent.approvals.staged import needs_approval, stage

        for use in spec.deliver:
            action = self.registry.get(use.action)
            known = values | {"answer": answer}
            if use.for_each is None:
                batches = [known]
            else:  # once per item of a context result, e.g. each issue of jira.search
                batches = [known | {"item": item} for item in items_of(gathered[use.for_each])]
            for known_here in batches:
                params = substitute(use.params, known_here, spec, use.action, self.now())
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
            params = substitute(use.params, values, spec, use.action, self.now())
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
        from meshagent.runtime.agent_loop import build_agent

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

    # -- helpers ------------------------------------------------------------------------------

    def time_limit(self, spec: AgentSpec) -> tuple[float, bool]:
        own = spec.budget.max_seconds_per_run
        if own is not None and own <= self.config.timeout_seconds:
            return own, True
        return self.config.timeout_seconds, False

    def semaphore(self, model: str) -> asyncio.Semaphore:
        """The semaphore capping concurrent calls to ``model``'s provider (on this event loop:
        a runtime serving several loops in turn caps each)."""
        provider = model.partition(":")[0]
        mine = self._semaphores.get(asyncio.get_running_loop())
        if mine is None:
            mine = self._semaphores[asyncio.get_running_loop()] = {}
        if provider not in mine:
            mine[provider] = asyncio.Semaphore(self.config.max_concurrent_model_calls)
        return mine[provider]

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


async def run_agent(
    spec: AgentSpec,
    *,
    config: Config | None = None,
    ledger: Ledger | None = None,
    chat_model: BaseChatModel | None = None,
    env: Mapping[str, str] | None = None,
    **options: Any,
) -> RunResult:
    """Run one task of ``spec`` now (see :class:`Runtime` to run many with shared state).

    `options` are `Runtime.run`'s (``RUN_OPTIONS``): trigger ("api"), triggered_by, inputs, dry_run,
    model, scheduled_for and idempotency_key.
    Calls with the same settings share one runtime and one ledger per process (``kept``), so a
    call pays for the task and not for opening the ledger and warming models and clients.
    """
    unknown = options.keys() - RUN_OPTIONS
    if unknown:  # before a runtime is made or a ledger opened for a call that cannot run
        raise TypeError(
            f"run_agent() got unexpected keyword arguments {', '.join(sorted(unknown))}; it takes "
            f"config, ledger, chat_model, env and Runtime.run's {', '.join(sorted(RUN_OPTIONS))}"
        )
    runtime = await kept(config, ledger=ledger, chat_model=chat_model, env=env)
    return await runtime.run(spec, **options)


#: The keyword arguments ``run_agent`` hands to ``Runtime.run``.
RUN_OPTIONS = frozenset(inspect.signature(Runtime.run).parameters) - {"self", "spec"}


@dataclass
class _Kept:
    runtime: Runtime
    holds: tuple[Any, ...]  # what the key names by id, kept alive so that no id is reused


_kept: dict[tuple[Any, ...], _Kept] = {}
_MAX_KEPT = 8  # runtimes kept at once; the least recently used is closed beyond that


async def kept(
    config: Config | None = None,
    *,
    ledger: Ledger | None = None,
    chat_model: BaseChatModel | None = None,
    env: Mapping[str, str] | None = None,
) -> Runtime:
    """The runtime ``run_agent`` runs on for these settings, made on the first call.

    One per set of settings: the project's configuration (read again on every call when not
    given), the environment's values (``os.environ`` by default), the ledger (the one kept for
    the configuration's URL, ``meshagent.ledger.shared``, unless given), the chat model and the
    project's MCP lock as it is on disk. A change to any of them gets a runtime of its own.
    """
    import os

    from meshagent.ledger.shared import shared_ledger
    from meshagent.mcp.tools import project_registry

    config = config or load_config()
    ledger = ledger or shared_ledger(config.ledger_url)
    registry = project_registry(config, default_registry())  # cached while the lock is unchanged
    values = env if env is not None else os.environ
    holds = (ledger, chat_model, registry)
    key = (config.model_dump_json(), tuple(sorted(values.items())), env is None) + tuple(
        id(each) for each in holds
    )
    found = _kept.pop(key, None)
    if found is None or any(a is not b for a, b in zip(found.holds, holds, strict=True)):
        runtime = Runtime(config, ledger=ledger, registry=registry, env=env, chat_model=chat_model)
        found = _Kept(runtime, holds)
    _kept[key] = found  # the most recently used last
    while len(_kept) > _MAX_KEPT:
        old = _kept.pop(next(iter(_kept))).runtime
        if old._in_flight == 0:  # a run in flight keeps its clients
            await old.aclose()
    return found.runtime
