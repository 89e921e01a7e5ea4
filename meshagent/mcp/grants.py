"""Grants of MCP tools: which values each argument may take, checked on the parsed argument.

Under ``tools:`` (and ``deliver:``, with ``grant:``) an MCP tool is granted with constraints on
its arguments, by the argument's name from the tool's input schema::

    wiki.create_page: {space: [ENG, OPS], title: {prefix: "Standup "}, path: {pattern: "..."}}

A list is ``one_of`` (the value equals one of them, its JSON type too: ``1`` is not ``"1"``), a
single value is that value alone, a table takes ``one_of``, ``prefix`` (one text or a list) and
``pattern`` (matched whole, ASCII classes); all that a table names must hold. A constrained
argument must be given (a server's default was not granted), and a prefix or pattern grants
text only: a list, a number or an object where text is granted is refused. Text under a prefix
or pattern must mean what it shows: no ``..`` or ``.`` path segment, no backslash, no
percent-encoded dot, slash or backslash, no control or invisible format characters, and nothing
that Unicode compatibility normalisation (NFKC) would change (a fullwidth ``ｄｏｃｓ`` that a server
could fold into ``docs``).
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Mapping
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, ValidationError
from pydantic_core import PydanticCustomError

from meshagent.actions import ActionGrant

__all__ = ["Constraint", "McpGrant", "grant_model", "json_type", "schema_error"]

_ENCODED = re.compile(r"%(2e|2f|5c|00)", re.IGNORECASE)
_SEGMENT = re.compile(r"(^|/)\.{1,2}(/|$)")


def json_type(value: Any) -> str:
    """The JSON name of ``value``'s type: text, a number, a list, an object..."""
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "text"
    if isinstance(value, list | tuple):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return "null" if value is None else type(value).__name__


def schema_error(title: str, problems: list[tuple[tuple[str | int, ...], str, Any]]) -> Any:
    """A pydantic ValidationError of ``problems`` (where, message, input), each message shown
    as written (type ``meshagent``)."""
    return ValidationError.from_exception_data(
        title,
        [
            {
                "type": PydanticCustomError("meshagent", "{message}", {"message": message}),
                "loc": loc,
                "input": value,
            }
            for loc, message, value in problems
        ],
    )


