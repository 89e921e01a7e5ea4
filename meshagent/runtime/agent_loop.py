"""Agent mode: LangChain's ``create_agent`` with each grant as a tool, built once per agent.

The graph and its tools depend only on the agent file and the model, so a runtime builds them
once per spec version and model and shares them between runs, concurrent ones included. What
belongs to one run (its spending, refusals, outcomes, the action context) is found through the
context variable ``model_calls.active``, set for the length of the run: asyncio tasks and
LangGraph's nodes inherit it, so each call sees its own run. The budget, semaphore and retries
of each model call are the guarded chat model's (``model_calls.Guarded``), not middleware's.

Every tool call the model attempts is handled in one place, ``Attempts``, and leaves one ledger
event: ``tool_call``, ``tool_refused`` or ``tool_failed``, with its arguments, secrets masked.
LangChain would stop some attempts before MeshAgent's code runs, silently: a name that is not a
tool (not granted, unknown, dotted), arguments the tool's schema refuses, and a provider's
``invalid_tool_calls`` (arguments that are not JSON), which end the loop when a turn holds
nothing else. So ``Attempts.wrap`` is the tool node's own wrapper, in front of every call:
it checks the name, validates the arguments against the action's model and runs the action
itself. Malformed calls are answered beside the calls of their turn, or, when the turn held
nothing else, by ``AgentLoop``, which hands the answers back to the graph. A turn the provider
cut at the output token limit makes no call (LangChain completes a stream's partial JSON, so a
message cut mid-sentence would be posted). Each answer is a ToolMessage the model can read: what
was wrong, and which tools there are.

The wrapper is set on the compiled graph's ToolNode rather than given as middleware: LangChain
wraps each middleware hook in LangSmith's ``traceable`` (0.7 ms per tool call on the bench
machine, a third of a bare one-tool agent run). Where the ToolNode has no such attribute (a
LangGraph that changed), the graph is built again with the wrapper as middleware.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from langchain_core.messages import AIMessage, ToolMessage
from langchain_core.tools import StructuredTool
from pydantic import ValidationError

from meshagent.actions import IDENTIFIER_ERROR, closest, describe_invalid
from meshagent.config import looks_secret
from meshagent.config.mcp import secret_variables
from meshagent.exceptions import ConnectorError, GrantDenied, RunError
from meshagent.masking import MASK, mask_known, mask_shapes, secrets_of
from meshagent.runtime.model_calls import active, plain
from meshagent.runtime.prompt import serialise, tool_schema
from meshagent.runtime.state import Refusal, compact

if TYPE_CHECKING:
    from meshagent.actions import Action, ActionContext, ActionGrant, Registry
    from meshagent.agentfile.spec import AgentSpec
    from meshagent.runtime.model_calls import Guarded
    from meshagent.runtime.state import Host, RunState

__all__ = ["AgentLoop", "Attempts", "Masker", "build_agent"]

#: Turns in a row that hold only malformed tool calls before the run stops (a budget's
#: max_model_calls usually stops it first).
MALFORMED_IN_A_ROW = 5
_SHOWN = 500  # characters of arguments kept in an event
_NAME = 200  # characters of a name kept in an event (the column's width)
_NAME_TOLD = 100  # characters of an unknown name repeated to the model
_SCAN = 2_000  # characters of one text searched for secret shapes (an event keeps fewer)
_LANGGRAPH_RECURSION_LIMIT = 25  # its default


def build_agent(runtime: Host, spec: AgentSpec, chat: Guarded) -> AgentLoop:
    """The agent of ``spec`` on ``chat``; run it with ``active`` set."""
    from langchain.agents import create_agent

    masker = Masker.of(runtime.env, runtime.connector_settings)
    granted: dict[str, Granted] = {}
    for use in spec.tools:
        action = runtime.registry.get(use.action)
        tool = Granted(action, action.grant.model_validate(use.params))
        granted[tool.name] = tool
    attempts = Attempts(granted, runtime.registry, masker)
    tools = [attempts.tool(each) for each in granted.values()]
    # No system prompt here: each run starts from its own messages (``prompt.first_messages``),
    # the instructions as the system message beside the context, or alone as the user turn.
    graph = create_agent(chat, tools)
    if not _wrap_tool_node(graph, attempts.wrap):
        graph = create_agent(chat, tools, middleware=[_middleware(attempts)])
    return AgentLoop(graph, attempts)


@dataclass(frozen=True)
class Granted:
    """An action the agent file grants the model, with its grant."""

    action: Action
    grant: ActionGrant

    @property
    def name(self) -> str:
        """The tool's name: LangChain's tool names cannot hold dots."""
        return self.action.name.replace(".", "_")


class Attempts:
    """Every tool call the model attempts: checked, run or refused, recorded and answered."""

    def __init__(self, granted: dict[str, Granted], registry: Registry, masker: Masker) -> None:
        self.granted = granted
        self.registry = registry
        self.masker = masker
        self.listing = ", ".join(sorted(granted)) or "none"
        self._by_tool_name = {a.name.replace(".", "_"): a for a in registry.actions()}

    def tool(self, granted: Granted) -> StructuredTool:
        """The LangChain tool of ``granted``: its name, description and schema for the model.

        ``wrap`` runs the call itself; the tool's own coroutine serves a caller without it.
        """

        async def call(**arguments: Any) -> str:
            run, context = active.get()
            content, _ = await self.perform(run, context, granted, arguments)
            return content

        return StructuredTool.from_function(
            coroutine=call,
            name=granted.name,
            description=granted.action.description,
            # What steers the model, not every bound: ``perform`` validates with the action's
            # own model, so a trimmed schema loosens nothing.
            args_schema=tool_schema(granted.action.args.model_json_schema()),
        )

    async def wrap(self, request: Any, execute: Callable[[Any], Awaitable[Any]]) -> Any:
        """The tool node's wrapper: every call of the model's turn comes through here."""
        run, context = active.get()
        call = request.tool_call
        turn = _turn(request.state)
        found = self.granted.get(call["name"])
        if found is None:
            content = self.refuse(run, call["name"], call["args"])
            answer = _told(content, call["name"], call["id"], failed=True)
        elif turn is not None and _cut_short(turn):
            answer = _told(
                self.cut_short(run, found, call["args"]), found.name, call["id"], failed=True
            )
        else:
            content, failed = await self.perform(run, context, found, call["args"])
            answer = _told(content, found.name, call["id"], failed=failed)
        if turn is None or not turn.invalid_tool_calls or not turn.tool_calls:
            return answer
        if turn.tool_calls[0]["id"] != call["id"]:
            return answer
        # The turn's malformed calls are answered once, beside its first call.
        from langgraph.types import Command

        return Command(update={"messages": [answer, *self.malformed(run, turn)]})

    async def perform(
        self, run: RunState, context: ActionContext, granted: Granted, arguments: Any
    ) -> tuple[str, bool]:
        """Run one granted call: (what the model is told, whether the call failed)."""
        from meshagent.approvals.staged import needs_approval, stage, staged_note

        action, tool = granted.action, granted.name
        await run.record()  # what the model spent asking for this call, before it runs
        shown = self.masker.arguments(arguments)
        try:
            args = action.args.model_validate(arguments)
        except ValidationError as exc:
            problems = describe_invalid(exc)
            if any(error["type"] == IDENTIFIER_ERROR for error in exc.errors()):
                # An identifier not in its service's format (PAY-1/../OPS-1) is refused before
                # the grant is looked at, as a call outside the grant would be.
                run.refusals.append(_refusal(action.name, problems, arguments))
                self._event(run, "tool_refused", action.name, problems, shown)
                return f"Refused: {problems}.", True
            self._event(run, "tool_failed", action.name, f"invalid arguments: {problems}", shown)
            expected = ", ".join(
                f"{name} (required)" if field.is_required() else name
                for name, field in action.args.model_fields.items()
            )
            return (
                f"Error: invalid arguments for {tool}: {problems}. Its arguments: {expected}.",
                True,
            )
        try:
            action.check(args, granted.grant)
            if needs_approval(run.spec, action, dry_run=context.dry_run):
                staged = await stage(run, action, args, source="tool")
                run.tool_event("tool_staged", action.name, shown)
                return staged_note(staged), False  # the model is told; a person decides
            result = await action(context, args, granted.grant)
        except GrantDenied as exc:
            run.refusals.append(_refusal(action.name, exc.reason, arguments))
            self._event(run, "tool_refused", action.name, exc.reason, shown)
            return (
                f"Refused: {exc.reason}. This agent is not allowed to do that; do not retry.",
                True,
            )
        except ConnectorError as exc:
            self._event(run, "tool_failed", action.name, str(exc), shown)
            return f"Error: {self.masker.text(str(exc))}", True
        except Exception as exc:  # a client library's own error fails the call, not the run
            self._event(run, "tool_failed", action.name, plain(exc), shown)
            return f"Error: {tool} failed: {self.masker.text(plain(exc))}", True
        run.outcomes.extend(result.outcomes)
        run.tool_event("tool_call", action.name, shown)
        return serialise(compact(result.data)), False

    def refuse(self, run: RunState, name: Any, arguments: Any) -> str:
        """Refuse a call to a tool the agent lacks; what the model is told."""
        name = name if isinstance(name, str) else str(name)
        action = self._by_tool_name.get(name) or (
            self.registry.get(name) if name in self.registry else None
        )
        tools = f"The tools are: {self.listing}."
        shown = self.masker.arguments(arguments)
        if action is not None and action.name.replace(".", "_") not in self.granted:
            reason = f"{action.name} is not granted to this agent"
            run.refusals.append(_refusal(action.name, reason, arguments))
            self._event(run, "tool_refused", action.name, reason, shown)
            return f"Refused: {reason}; do not retry it. {tools}"
        told = _printable(name)[:_NAME_TOLD]
        if action is not None:  # a granted action called by its dotted name
            hint = f" (tool names have no dots: call {action.name.replace('.', '_')})"
        else:
            suggestion = closest(name, self.granted)
            hint = f"; did you mean {suggestion}?" if suggestion else ""
        reason = f"there is no tool named '{told}'{hint}"
        self._event(run, "tool_refused", name, reason, shown)
        return f"Error: {reason}. {tools}"

    def malformed(self, run: RunState, turn: AIMessage) -> list[ToolMessage]:
        """Record and answer the calls of ``turn`` whose arguments did not parse."""
        answers = []
        for call in turn.invalid_tool_calls:
            name, raw = call.get("name") or "", call.get("args")
            found = self.granted.get(name)
            if found is None:
                content = self.refuse(run, name, raw)
            else:
                problem = _json_problem(raw, call.get("error"))
                self._event(
                    run,
                    "tool_failed",
                    found.action.name,
                    f"arguments are not valid JSON: {problem}",
                    self.masker.arguments(raw),
                )
                content = (
                    f"Error: the arguments of your call to {found.name} are not valid JSON "
                    f"({problem}); send them again as one JSON object."
                )
            if call.get("id"):
                answers.append(_told(content, name, call["id"], failed=True))
        return answers

    def cut_short(self, run: RunState, granted: Granted, arguments: Any) -> str:
        """Refuse to make a call whose turn was cut at the output token limit: its arguments
        may be incomplete, and LangChain completes partial JSON of a stream (a message cut
        mid-sentence would be posted)."""
        shown = self.masker.arguments(arguments)
        reason = "the model's output was cut at its token limit: the arguments may be incomplete"
        self._event(run, "tool_failed", granted.action.name, reason, shown)
        return (
            "Error: your turn was cut at the output token limit before the arguments of "
            f"{granted.name} were complete; the call was not made. Send it again, shorter."
        )

    def _event(self, run: RunState, kind: str, name: str, reason: str, shown: str) -> None:
        name = _printable(self.masker.text(name))[:_NAME]
        reason = _printable(self.masker.text(reason))
        run.tool_event(kind, name, f"{reason}; arguments {shown}")


class AgentLoop:
    """The agent graph, entered again when the model's last turn held only malformed calls.

    LangChain ends its loop on a turn without valid tool calls, so a turn whose every call had
    arguments that are not JSON ended the run with no answer. Here the calls are recorded and
    answered, and the graph goes on from there, at most ``MALFORMED_IN_A_ROW`` turns in a row.
    Each entry gets what is left of the graph's recursion limit, so that the whole run stays
    within it, as one entry would.
    """

    def __init__(self, graph: Any, attempts: Attempts) -> None:
        self.graph = graph
        self.attempts = attempts

    async def ainvoke(self, state: dict[str, Any], config: Any = None) -> dict[str, Any]:
        config = dict(config or {})
        steps = config.get("recursion_limit", _LANGGRAPH_RECURSION_LIMIT)
        in_a_row = 0
        while True:
            sent = len(state["messages"])
            state = await self.graph.ainvoke(state, config=config)
            messages = state["messages"]
            turn = messages[-1]
            if not isinstance(turn, AIMessage) or turn.tool_calls or not turn.invalid_tool_calls:
                return state
            run, _ = active.get()
            answers = self.attempts.malformed(run, turn)
            in_a_row = in_a_row + 1 if len(messages) == sent + 1 else 1
            if in_a_row >= MALFORMED_IN_A_ROW:
                raise RunError(
                    f"the model sent tool calls with malformed arguments {in_a_row} times in "
                    "a row; stopped"
                )
            if not answers:  # nothing to answer them with (no call ids)
                return state
            # A turn took a model step and a tools step of the limit; the last one, a model step.
            left = steps - 2 * sum(isinstance(m, AIMessage) for m in messages)
            if left < 1:
                raise RunError(f"the tool loop reached its limit of {steps} steps")
            config["recursion_limit"] = left
            state = {**state, "messages": [*messages, *answers]}


class Masker:
    """Secrets out of what the ledger keeps of a call: values of secret-named keys, the
    environment's secrets wherever they appear, and token-shaped text."""

    def __init__(self, secrets: Iterable[str]) -> None:
        self.secrets = secrets_of(secrets)  # longest first

    @classmethod
    def of(cls, env: Mapping[str, str], settings: Mapping[str, Mapping[str, Any]]) -> Masker:
        """For a runtime's environment: its secret-named variables, and those the connectors'
        settings name for secrets (``[jira] token_env = "MY_PAT"``)."""
        names = {name for name in env if looks_secret(name)}
        for table in settings.values():
            for key, value in table.items():
                if key.endswith("_env") and isinstance(value, str) and looks_secret(key[:-4]):
                    names.add(value)
            names.update(secret_variables(table))  # what an MCP server's [mcp.NAME] passes it
        return cls(env.get(name) or "" for name in names)

    def arguments(self, arguments: Any) -> str:
        """The arguments as the ledger keeps them: JSON, masked, cut (raw text stays a string)."""
        shown = json.dumps(self._masked(arguments), default=str, ensure_ascii=False)
        return shown[:_SHOWN]

    def text(self, text: str) -> str:
        """``text`` masked, and cut to what an event can keep (a model's text may be long)."""
        text = mask_known(text, self.secrets)
        return mask_shapes(_SECRET_PAIR.sub(_mask_pair, text[:_SCAN]))

    def _masked(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {
                key: MASK if _secret_key(key) and item not in (None, "") else self._masked(item)
                for key, item in value.items()
            }
        if isinstance(value, list | tuple):
            return [self._masked(item) for item in value]
        return value


_SECRET_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie", "set-cookie"})
# "key": "value" in text that is not JSON (a malformed call's arguments), value maybe cut short.
_SECRET_PAIR = re.compile(r'("((?:[^"\\]|\\.){1,64})"\s*:\s*")((?:[^"\\]|\\.)*)')


def _secret_key(key: Any) -> bool:
    return isinstance(key, str) and (looks_secret(key) or key.lower() in _SECRET_HEADERS)


def _mask_pair(match: re.Match[str]) -> str:
    key = match.group(2)
    return match.group(1) + MASK if _secret_key(key) and match.group(3) else match.group(0)


def _turn(state: Any) -> AIMessage | None:
    """The model's turn whose calls the tool node is making: the state's last AIMessage."""
    messages = state.get("messages") if isinstance(state, dict) else None
    return next((m for m in reversed(messages or ()) if isinstance(m, AIMessage)), None)


def _cut_short(turn: AIMessage) -> bool:
    """Whether the provider says the turn ended at the output token limit."""
    meta = turn.response_metadata
    return any(meta.get(key) == value for key, value in _CUT_SHORT)


# How OpenAI, Anthropic, Bedrock and Ollama say that an output reached its token limit.
_CUT_SHORT = (
    ("finish_reason", "length"),
    ("stop_reason", "max_tokens"),
    ("stopReason", "max_tokens"),
    ("done_reason", "length"),
)


def _told(content: str, name: str, call_id: str, *, failed: bool) -> ToolMessage:
    status = "error" if failed else "success"
    return ToolMessage(content, name=name[:_NAME], tool_call_id=call_id, status=status)


def _refusal(action: str, reason: str, arguments: Any) -> Refusal:
    given = dict(arguments) if isinstance(arguments, dict) else {"arguments": arguments}
    return Refusal(action, reason, given)


def _json_problem(raw: Any, error: Any) -> str:
    """Why ``raw`` is not a JSON object, in the parser's words (the provider's repeat ``raw``)."""
    if not isinstance(raw, str):
        return "no arguments were sent"
    try:
        parsed = json.loads(raw)
    except ValueError as exc:
        return str(exc)
    if not isinstance(parsed, dict):
        return f"a JSON {type(parsed).__name__}, not an object"
    first = str(error or "").strip().splitlines()
    return first[0][:200] if first else "the provider could not read them"


def _printable(text: str) -> str:
    """``text`` with control characters written as escapes (a name from the model)."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def _wrap_tool_node(graph: Any, wrap: Callable[..., Any]) -> bool:
    """Set ``wrap`` as the wrapper of the graph's tool node; False where that cannot be done."""
    node = getattr(graph, "nodes", {}).get("tools")
    tool_node = getattr(node, "bound", None)
    if getattr(tool_node, "_awrap_tool_call", False) is not None:
        return False  # no such attribute, or a wrapper already set
    tool_node._awrap_tool_call = wrap
    return True


def _middleware(attempts: Attempts) -> Any:
    from langchain.agents.middleware import AgentMiddleware

    class AttemptsMiddleware(AgentMiddleware):
        async def awrap_tool_call(self, request: Any, handler: Any) -> Any:
            return await attempts.wrap(request, handler)

    return AttemptsMiddleware()
