"""Checks of an agent that need more than its own fields: the connector registry, the environment.

Each check returns problems as ``(path, message)``, the path in YAML terms
(``("context", 0, "jira.search", "jql")``), so the loader can point at the offending node.
"""

from __future__ import annotations

import re
import types
import typing
from collections.abc import Iterator, Mapping
from typing import Any, NamedTuple

from pydantic import BaseModel, ValidationError

from meshagent.actions import ENV_ALLOWED, PLACEHOLDERS, Action, ActionKind, Registry, closest
from meshagent.agentfile.spec import ActionUse, AgentSpec, EveryTrigger
from meshagent.config import DEFAULT_MIN_INTERVAL_SECONDS

__all__ = ["ENV_REFERENCE", "Problem", "check_agent", "describe_error"]

Path = tuple[str | int, ...]


class Problem(NamedTuple):
    path: Path
    message: str
    at_key: bool = False
    """Point at the key rather than its value (an unknown field)."""


#: ``${VAR}``; ``$${VAR}`` is a literal ``${VAR}``.
ENV_REFERENCE = re.compile(r"(?<!\$)\$\{([^}]*)\}")
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

# Which params a section holds, and which kind of action it takes (None: any kind).
SECTIONS: dict[str, tuple[str, ActionKind | None]] = {
    "context": ("args", ActionKind.READ),
    "tools": ("grant", None),
    "deliver": ("args", ActionKind.WRITE),
}


def check_agent(
    spec: AgentSpec,
    data: Mapping[str, Any],
    *,
    registry: Registry,
    env: Mapping[str, str],
    scan_env: bool = True,
    min_interval_seconds: float | None = None,
) -> list[Problem]:
    """Every problem with the agent's actions, intervals and ``${VAR}`` references.

    ``scan_env=False`` skips looking for ``${VAR}`` (the caller knows the text has none).
    ``min_interval_seconds`` is the project's ``[serve] min_interval_seconds`` (None: its
    default).
    """
    problems: list[Problem] = list(_check_intervals(spec, min_interval_seconds))
    allowed_env: set[Path] = set()
    for section, (holds, kind) in SECTIONS.items():
        for index, use in enumerate(getattr(spec, section)):
            base: Path = (section, index, use.action)
            action = _lookup(use, kind, registry)
            if isinstance(action, str):
                problems.append(Problem((section, index), action))
                continue
            if use.for_each is not None:
                names = [c.action for c in spec.context]
                if section != "deliver":
                    problems.append(Problem((section, index), "for_each is only for deliver"))
                elif use.for_each not in names:
                    problems.append(
                        Problem(
                            (section, index),
                            f"for_each: {use.for_each!r} is not a context action of this agent "
                            f"(context: {', '.join(names) or 'none'})",
                        )
                    )
            model = action.args if holds == "args" else action.grant
            params = dict(use.params)
            if section == "deliver" and action.answer_field and action.answer_field not in params:
                params[action.answer_field] = "<final answer>"
            if use.grant is not None:
                if section != "deliver":
                    problems.append(Problem((section, index, "grant"), _GRANT_WHERE))
                else:
                    problems.extend(_validate(action.grant, use.grant, (section, index, "grant")))
            wants = section == "deliver" and getattr(action, "answer_placeholder", False)
            if wants and "{{answer}}" not in str(use.params).replace(" ", ""):
                problems.append(Problem(base, _NO_ANSWER.format(action=use.action)))
            problems.extend(_validate(model, params, base))
            if holds == "args":
                allowed_env.update(base + (name,) for name in _env_fields(model))
    if spec.skip_if_unchanged and not spec.context:
        problems.append(
            Problem(
                ("skip_if_unchanged",),
                "needs context actions: without context the input never changes, "
                "so every run after the first would be skipped",
            )
        )
    problems.extend(_check_approve(spec, registry))
    if scan_env:
        problems.extend(_check_env(data, allowed_env, env))
    return problems


def _check_approve(spec: AgentSpec, registry: Registry) -> Iterator[Problem]:
    """``approve: writes:`` names write actions the agent makes (deliver, or tools it grants)."""
    if spec.approve is None:
        return
    used = [
        use.action
        for use in (*spec.deliver, *spec.tools)
        if use.action in registry and registry.get(use.action).kind == ActionKind.WRITE
    ]
    if not used:
        yield Problem(("approve",), "the agent makes no writes (deliver, write tools) to approve")
        return
    if spec.approve.writes == "all":
        return
    for index, name in enumerate(spec.approve.writes):
        if name not in registry or registry.get(name).kind != ActionKind.WRITE:
            message = registry.unknown_message(name, ActionKind.WRITE)
        elif name not in used:
            message = (
                f"{name} is not a write this agent makes "
                f"(its writes: {', '.join(dict.fromkeys(used))})"
            )
        else:
            continue
        yield Problem(("approve", "writes", index), message)


_GRANT_WHERE = (
    "grant: is for deliver (a tool's grant is its parameters under tools, a context call's "
    "arguments are fixed)"
)
_NO_ANSWER = (
    "no argument of {action} receives the agent's answer: write {{{{answer}}}} in the one "
    'that should (e.g. body: "{{{{answer}}}}")'
)


