"""Agent mode: LangChain's ``create_agent`` with each grant as a tool, built once per agent.

The graph and its tools depend only on the agent file and the model, so a runtime builds them
once per spec version and model and shares them between runs, concurrent ones included. What
belongs to one run (its spending, refusals, outcomes, the action context) is found through the
context variable ``model_calls.active``, set for the length of the run: asyncio tasks and
LangGraph's nodes inherit it, so each call sees its own run. The budget, semaphore and retries
of each model call are the guarded chat model's (``model_calls.Guarded``), not middleware's.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from langchain_core.tools import StructuredTool

from meshagent.exceptions import ConnectorError, GrantDenied
from meshagent.model_calls import active

if TYPE_CHECKING:
    from meshagent.actions import Action, ActionResult
    from meshagent.model_calls import Guarded
    from meshagent.runtime import Runtime
    from meshagent.spec import AgentSpec

__all__ = ["build_agent"]


def build_agent(runtime: Runtime, spec: AgentSpec, chat: Guarded) -> Any:
    """The compiled agent graph of ``spec`` on ``chat``; run it with ``active`` set."""
    from langchain.agents import create_agent

    tools = [_tool(runtime.registry.get(use.action), use.params) for use in spec.tools]
    return create_agent(chat, tools, system_prompt=spec.instructions)


def _tool(action: Action, grant_params: dict[str, Any]) -> Any:
    """A LangChain tool for one granted action; the grant is checked before every call."""
    from meshagent.runtime import Refusal, _compact

    grant = action.grant.model_validate(grant_params)

    async def call(**arguments: Any) -> str:
        run, context = active.get()
        await run.record()  # what the model spent asking for this call, before it runs
        shown = json.dumps(arguments, default=str, ensure_ascii=False)[:500]
        try:
            args = action.args.model_validate(arguments)
            action.check(args, grant)
            result: ActionResult = await action(context, args, grant)
        except GrantDenied as exc:
            run.refusals.append(Refusal(action.name, exc.reason, dict(arguments)))
            run.tool_event("tool_refused", action.name, f"{exc.reason}; arguments {shown}")
            return f"Refused: {exc.reason}. This agent is not allowed to do that; do not retry."
        except ConnectorError as exc:
            run.tool_event("tool_failed", action.name, f"{exc}; arguments {shown}")
            return f"Error: {exc}"
        except ValueError as exc:  # pydantic's ValidationError: tell the model what was wrong
            run.tool_event("tool_failed", action.name, f"invalid arguments {shown}")
            return f"Error: invalid arguments for {action.name}: {exc}"
        run.outcomes.extend(result.outcomes)
        run.tool_event("tool_call", action.name, shown)
        return json.dumps(_compact(result.data), default=str, ensure_ascii=False)

    return StructuredTool.from_function(
        coroutine=call,
        name=action.name.replace(".", "_"),
        description=action.description,
        args_schema=action.args,
    )
