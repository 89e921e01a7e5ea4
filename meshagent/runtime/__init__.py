"""One run: an agent file becomes work done and one honest ledger entry.

- ``runner``: ``Runtime`` and ``run_agent``, the task from inputs to its ledger entry.
- ``state`` and ``values``: the state of one task while it runs; its inputs and placeholders.
- ``prompt``: what a run sends the model besides the author's words, and how much of it.
- ``agent_loop``: agent mode, LangChain's ``create_agent`` with each grant as a tool.
- ``model_calls``: every model call through one guarded chat model (budget, retries, usage).
- ``clients``: the clients connectors keep warm between calls.
- ``view``: how a finished run looks in a terminal.

``run_agent``, ``Runtime`` and ``RunResult`` are importable from here; they are imported when
first used, so that importing a part of this package does not load LangChain.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from meshagent.runtime.runner import Refusal, RunResult, Runtime, entry_facts, kept, run_agent

__all__ = ["Refusal", "RunResult", "Runtime", "entry_facts", "kept", "run_agent"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from meshagent.runtime import runner

        return getattr(runner, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