class Constraint(BaseModel):
    """What one argument may be."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    one_of: tuple[Any, ...] | None = None
    prefix: tuple[str, ...] | None = None
    pattern: str | None = None

    @classmethod
    def parse(cls, raw: Any) -> Constraint:
        """From the YAML: a list (one_of), a single value, or a table; ValueError saying why."""
        if isinstance(raw, list):
            raw = {"one_of": raw}
        elif not isinstance(raw, dict):
            raw = {"one_of": [raw]}
        unknown = sorted(set(raw) - {"one_of", "prefix", "pattern"})
        if unknown:
            raise ValueError(
                f"unknown constraint {unknown[0]!r} (a constraint is a list of allowed values, "
                "one value, or a table of one_of, prefix, pattern)"
            )
        if not raw:
            raise ValueError("an empty constraint: give one_of, prefix or pattern")
        one_of, prefix, pattern = raw.get("one_of"), raw.get("prefix"), raw.get("pattern")
        if one_of is not None:
            if not isinstance(one_of, list) or not one_of:
                raise ValueError("one_of: a non-empty list of allowed values")
            for value in one_of:
                if not isinstance(value, str | int | float | bool):
                    raise ValueError(f"one_of: {json_type(value)} is not a value to compare")
                if "{{" in str(value):
                    raise ValueError("one_of: a grant is fixed text; {{...}} is not filled in")
        if prefix is not None:
            prefix = [prefix] if isinstance(prefix, str) else prefix
            if (
                not isinstance(prefix, list)
                or not prefix
                or not all(isinstance(p, str) and p for p in prefix)
            ):
                raise ValueError("prefix: one non-empty text or a list of them")
        if pattern is not None:
            if not isinstance(pattern, str) or not pattern:
                raise ValueError("pattern: a regular expression")
            try:
                re.compile(pattern, re.ASCII)
            except re.error as exc:
                raise ValueError(f"pattern: not a regular expression: {exc}") from None
        return cls(
            one_of=tuple(one_of) if one_of is not None else None,
            prefix=tuple(prefix) if prefix is not None else None,
            pattern=pattern,
        )

    def check(self, name: str, value: Any) -> str | None:
        """Why ``value`` of argument ``name`` falls outside the constraint, or None."""
        if self.one_of is not None and not any(_same(value, allowed) for allowed in self.one_of):
            allowed = ", ".join(json.dumps(a, ensure_ascii=False) for a in self.one_of)
            return f"{name}: {_shown(value)} is not one of the granted values ({allowed})"
        if self.prefix is None and self.pattern is None:
            return None
        if not isinstance(value, str):
            return f"{name}: {json_type(value)} where the grant allows only text"
        unsafe = _unsafe(value)
        if unsafe is not None:
            return f"{name}: {_shown(value)} {unsafe}"
        if self.prefix is not None and not value.startswith(self.prefix):
            granted = " or ".join(json.dumps(p, ensure_ascii=False) for p in self.prefix)
            return f"{name}: {_shown(value)} does not start with {granted}"
        if self.pattern is not None and re.fullmatch(self.pattern, value, re.ASCII) is None:
            return f"{name}: {_shown(value)} does not match the granted pattern {self.pattern!r}"
        return None

    def schema(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in self if v is not None}


def _same(value: Any, allowed: Any) -> bool:
    # 1 == True == 1.0 in Python; a grant of the number 1 is not one of the boolean true.
    return type(value) is type(allowed) and value == allowed


def _unsafe(text: str) -> str | None:
    """Why ``text`` may not mean what it shows to a server, or None."""
    if any(unicodedata.category(c) in ("Cc", "Cf", "Cs", "Co", "Cn") for c in text):
        return "holds control or invisible characters"
    if unicodedata.normalize("NFKC", text) != text:
        return "holds characters that Unicode normalisation changes (fullwidth, ligatures)"
    if "\\" in text:
        return "holds a backslash"
    if _ENCODED.search(text):
        return "holds a percent-encoded dot, slash, backslash or NUL"
    if _SEGMENT.search(text):
        return "holds a '.' or '..' path segment"
    return None


def _shown(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=True, default=str)
    return text if len(text) <= 60 else text[:57] + "..."


class McpGrant(ActionGrant):
    """The grant of one MCP tool: a constraint per argument (validated by ``model_validate``,
    against the tool's arguments)."""

    model_config = ConfigDict(extra="allow", frozen=True)
    tool_name: ClassVar[str] = ""
    arguments: ClassVar[Mapping[str, Any]] = {}

    @classmethod
    def model_validate(cls, obj: Any, **options: Any) -> McpGrant:  # type: ignore[override]
        if isinstance(obj, cls):
            return obj
        if not isinstance(obj, Mapping):
            raise schema_error(cls.__name__, [((), "a grant is a table of arguments", obj)])
        problems: list[tuple[tuple[str | int, ...], str, Any]] = []
        parsed: dict[str, Constraint] = {}
        for name, raw in obj.items():
            if name not in cls.arguments:
                from meshagent.actions import closest

                hint = closest(str(name), cls.arguments)
                problems.append(
                    (
                        (name,),
                        f"{cls.tool_name} has no argument {name!r}"
                        + (f"; did you mean {hint!r}?" if hint else "")
                        + f" (arguments: {', '.join(cls.arguments) or 'none'})",
                        raw,
                    )
                )
                continue
            try:
                parsed[name] = Constraint.parse(raw)
            except ValueError as exc:
                problems.append(((name,), str(exc), raw))
        if problems:
            raise schema_error(cls.__name__, problems)
        return cls.model_construct(**parsed)

    @classmethod
    def model_json_schema(cls, *args: Any, **kwargs: Any) -> dict[str, Any]:  # type: ignore[override]
        constraint = {
            "anyOf": [
                {"type": "array", "description": "the values the argument may take"},
                {
                    "type": "object",
                    "properties": {
                        "one_of": {"type": "array"},
                        "prefix": {"anyOf": [{"type": "string"}, {"type": "array"}]},
                        "pattern": {"type": "string"},
                    },
                    "additionalProperties": False,
                },
                {"type": ["string", "number", "boolean"], "description": "the one value"},
            ]
        }
        properties = {
            name: {**constraint, "description": f"what {name} may be"} for name in cls.arguments
        }
        return {"type": "object", "properties": properties, "additionalProperties": False}

    @property
    def constraints(self) -> dict[str, Constraint]:
        return dict(self.__pydantic_extra__ or {})


def grant_model(tool: str, arguments: Mapping[str, Any]) -> type[McpGrant]:
    """The grant model of ``tool``, whose arguments are ``arguments`` (the schema's properties)."""
    return type(
        f"{tool}Grant",
        (McpGrant,),
        {"tool_name": tool, "arguments": dict(arguments), "__module__": __name__},
    )


def check_grant(args: Any, grant: Any) -> str | None:
    """The scope check of an MCP tool: every constrained argument given and inside its
    constraint (read from the parsed arguments)."""
    if not isinstance(grant, McpGrant):
        return None
    given = args.model_dump() if isinstance(args, BaseModel) else dict(args)
    for name, constraint in grant.constraints.items():
        if name not in given:
            return f"{name}: the grant constrains it, so it must be given"
        reason = constraint.check(name, given[name])
        if reason is not None:
            return reason
    return None
