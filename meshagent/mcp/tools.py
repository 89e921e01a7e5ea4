"""Each locked MCP tool as an ``Action`` named ``SERVER.TOOL``, and the registry that holds them.

The arguments of a tool are checked against its own input schema (JSON Schema, the schema is
closed: an argument it does not name is refused, never sent), its grant against its arguments
(``meshagent.mcp.grants``). Its kind comes from ``[mcp.NAME] read``/``write``, else from its
``readOnlyHint``; a tool without one is a write. The call itself is ``meshagent.mcp.calls``.
"""

from __future__ import annotations

import keyword
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from pydantic import ConfigDict

from meshagent.actions import PLACEHOLDERS, Action, ActionArgs, ActionKind, Connector, Registry
from meshagent.config.mcp import McpServerSettings
from meshagent.exceptions import ConfigError, RegistryError
from meshagent.mcp.grants import check_grant, grant_model, json_type, schema_error
from meshagent.mcp.lock import LOCK_FILENAME, Lock, LockedTool, find_lock, read_lock

__all__ = [
    "McpAction",
    "McpArgs",
    "McpRegistry",
    "mcp_connector",
    "project_registry",
    "registry_near",
]

#: A tool name that can be an action's second half and a LangChain tool name.
TOOL_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,63}")
_JSON_TYPES = {
    "string": "text",
    "integer": "an integer",
    "number": "a number",
    "boolean": "a boolean",
    "array": "a list",
    "object": "an object",
    "null": "null",
}


class McpArgs(ActionArgs):
    """The arguments of one MCP tool, validated against the tool's input schema."""

    model_config = ConfigDict(extra="allow", frozen=True)
    input_schema: ClassVar[Mapping[str, Any]] = {}
    tool_name: ClassVar[str] = ""

    @classmethod
    def model_validate(cls, obj: Any, **options: Any) -> McpArgs:  # type: ignore[override]
        if isinstance(obj, cls):
            return obj
        if not isinstance(obj, Mapping):
            raise schema_error(cls.__name__, [((), f"{json_type(obj)}, not an object", obj)])
        context = options.get("context") or {}
        placeholders = bool(context.get(PLACEHOLDERS))
        problems = _problems(cls.input_schema, dict(obj), placeholders)
        if problems:
            raise schema_error(cls.__name__, problems)
        return cls.model_construct(**dict(obj))

    @classmethod
    def model_json_schema(cls, *args: Any, **kwargs: Any) -> dict[str, Any]:  # type: ignore[override]
        schema = dict(cls.input_schema)
        schema.setdefault("type", "object")
        schema["additionalProperties"] = False
        template = kwargs.get("ref_template")
        if template and "$defs" in schema:
            schema = _retarget(schema, template)
        return schema


def _retarget(value: Any, template: str) -> Any:
    if isinstance(value, dict):
        out = {k: _retarget(v, template) for k, v in value.items()}
        ref = out.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/"):
            out["$ref"] = template.format(model=ref.removeprefix("#/$defs/"))
        return out
    if isinstance(value, list):
        return [_retarget(v, template) for v in value]
    return value


def _problems(
    schema: Mapping[str, Any], given: dict[str, Any], placeholders: bool
) -> list[tuple[tuple[str | int, ...], str, Any]]:
    from jsonschema import Draft202012Validator

    properties = schema.get("properties") or {}
    problems: list[tuple[tuple[str | int, ...], str, Any]] = []
    for name in given:
        if name not in properties:
            known = ", ".join(properties) or "none"
            problems.append(((name,), f"not an argument of this tool (arguments: {known})", None))
    if placeholders:  # an agent file's {{answer}} / {{input}}: checked once filled in
        filled = {k for k, v in given.items() if isinstance(v, str) and "{{" in v}
        given = {k: v for k, v in given.items() if k not in filled}
        required = [r for r in schema.get("required") or [] if r not in filled]
        schema = {**schema, "required": required}
    validator = Draft202012Validator(dict(schema))
    for error in sorted(validator.iter_errors(given), key=lambda e: list(e.absolute_path)):
        where = tuple(error.absolute_path)
        if error.validator == "additionalProperties" and not where:
            continue  # said above, by name
        problems.append((where, _message(error), None))
    return problems


def _message(error: Any) -> str:
    """A JSON Schema error in words that do not repeat the value (it may hold a secret)."""
    kind, expected = error.validator, error.validator_value
    if kind == "type":
        names = [expected] if isinstance(expected, str) else list(expected)
        wanted = " or ".join(_JSON_TYPES.get(n, n) for n in names)
        return f"expected {wanted}, got {json_type(error.instance)}"
    if kind == "required":
        missing = error.message.split("'")[1] if "'" in error.message else "an argument"
        return f"required argument {missing!r} is missing"
    if kind in ("enum", "const"):
        return "not one of the values the tool takes"
    if kind in ("minLength", "maxLength", "minimum", "maximum", "pattern", "format"):
        return f"fails the tool's {kind} {expected!r}"
    return f"fails the tool's schema ({kind})"


@dataclass(frozen=True)
class McpAction(Action):
    """An action that is a tool of an MCP server."""

    server: str = ""
    tool: str = ""
    #: Under deliver, the agent file names the argument that receives the answer with
    #: ``{{answer}}`` (a tool has no answer field of its own).
    answer_placeholder: bool = True


