"""What a run sends the model besides the author's words, and how much of it that is.

The author of an agent writes its ``instructions`` and names its inputs; its context actions fetch
data. Everything else a model call carries is the framework's: the section headings of the context
message and the blank lines between sections, the tool schemas sent with every call of the tool
loop, and the texts MeshAgent answers a refused or failed tool call with. ``first_messages`` is
what a run's first model call starts from: the instructions as the system message and the context
message as the user turn, or, for an agent that read nothing and has no inputs, the instructions
alone as the user turn (the task is the request; no placeholder turn). ``context_message`` builds
the context message (text as text, anything else as compact JSON) and counts the framework's
tokens in it; ``tool_schema`` is a tool's parameters as the model needs them; ``FrameworkShare``
adds up, call by call, what the framework sent. Token counts are ``models.estimate_tokens``'s, for
the framework's part and the author's alike.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

__all__ = ["FrameworkShare", "context_message", "first_messages", "serialise", "tool_schema"]

# JSON Schema keywords that validate but do not steer: the model is told names, types, what is
# required, enums and short descriptions; our own validation (the action's pydantic model) still
# holds every bound and default.
_DROPPED = frozenset(
    {
        "title",
        "default",
        "minimum",
        "maximum",
        "exclusiveMinimum",
        "exclusiveMaximum",
        "minLength",
        "maxLength",
        "minItems",
        "maxItems",
        "examples",
    }
)


def estimate_tokens(text: str) -> int:
    """``models.estimate_tokens``, imported when first needed (models imports LangChain)."""
    from meshagent.models import estimate_tokens as estimate

    return estimate(text)


@lru_cache(maxsize=256)
def _schema_tokens(text: str) -> int:
    """The tokens of a call's tool schemas: the same tools go with every turn of a run's loop."""
    return estimate_tokens(text)


def serialise(data: Any) -> str:
    """A context or tool result as the prompt carries it: text as it is, anything else as
    compact JSON (no indentation, no spaces after separators, no ASCII escapes)."""
    if isinstance(data, str):
        return data
    return json.dumps(data, default=str, ensure_ascii=False, separators=(",", ":"))


def first_messages(
    instructions: str, gathered: Mapping[str, Any], values: Mapping[str, Any]
) -> tuple[list[Any], int]:
    """The messages a run's first model call starts from, and how many of their tokens are the
    framework's own.

    With context (results read, or inputs given): the instructions as the system message, the
    context message as the user turn. Without: the instructions alone, as the user turn, which is
    what a person would send; the framework then adds nothing to the messages.
    """
    from langchain_core.messages import HumanMessage, SystemMessage

    context, framework = context_message(gathered, values)
    if not context:
        return [HumanMessage(instructions)], 0
    return [SystemMessage(instructions), HumanMessage(context)], framework


def context_message(gathered: Mapping[str, Any], values: Mapping[str, Any]) -> tuple[str, int]:
    """The context message of a run, and how many of its tokens are the framework's own; ``""``
    (and 0) when the run read nothing and has no inputs.

    Each context result goes under a heading naming its action, then the inputs under
    ``## inputs``; the framework's tokens are the message's less those of the results and the
    inputs' values as they appear in it (the headings, the blank lines between sections).
    """
    parts: list[str] = []
    authored: list[str] = []
    for name, data in gathered.items():
        body = serialise(data)
        parts.append(f"## {name}\n{body}")
        authored.append(body)
    shown = {key: value for key, value in values.items() if value is not None}
    if shown:
        body = serialise(shown)
        parts.append(f"## inputs\n{body}")
        authored.append(body)
    if not parts:
        return "", 0
    message = "\n\n".join(parts)
    framework = estimate_tokens(message) - sum(estimate_tokens(part) for part in authored)
    return message, max(0, framework)


def tool_schema(schema: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON Schema of an action's arguments as the model needs it: names, types, what is
    required, enums, descriptions. Defaults, bounds and titles are left out, and so is ``null``
    as a choice for an argument the model may leave out (it is sent only when leaving the
    argument out would not mean the same)."""
    required = set(schema.get("required", ()))
    trimmed = _trim(schema)
    trimmed.pop("additionalProperties", None)  # extra arguments are refused on our side
    properties = trimmed.get("properties")
    if isinstance(properties, dict):
        for name, spec in properties.items():
            if name not in required:
                properties[name] = _without_null(spec)
    return trimmed


def _trim(node: Any) -> Any:
    if isinstance(node, dict):
        return {
            key: (_trim(value) if key != "properties" else _trim_properties(value))
            for key, value in node.items()
            if key not in _DROPPED
            and not key.startswith("x-")  # our editors' hints (x-meshagent-env)
            and not (key == "additionalProperties" and value is True)  # JSON Schema's default
        }
    if isinstance(node, list):
        return [_trim(item) for item in node]
    return node


def _trim_properties(properties: Any) -> Any:
    """Property names are names, not keywords: an argument called ``title`` stays."""
    if not isinstance(properties, dict):
        return _trim(properties)
    return {name: _trim(spec) for name, spec in properties.items()}


def _without_null(spec: Any) -> Any:
    """``anyOf: [X, {type: null}]`` as X (keeping the description)."""
    if not isinstance(spec, dict) or "anyOf" not in spec:
        return spec
    choices = [c for c in spec["anyOf"] if c != {"type": "null"}]
    if len(choices) != 1 or not isinstance(choices[0], dict):
        return spec
    rest = {key: value for key, value in spec.items() if key != "anyOf"}
    return {**choices[0], **rest}


@dataclass
class FrameworkShare:
    """The prompt tokens a run's model calls carried that the author did not write."""

    message: int = 0  #: the framework's tokens in the context message, sent with every call
    headings: int = 0  #: those, over every call
    tool_schemas: int = 0  #: the tools' schemas, over every call that bound tools
    tool_notes: int = 0  #: MeshAgent's answers to refused or failed tool calls, as resent
    calls: int = 0

    def add_call(self, messages: Iterable[Any], tools: Any) -> None:
        """Count one model call: its messages and the tools bound to it, as sent."""
        self.calls += 1
        self.headings += self.message
        if tools:
            self.tool_schemas += _schema_tokens(serialise(tools))
        for message in messages:  # MeshAgent's own answers are text (agent_loop._told)
            if (
                getattr(message, "type", None) == "tool"
                and getattr(message, "status", "") == "error"
            ):
                content = message.content
                self.tool_notes += estimate_tokens(content) if isinstance(content, str) else 0

    @property
    def total(self) -> int:
        return self.headings + self.tool_schemas + self.tool_notes

    def as_detail(self) -> str:
        """The ledger's record of it (the detail of a ``records.PROMPT_SHARE`` event): JSON."""
        return serialise(
            {
                "tokens": self.total,
                "headings": self.headings,
                "tool_schemas": self.tool_schemas,
                "tool_notes": self.tool_notes,
                "model_calls": self.calls,
            }
        )

    def describe(self) -> str:
        """Its parts in words: ``headings 9, tool schemas 312 (3 calls)``."""
        parts = [f"headings {self.headings:,}"]
        if self.tool_schemas:
            parts.append(f"tool schemas {self.tool_schemas:,}")
        if self.tool_notes:
            parts.append(f"refusal and error notes {self.tool_notes:,}")
        calls = f"{self.calls:,} model call{'' if self.calls == 1 else 's'}"
        return f"{', '.join(parts)} over {calls}"
