"""Agent YAML files to validated specs, every problem located as file:line:column and field path.

Safe loading only. Files over 1 MiB, alias bombs, duplicate keys and documents that are not a
single mapping are refused. All problems of all files are reported together in one SpecError.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from meshagent.actions import Registry, default_registry
from meshagent.agentfile.checks import SECTIONS, check_agent, describe_error
from meshagent.agentfile.spec import TRIGGER_TAGS, AgentSpec
from meshagent.exceptions import ConfigError, SpecError, SpecIssue

__all__ = [
    "MAX_FILE_BYTES",
    "MAX_NODES",
    "LoadResult",
    "agent_files",
    "files_for_agent",
    "format_path",
    "load_agent",
    "load_agents",
    "parse_agent",
    "scan_agents",
]

MAX_FILE_BYTES = 1024 * 1024
#: Nodes one file may expand to, aliases counted each time they are used: stops alias bombs.
MAX_NODES = 50_000

_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_STR = "tag:yaml.org,2002:str"
YamlPath = tuple[str | int, ...]


class _Refused(Exception):
    def __init__(self, mark: yaml.Mark | None, message: str, path: YamlPath = ()):
        self.mark = mark
        self.message = message
        self.path = path


@dataclass
class _Document:
    data: dict[str, Any]
    values: dict[YamlPath, yaml.Mark] = field(default_factory=dict)
    keys: dict[YamlPath, yaml.Mark] = field(default_factory=dict)


@dataclass
class LoadResult:
    """Agents that loaded, and every problem found (in files that did not load)."""

    agents: list[AgentSpec] = field(default_factory=list)
    issues: list[SpecIssue] = field(default_factory=list)
    files: int = 0

    def raise_for_issues(self) -> None:
        if self.issues:
            raise SpecError(self.issues)


def format_path(path: YamlPath) -> str:
    """('triggers', 0, 'schedule') -> 'triggers[0].schedule'."""
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _compose(text: str) -> yaml.Node | None:
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
    finally:
        loader.dispose()
    return node


class _Builder:
    """Builds plain Python data from YAML nodes, remembering where every value stood."""

    def __init__(self) -> None:
        self.constructor = yaml.constructor.SafeConstructor()
        self.document = _Document(data={})
        self.count = 0
        self.active: set[int] = set()

    def build(self, node: yaml.Node, path: YamlPath) -> Any:
        self.count += 1
        if self.count > MAX_NODES:
            raise _Refused(
                node.start_mark,
                f"the file expands to more than {MAX_NODES} YAML nodes "
                "(aliases expanding into each other?); refused",
            )
        self.document.values.setdefault(path, node.start_mark)
        if isinstance(node, yaml.ScalarNode):
            return self._scalar(node)
        if id(node) in self.active:
            raise _Refused(node.start_mark, "an alias refers to its own ancestor; refused", path)
        self.active.add(id(node))
        try:
            if isinstance(node, yaml.SequenceNode):
                return [self.build(item, path + (i,)) for i, item in enumerate(node.value)]
            return self._mapping(node, path)
        finally:
            self.active.discard(id(node))

    def _scalar(self, node: yaml.ScalarNode) -> Any:
        if node.tag == _STR:  # most values: skip the constructor's generic dispatch
            return node.value
        return self.constructor.construct_object(node, deep=True)

    def _mapping(self, node: yaml.MappingNode, path: YamlPath) -> dict[Any, Any]:
        self.constructor.flatten_mapping(node)
        result: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                raise _Refused(key_node.start_mark, "a mapping key must be a plain value", path)
            key = self._scalar(key_node)
            if not isinstance(key, str | int | bool | float) or key is None:
                key = str(key)
            if key in result:
                first = self.document.keys[path + (key,)]
                raise _Refused(
                    key_node.start_mark,
                    f"duplicate key {key!r} (first at line {first.line + 1})",
                    path + (key,),
                )
            self.document.keys[path + (key,)] = key_node.start_mark
            result[key] = self.build(value_node, path + (key,))
        return result


def _yaml_problem(exc: yaml.MarkedYAMLError) -> tuple[Any, str]:
    """Where a YAML error starts, and what it is. An unclosed quote or bracket is only noticed
    lines later (often at the end of the file): it is located where it was opened."""
    problem, context = exc.problem_mark, exc.context_mark
    detail = " ".join(p for p in (exc.context, exc.problem) if p) or str(exc)
    if "but found another document" in detail:
        return problem or context, "a file holds one agent: found a second YAML document"
    if problem is None or context is None or context.line >= problem.line:
        return problem or context, detail
    where = f"line {problem.line + 1}, column {problem.column + 1}"
    if "quoted scalar" in (exc.context or ""):
        found = "the end of the file" if "end of stream" in (exc.problem or "") else where
        return context, f"a quoted string opens here and is never closed (read up to {found})"
    return context, f"{detail} (noticed at {where})"


def _read(text: str) -> _Document:
    try:
        node = _compose(text)
    except yaml.MarkedYAMLError as exc:
        mark, detail = _yaml_problem(exc)
        raise _Refused(mark, f"invalid YAML: {detail}") from None
    except yaml.YAMLError as exc:
        raise _Refused(None, f"invalid YAML: {exc}") from None
    if node is None:
        raise _Refused(None, "the file is empty: an agent file is a mapping of fields")
    if not isinstance(node, yaml.MappingNode):
        kind = "a list" if isinstance(node, yaml.SequenceNode) else "a single value"
        raise _Refused(
            node.start_mark, f"the document is {kind}: an agent file is a mapping of fields"
        )
    builder = _Builder()
    try:
        builder.document.data = builder.build(node, ())
    except yaml.constructor.ConstructorError as exc:
        raise _Refused(exc.problem_mark, f"invalid YAML: {exc.problem}") from None
    except RecursionError:
        raise _Refused(node.start_mark, "the YAML nests too deeply; refused") from None
    return builder.document


def _yaml_path(loc: tuple[Any, ...], data: Mapping[str, Any]) -> YamlPath:
    """A pydantic error location in the terms of the YAML file."""
    path = list(loc)
    if len(path) > 2 and path[0] == "triggers" and path[2] in TRIGGER_TAGS:
        del path[2]
    if len(path) > 2 and path[0] in SECTIONS and path[2] in ("action", "params"):
        item = data.get(path[0], [])[path[1]] if isinstance(path[1], int) else None
        if path[2] == "params" and isinstance(item, dict) and len(item) == 1:
            path[2] = next(iter(item))
        else:
            del path[2:]
    return tuple(path)


def _locate(
    filename: str, document: _Document, path: YamlPath, message: str, *, key: bool = False
) -> SpecIssue:
    found = path
    while found and found not in document.values:
        found = found[:-1]
    marks = document.keys if key and found == path and path in document.keys else document.values
    mark = marks.get(found)
    line, column = (mark.line + 1, mark.column + 1) if mark else (1, 1)
    return SpecIssue(filename, line, column, format_path(path), message)


def _parse(
    text: str,
    filename: str,
    *,
    registry: Registry,
    value_tags: Iterable[str] | None,
    env: Mapping[str, str],
    min_interval_seconds: float | None = None,
) -> tuple[AgentSpec | None, list[SpecIssue], _Document | None]:
    try:
        document = _read(text)
    except _Refused as refused:
        mark = refused.mark
        line, column = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        issue = SpecIssue(filename, line, column, format_path(refused.path), refused.message)
        return None, [issue], None
    context = {"value_tags": tuple(value_tags) if value_tags is not None else None}
    try:
        spec = AgentSpec.model_validate(document.data, context=context)
    except ValidationError as exc:
        issues = []
        for err in exc.errors():
            path = _yaml_path(err["loc"], document.data)
            message = describe_error({**err, "loc": path}, AgentSpec, document.data)
            key = err["type"] == "extra_forbidden"
            issues.append(_locate(filename, document, path, message, key=key))
        return None, issues, document
    problems = check_agent(
        spec,
        document.data,
        registry=registry,
        env=env,
        scan_env="${" in text,
        min_interval_seconds=min_interval_seconds,
    )
    issues = [_locate(filename, document, p.path, p.message, key=p.at_key) for p in problems]
    return (None if issues else spec), issues, document


def agent_files(paths: str | Path | Iterable[str | Path]) -> list[Path]:
    """Every *.yaml / *.yml file named or below a named directory (hidden ones skipped)."""
    if isinstance(paths, str | Path):
        paths = [paths]
    files: list[Path] = []
    for path in map(Path, paths):
        if path.is_dir():
            found = [*path.rglob("*.yaml"), *path.rglob("*.yml")]
            files.extend(
                sorted(
                    f
                    for f in found
                    if not any(p.startswith(".") for p in f.relative_to(path).parts)
                )
            )
        else:
            files.append(path)
    return files


def files_for_agent(
    paths: str | Path | Iterable[str | Path], name: str, commands: Iterable[str] = ()
) -> list[Path]:
    """The agent files under ``paths`` that can define the agent ``name`` or take one of its
    slash ``commands`` first, in the order `scan_agents` reads them: the one named after it and
    those whose text holds the name or a command (or a backslash, behind which YAML can spell
    them otherwise). Scanning just these finds the agent that scanning them all would, without
    parsing and checking every other agent file (issue 20)."""
    words = (name, *commands, "\\")
    found = []
    for path in agent_files(paths):
        try:  # a file too large or unreadable is kept: scan_agents says why
            small = path.stat().st_size <= MAX_FILE_BYTES
            text = path.read_text(encoding="utf-8", errors="replace") if small else name
        except OSError:
            text = name
        if path.stem == name or any(word in text for word in words):
            found.append(path)
    return found


def scan_agents(
    paths: str | Path | Iterable[str | Path],
    *,
    registry: Registry | None = None,
    value_tags: Iterable[str] | None = None,
    env: Mapping[str, str] | None = None,
    min_interval_seconds: float | None = None,
) -> LoadResult:
    """Load every agent file under ``paths``; what fails is reported, the rest still loads.

    ``min_interval_seconds`` is ``[serve] min_interval_seconds`` (None: its default, 60)."""
    env = os.environ if env is None else env
    tags = tuple(value_tags) if value_tags is not None else None
    result = LoadResult()
    seen_names: dict[str, SpecIssue] = {}
    seen_commands: dict[str, SpecIssue] = {}
    for path in agent_files(paths):
        result.files += 1
        filename = str(path)
        text = _read_file(path, filename, result)
        if text is None:
            continue
        try:
            near = registry or _registry_near(path)
        except ConfigError as exc:  # the MCP lock beside the file cannot be read
            result.issues.append(
                SpecIssue(exc.source or filename, exc.line or 0, 0, "", exc.detail)
            )
            continue
        spec, issues, document = _parse(
            text,
            filename,
            registry=near,
            value_tags=tags,
            env=env,
            min_interval_seconds=min_interval_seconds,
        )
        if spec is not None and document is not None:
            issues = _check_unique(spec, filename, document, seen_names, seen_commands)
        result.issues.extend(issues)
        if spec is not None and not issues:
            spec._source = path
            result.agents.append(spec)
    if not result.files:
        names = ", ".join(str(p) for p in ([paths] if isinstance(paths, str | Path) else paths))
        result.issues.append(SpecIssue(names or ".", 0, 0, "", "no agent files (*.yaml) found"))
    return result


def _registry_near(path: Path) -> Registry:
    """The installed connectors and the MCP tools of the lock beside ``path`` (or above it)."""
    from meshagent.mcp.tools import registry_near

    return registry_near(path, None, default_registry())


def _read_file(path: Path, filename: str, result: LoadResult) -> str | None:
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            message = f"the file is {size} bytes; agent files are limited to {MAX_FILE_BYTES}"
            result.issues.append(SpecIssue(filename, 0, 0, "", message))
            return None
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        result.issues.append(SpecIssue(filename, 0, 0, "", "no such file"))
    except UnicodeDecodeError as exc:
        message = f"not UTF-8 text (byte {exc.start})"
        result.issues.append(SpecIssue(filename, 0, 0, "", message))
    except OSError as exc:
        result.issues.append(SpecIssue(filename, 0, 0, "", f"cannot read: {exc.strerror}"))
    return None


def _check_unique(
    spec: AgentSpec,
    filename: str,
    document: _Document,
    names: dict[str, SpecIssue],
    commands: dict[str, SpecIssue],
) -> list[SpecIssue]:
    issues = []
    here = _locate(filename, document, ("name",), "")
    if spec.name in names:
        first = names[spec.name]
        message = (
            f"duplicate agent name {spec.name!r}: also defined at "
            f"{first.file}:{first.line}:{first.column}"
        )
        issues.append(_locate(filename, document, ("name",), message))
    else:
        names[spec.name] = here
    for index, trigger in enumerate(spec.triggers):
        command = getattr(trigger, "slash", None)
        if command is None:
            continue
        where = _locate(filename, document, ("triggers", index, "slash"), "")
        if command in commands:
            first = commands[command]
            message = (
                f"slash command {command!r} is already taken at "
                f"{first.file}:{first.line}:{first.column}"
            )
            issues.append(_locate(filename, document, ("triggers", index, "slash"), message))
        else:
            commands[command] = where
    return issues


def load_agents(
    paths: str | Path | Iterable[str | Path],
    *,
    registry: Registry | None = None,
    value_tags: Iterable[str] | None = None,
    env: Mapping[str, str] | None = None,
    min_interval_seconds: float | None = None,
) -> list[AgentSpec]:
    """Every agent under ``paths``; raises SpecError listing all problems of all files."""
    result = scan_agents(
        paths,
        registry=registry,
        value_tags=value_tags,
        env=env,
        min_interval_seconds=min_interval_seconds,
    )
    result.raise_for_issues()
    return result.agents


def load_agent(path: str | Path, **options: Any) -> AgentSpec:
    """One agent file; raises SpecError with every problem in it."""
    (spec,) = load_agents([Path(path)], **options)
    return spec


def parse_agent(
    text: str,
    *,
    filename: str = "<string>",
    registry: Registry | None = None,
    value_tags: Iterable[str] | None = None,
    env: Mapping[str, str] | None = None,
    min_interval_seconds: float | None = None,
) -> AgentSpec:
    """One agent from YAML text; raises SpecError with every problem in it."""
    if len(text.encode()) > MAX_FILE_BYTES:
        raise SpecError(
            [SpecIssue(filename, 0, 0, "", f"agent files are limited to {MAX_FILE_BYTES} bytes")]
        )
    spec, issues, _ = _parse(
        text,
        filename,
        registry=registry or default_registry(),
        value_tags=value_tags,
        env=os.environ if env is None else env,
        min_interval_seconds=min_interval_seconds,
    )
    if issues or spec is None:
        raise SpecError(issues)
    return spec