def _action(server: str, tool: LockedTool, kind: str) -> McpAction:
    from meshagent.mcp.calls import handler_for

    schema = dict(tool.input_schema) or {"type": "object", "properties": {}}
    base = re.sub(r"\W", "_", f"{server}_{tool.name}")
    if keyword.iskeyword(base):
        base += "_"
    args = type(
        f"{base}Args",
        (McpArgs,),
        {"input_schema": schema, "tool_name": tool.name, "__module__": __name__},
    )
    name = f"{server}.{tool.name}"
    description = (tool.description or f"{tool.name} of the MCP server {server}").strip()
    return McpAction(
        name=name,
        kind=ActionKind(kind),
        description=description[:1000],
        args=args,
        grant=grant_model(name, schema.get("properties") or {}),
        handler=handler_for(server, tool.name, kind),
        scope=check_grant,
        server=server,
        tool=tool.name,
    )


def _missing(context: Any, action: Action) -> str | None:
    """What a run lacks to reach ``action``'s server: its [mcp.NAME], or variables it names."""
    server = action.connector
    if not context.settings:
        return f"declare the server in meshagent.toml: [mcp.{server}] with command or url"
    settings = McpServerSettings.model_validate(context.settings)
    if context.dry_run and action.kind == ActionKind.WRITE:
        return None
    wanted = [settings.url_env] if settings.url_env else []
    wanted += list(settings.headers_env.values())
    unset = [name for name in wanted if not context.env.get(name)]
    return f"set {' and '.join(unset)} ([mcp.{server}])" if unset else None


def mcp_connector(server: str, tools: Mapping[str, LockedTool], settings: Any) -> Connector:
    """The connector of one locked server; ``settings`` its [mcp.NAME] (None: not declared)."""
    actions = []
    for tool in sorted(tools.values(), key=lambda t: t.name):
        if not TOOL_NAME.fullmatch(tool.name):
            continue  # not nameable as SERVER.TOOL (the refresh said so)
        kind = (
            settings.kind_of(tool.name, tool.read_only_hint)
            if settings is not None
            else ("read" if tool.read_only_hint is True else "write")
        )
        actions.append(_action(server, tool, kind))
    return Connector(server, f"the MCP server {server}", tuple(actions), missing=_missing)


class McpRegistry(Registry):
    """The built-in registry with the locked MCP tools; an unknown MCP name says what to do."""

    def __init__(self, lock: Lock | None, declared: Mapping[str, Any]) -> None:
        super().__init__()
        self.lock = lock
        self.declared = dict(declared)

    def unknown_message(self, name: str, kind: ActionKind | None = None) -> str:
        message = super().unknown_message(name, kind)
        server = name.partition(".")[0]
        locked = self.lock.servers if self.lock is not None else {}
        if server in self.declared and server not in locked:
            where = self.lock.path if self.lock is not None else LOCK_FILENAME
            return (
                f"{message}; the MCP server {server} has no tools in {where}: run "
                "`meshagent mcp refresh`"
            )
        if server in locked:
            return f"{message}; if the server {server} has it now, run `meshagent mcp refresh`"
        return message


_CACHE: dict[Any, McpRegistry] = {}


def registry_for(
    lock_path: Path | None, declared: Mapping[str, McpServerSettings], base: Registry
) -> Registry:
    """``base`` with the tools of the lock at ``lock_path`` (cached while the file is unchanged)."""
    if lock_path is None and not declared:
        return base
    stamp = None
    if lock_path is not None:
        stat = lock_path.stat()
        stamp = (str(lock_path), stat.st_mtime_ns, stat.st_size)
    key = (stamp, tuple(sorted((k, v.model_dump_json()) for k, v in declared.items())), id(base))
    found = _CACHE.get(key)
    if found is not None:
        return found
    lock = read_lock(lock_path) if lock_path is not None else None
    registry = McpRegistry(lock, declared)
    for name, connector in base.connectors.items():
        registry.register(connector, source=_source(base, name))
    for server, tools in (lock.servers if lock is not None else {}).items():
        connector = mcp_connector(server, tools, declared.get(server))
        try:
            registry.register(connector, source=f"{lock_path} (MCP server {server})")
        except RegistryError as exc:
            raise ConfigError(
                f"the MCP server name {server!r} is taken by a connector: rename [mcp.{server}] "
                f"and run `meshagent mcp refresh` ({exc})",
                source=str(lock_path),
            ) from None
    if len(_CACHE) > 32:
        _CACHE.clear()
    _CACHE[key] = registry
    return registry


def _source(registry: Registry, name: str) -> str:
    found = getattr(registry, "_connectors", {}).get(name)
    return found[1] if found else "<code>"


def project_registry(config: Any, base: Registry | None = None) -> Registry:
    """The registry of a project: the installed connectors, and the MCP tools of the lock in
    its agents directory (or above it)."""
    from meshagent.actions import default_registry

    base = base or default_registry()
    declared = getattr(config, "mcp", None) or {}
    agents_dir = Path(config.agents_dir)
    lock_path = find_lock(agents_dir) if agents_dir.exists() else None
    return registry_for(lock_path, declared, base)


def registry_near(path: Path, config: Any = None, base: Registry | None = None) -> Registry:
    """The installed connectors and the MCP tools of the lock beside ``path`` (an agent file or
    a directory) or above it, kinds as ``config``'s [mcp] says."""
    from meshagent.actions import default_registry

    declared = getattr(config, "mcp", None) or {}
    return registry_for(find_lock(path), declared, base or default_registry())


def lock_path_for(config: Any) -> Path:
    """Where ``meshagent mcp refresh`` writes the lock of ``config``'s project."""
    agents_dir = Path(config.agents_dir)
    found = find_lock(agents_dir) if agents_dir.exists() else None
    return found or agents_dir / LOCK_FILENAME
