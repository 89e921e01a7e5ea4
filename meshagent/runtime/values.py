"""The values one run works with: its inputs converted to their declared types, the
``{{placeholders}}`` of its actions filled in, the hash of its context, the facts of its entry.

Pure functions of the agent file and what the run read, below the runtime (``runtime.py``) and
the fleet's claims, which both open entries with ``entry_facts``.
"""

from __future__ import annotations

import hashlib
import json
import re
from datetime import datetime
from typing import TYPE_CHECKING, Any

from meshagent.exceptions import RunError

if TYPE_CHECKING:
    from meshagent.agentfile.spec import AgentSpec

__all__ = ["context_hash", "convert_input", "entry_facts", "is_quiet", "items_of", "substitute"]

_PLACEHOLDER = re.compile(r"\{\{\s*([a-z_][a-z0-9_]*(?:\.[a-z_][a-z0-9_]*)?)\s*\}\}")
_A = {"string": "a", "integer": "an", "number": "a", "boolean": "a", "list": "a"}


def is_quiet(answer: str, quiet: str) -> bool:
    """Whether `answer` is the agent's declared "nothing to report": the sentinel alone,
    whatever its case, spacing, quotes, markup or final full stop."""
    strip = " \t\r\n.!`*_\"'"
    return answer.strip(strip).casefold() == quiet.strip(strip).casefold()


def context_hash(version: str, gathered: dict[str, Any], values: dict[str, Any]) -> str:
    """The hash of what a run read and was given, for ``skip_if_unchanged``."""
    text = json.dumps([version, gathered, values], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


class _Empty(Exception):
    """A for_each item lacks the value a placeholder names."""


def items_of(data: Any) -> list[Any]:
    """The items of a context result: its first list (issues, messages), or the list itself."""
    if isinstance(data, list):
        return data
    if isinstance(data, dict):
        for value in data.values():
            if isinstance(value, list):
                return value
    return []


def substitute(
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


def convert_input(where: str, name: str, kind: str, raw: Any) -> Any:
    """An input's given value as its declared type; RunError naming what was expected."""
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