def _check_intervals(spec: AgentSpec, minimum: float | None) -> Iterator[Problem]:
    """``every:`` triggers shorter than the project allows: a fleet of agents firing every few
    seconds is load, not work (and finer than cron, which counts in minutes)."""
    shortest = DEFAULT_MIN_INTERVAL_SECONDS if minimum is None else minimum
    for index, trigger in enumerate(spec.triggers):
        if isinstance(trigger, EveryTrigger) and trigger.interval.total_seconds() < shortest:
            yield Problem(
                ("triggers", index, "every"),
                f"{trigger.every!r} is shorter than the shortest interval allowed, {shortest:g}s "
                "([serve] min_interval_seconds in meshagent.toml): use a longer interval, or a "
                "schedule",
            )


def _lookup(use: ActionUse, kind: ActionKind | None, registry: Registry) -> Action | str:
    if use.action not in registry:
        return registry.unknown_message(use.action, kind)
    action = registry.get(use.action)
    if kind is not None and action.kind != kind:
        where = "context" if kind == ActionKind.READ else "deliver"
        return (
            f"{use.action} is a {action.kind} action; {where} takes {kind} actions "
            f"(valid: {', '.join(registry.names(kind)) or 'none'})"
        )
    return action


def _validate(model: type[BaseModel], params: dict[str, Any], base: Path) -> list[Problem]:
    try:
        model.model_validate(params, context={PLACEHOLDERS: True})
    except ValidationError as exc:
        return [
            Problem(
                base + tuple(err["loc"]),
                describe_error(err, model, params),
                at_key=err["type"] == "extra_forbidden",
            )
            for err in exc.errors()
        ]
    return []


def _env_fields(model: type[BaseModel]) -> list[str]:
    return [
        name
        for name, info in model.model_fields.items()
        if isinstance(info.json_schema_extra, dict)
        and all(info.json_schema_extra.get(k) == v for k, v in ENV_ALLOWED.items())
    ]


def _strings(data: Any, path: Path = ()) -> Iterator[tuple[Path, str]]:
    if isinstance(data, str):
        yield path, data
    elif isinstance(data, Mapping):
        for key, value in data.items():
            yield from _strings(value, path + (key,))
    elif isinstance(data, list):
        for index, value in enumerate(data):
            yield from _strings(value, path + (index,))


def _check_env(
    data: Mapping[str, Any], allowed: set[Path], env: Mapping[str, str]
) -> list[Problem]:
    problems: list[Problem] = []
    for path, text in _strings(data):
        names = ENV_REFERENCE.findall(text)
        if not names:
            continue
        if not any(path[: len(prefix)] == prefix for prefix in allowed):
            problems.append(
                Problem(
                    path,
                    f"${{{names[0]}}}: environment variables are only allowed in fields that "
                    "take secrets, such as headers; write $${...} for a literal ${...}",
                )
            )
            continue
        for name in names:
            if not ENV_NAME.match(name):
                problems.append(
                    Problem(path, f"${{{name}}} is not a valid environment variable name")
                )
            elif name not in env:
                problems.append(Problem(path, f"environment variable {name} is not set"))
    return problems


def describe_error(err: Mapping[str, Any], model: type[BaseModel], data: Any) -> str:
    """A pydantic error in words a YAML author can act on, with the value that was given.

    ``model`` is the model that was validated and ``data`` what it was given (with ``err``'s
    loc in the same terms); they tell the valid fields where a field is unknown.
    """
    kind = err["type"]
    if kind == "meshagent":
        return str(err["msg"])
    if kind == "missing":
        return "required field is missing"
    if kind == "extra_forbidden":
        name = str(err["loc"][-1])
        valid = _fields_at(model, tuple(err["loc"][:-1]), data)
        hint = closest(name, valid)
        hint_text = f"; did you mean {hint!r}?" if hint else ""
        return f"unknown field {name!r}{hint_text} (valid: {', '.join(valid)})"
    message = str(err["msg"])
    message = message.removeprefix("Value error, ")
    message = message[:1].lower() + message[1:]
    if "input" in err and not isinstance(err["input"], dict | list):
        message += f", got {err['input']!r}"
    return message


def _fields_at(model: type[BaseModel], loc: tuple[Any, ...], data: Any) -> list[str]:
    """The field names of the model at ``loc`` inside ``model``; ``data`` picks union members."""
    current: Any = model
    for part in loc:
        current = _descend(_unwrap(current, data), part)
        data = (
            data.get(part)
            if isinstance(data, Mapping)
            else (
                data[part]
                if isinstance(data, list) and isinstance(part, int) and part < len(data)
                else None
            )
        )
        if current is None:
            return []
    current = _unwrap(current, data)
    if isinstance(current, type) and issubclass(current, BaseModel):
        return list(current.model_fields)
    return []


def _unwrap(annotation: Any, data: Any) -> Any:
    """Strip Annotated and pick the union member that fits ``data`` best."""
    while typing.get_origin(annotation) is typing.Annotated:
        annotation = typing.get_args(annotation)[0]
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        options = [_unwrap(a, data) for a in typing.get_args(annotation) if a is not type(None)]
        models = [o for o in options if isinstance(o, type) and issubclass(o, BaseModel)]
        if not models:
            return options[0] if len(options) == 1 else None
        keys = set(data) if isinstance(data, Mapping) else set()
        return max(models, key=lambda m: len(keys & set(m.model_fields)))
    return annotation


def _descend(annotation: Any, part: Any) -> Any:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        field = annotation.model_fields.get(part)
        return field.annotation if field else None
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is list and isinstance(part, int):
        return args[0]
    if origin is dict and args:
        return args[1]
    return None
