"""MESHAGENT_* environment variables: one per setting, read and merged over the file's settings."""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache
from typing import Any, NamedTuple, get_origin

from pydantic import BaseModel

from meshagent.config.messages import close_match, field_at, unwrap
from meshagent.config.project import NOT_SETTINGS, Config

ENV_PREFIX = "MESHAGENT_"
# MESHAGENT_* variables that are not settings, so they are not refused as misspelt ones.
NON_SETTING_VARIABLES = ("MESHAGENT_CONFIG", "MESHAGENT_HOME")


@cache
def _variables() -> dict[str, tuple[str, ...]]:
    variables: dict[str, tuple[str, ...]] = {}
    for name, info in Config.model_fields.items():
        annotation, _ = unwrap(info.annotation)
        if name in NOT_SETTINGS or get_origin(annotation) is dict:
            continue  # tables keyed by free names (prices, connectors) are set in the file only
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            for sub, field in annotation.model_fields.items():
                if get_origin(unwrap(field.annotation)[0]) is dict:
                    continue  # such as [people] aliases: keyed by free names, file only
                variables[f"{ENV_PREFIX}{name}__{sub}".upper()] = (name, sub)
        else:
            variables[f"{ENV_PREFIX}{name}".upper()] = (name,)
    return variables


def setting_variables() -> dict[str, tuple[str, ...]]:
    """Every MESHAGENT_* variable that overrides a setting, with the setting's path.

    Derived from the models: MESHAGENT_<FIELD> and MESHAGENT_<TABLE>__<FIELD>.
    """
    return dict(_variables())


def _unknown_variable(name: str) -> str:
    variables = list(_variables())
    message = f"{name}: not a setting variable"
    names = [variable.removeprefix(ENV_PREFIX) for variable in variables]
    if best := close_match(name.removeprefix(ENV_PREFIX), names):
        message += f"; did you mean {ENV_PREFIX}{best}?"
    table, nested, _ = name.partition("__")
    valid = [variable for variable in variables if nested and variable.startswith(table + "__")]
    if not valid:
        valid = [variable for variable in variables if "__" not in variable]
        tables = sorted({variable.partition("__")[0] for variable in variables} - set(valid))
        valid += [f"{table}__<KEY>" for table in tables]
    return f"{message} (valid: {', '.join(valid)})"


class _Override(NamedTuple):
    variable: str
    raw: str
    value: str | tuple[str, ...]


def environment_overrides(
    env: Mapping[str, str],
) -> tuple[dict[tuple[str, ...], _Override], list[str]]:
    """The settings set by `env`, by path, and the problems with its MESHAGENT_* names."""
    overrides: dict[tuple[str, ...], _Override] = {}
    problems: list[str] = []
    for name in sorted(env):
        if not name.startswith(ENV_PREFIX) or name in NON_SETTING_VARIABLES:
            continue
        path = _variables().get(name)
        if path is None:
            problems.append(_unknown_variable(name))
            continue
        raw = env[name]
        value: str | tuple[str, ...] = raw
        if get_origin(field_at(path)[0]) is tuple:  # lists are comma-separated
            value = tuple(part.strip() for part in raw.split(",") if part.strip())
        overrides[path] = _Override(name, raw, value)
    return overrides, problems


def merge_overrides(
    settings: dict[str, Any], overrides: Mapping[tuple[str, ...], _Override]
) -> dict:
    merged = dict(settings)
    for path, override in overrides.items():
        if len(path) == 1:
            merged[path[0]] = override.value
        else:
            table = merged.get(path[0])
            merged[path[0]] = {
                **(table if isinstance(table, dict) else {}),
                path[1]: override.value,
            }
    return merged
