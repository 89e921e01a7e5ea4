"""JSON Schema of an agent file, for editors (yaml-language-server) and for checking files.

The schema is built from ``AgentSpec`` and from the registry: each action under context, tools
and deliver gets the schema of its arguments or grant, so an editor completes parameters too.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from meshagent.actions import Action, ActionKind, Registry, default_registry
from meshagent.agentfile.spec import AgentSpec
from meshagent.config import DEFAULT_VALUE_TAGS

__all__ = ["SCHEMA_FILENAME", "agent_schema", "schema_text"]

SCHEMA_FILENAME = "meshagent.schema.json"
DIALECT = "https://json-schema.org/draft/2020-12/schema"


def _action_schema(
    action: Action, holds: str, defs: dict[str, Any], *, for_each: bool = False
) -> dict[str, Any]:
    model = action.args if holds == "args" else action.grant
    prefix = f"{action.name}.{holds}."
    schema = model.model_json_schema(ref_template="#/$defs/" + prefix + "{model}")
    for name, definition in schema.pop("$defs", {}).items():
        defs[prefix + name] = definition
    schema.pop("title", None)
    if holds == "args" and action.answer_field and "required" in schema:
        # Under deliver, the runtime fills the answer field with the agent's final answer.
        schema = {**schema, "required": [r for r in schema["required"] if r != action.answer_field]}
        if not schema["required"]:
            del schema["required"]
    properties = schema.get("properties", {})
    if holds == "args" and action.answer_field in properties:
        # Said to the author here, not to the model in the argument's own description.
        answer = properties[action.answer_field]
        told = f"{answer.get('description', '')} Left out: the agent's answer.".lstrip()
        schema["properties"] = {**properties, action.answer_field: {**answer, "description": told}}
    kind = "reads" if action.kind == ActionKind.READ else "writes"
    description = f"{action.description} ({kind}; {'arguments' if holds == 'args' else 'grant'})"
    properties: dict[str, Any] = {action.name: schema}
    if for_each:
        properties["for_each"] = {
            "type": "string",
            "description": "Run once per item of this context action's result "
            "({{item.field}} in the parameters).",
        }
        properties["grant"] = {
            "type": "object",
            "description": "The scope the call's arguments must stay inside once its "
            "{{inputs}} are filled in (as the action's grant under tools).",
        }
    return {
        "type": "object",
        "description": description,
        "properties": properties,
        "required": [action.name],
        "additionalProperties": False,
    }


def _section(
    actions: Iterable[Action],
    holds: str,
    defs: dict[str, Any],
    description: str,
    *,
    for_each: bool = False,
) -> dict[str, Any]:
    options = [_action_schema(action, holds, defs, for_each=for_each) for action in actions]
    return {"type": "array", "description": description, "items": {"anyOf": options}}


def agent_schema(
    registry: Registry | None = None, *, value_tags: Iterable[str] = DEFAULT_VALUE_TAGS
) -> dict[str, Any]:
    """The JSON Schema of an agent file with the actions of ``registry``."""
    registry = registry or default_registry()
    schema = AgentSpec.model_json_schema()
    defs: dict[str, Any] = schema.setdefault("$defs", {})
    defs.pop("ActionUse", None)
    properties = schema["properties"]
    actions = registry.actions()
    for section, holds, kinds in (
        ("context", "args", {ActionKind.READ}),
        ("tools", "grant", {ActionKind.READ, ActionKind.WRITE}),
        ("deliver", "args", {ActionKind.WRITE}),
    ):
        chosen = [a for a in actions if a.kind in kinds]
        description = properties[section].get("description", "")
        properties[section] = _section(
            chosen, holds, defs, description, for_each=section == "deliver"
        )
    defs["Value"]["properties"]["tag"]["enum"] = list(value_tags)
    writes = [a.name for a in actions if a.kind == ActionKind.WRITE]
    for option in defs["Approve"]["properties"]["writes"]["anyOf"]:
        if option.get("type") == "array":
            option["items"]["enum"] = writes
    properties["model"]["examples"] = [
        "offline",
        "openai:gpt-4.1-mini",
        "anthropic:claude-sonnet-4-5",
    ]
    return {**schema, "$schema": DIALECT, "title": "MeshAgent agent file"}


def schema_text(registry: Registry | None = None, **options: Any) -> str:
    """The schema as stable, committed-file-friendly JSON text."""
    return json.dumps(agent_schema(registry, **options), indent=2, sort_keys=True) + "\n"
