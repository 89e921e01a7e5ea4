"""Pydantic validators shared by the settings models of meshagent.toml and its [mcp.NAME] tables."""

from __future__ import annotations

import re
from typing import Any

from pydantic_core import PydanticCustomError

__all__ = ["env_name", "no_bool"]


def no_bool(value: Any) -> Any:
    # In pydantic's lax mode TOML's true/false would pass as the numbers 1 and 0.
    if isinstance(value, bool):
        raise PydanticCustomError("bool_not_number", "a boolean is not a number")
    return value


def env_name(value: str) -> str:
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", value):
        raise PydanticCustomError("env_name", "not the name of an environment variable")
    return value
