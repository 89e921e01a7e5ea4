"""``mcp.lock.json``: the tools each MCP server offered, committed beside the agent files.

``meshagent mcp refresh`` asks every server for its tools and writes them here (name,
description, input schema, annotations, by server), so that ``validate``, ``schema`` and the
loader know every ``NAME.TOOL`` without starting a server: CI validates offline. A refresh
against a server that changed says what changed (``changes``).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from meshagent.exceptions import ConfigError

__all__ = ["LOCK_FILENAME", "Lock", "LockedTool", "changes", "find_lock", "read_lock"]

LOCK_FILENAME = "mcp.lock.json"
LOCK_VERSION = 1


@dataclass(frozen=True)
class LockedTool:
    """One tool as its server described it."""

    name: str
    description: str = ""
    input_schema: Mapping[str, Any] = field(default_factory=dict)
    annotations: Mapping[str, Any] = field(default_factory=dict)

    @property
    def read_only_hint(self) -> bool | None:
        """The tool's readOnlyHint; a tool that says it is both read-only and destructive is
        taken at its worse word (False)."""
        hint = self.annotations.get("readOnlyHint")
        if hint is True and self.annotations.get("destructiveHint") is True:
            return False
        return hint if isinstance(hint, bool) else None

    def as_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "inputSchema": dict(self.input_schema),
            "annotations": dict(self.annotations),
        }


@dataclass
class Lock:
    """Servers by name, each with its tools by name."""

    servers: dict[str, dict[str, LockedTool]] = field(default_factory=dict)
    path: Path | None = None

    def text(self) -> str:
        servers = {
            name: {"tools": [tool.as_json() for _, tool in sorted(tools.items())]}
            for name, tools in sorted(self.servers.items())
        }
        body = {"version": LOCK_VERSION, "servers": servers}
        return json.dumps(body, indent=2, sort_keys=True, ensure_ascii=False) + "\n"

    def write(self, path: Path) -> None:
        path.write_text(self.text(), encoding="utf-8")
        self.path = path


def find_lock(start: Path) -> Path | None:
    """The lock in ``start`` (a directory, or a file's directory) or the nearest one above."""
    start = start.absolute()
    directory = start if start.is_dir() else start.parent
    for candidate in (directory, *directory.parents):
        if (candidate / LOCK_FILENAME).is_file():
            return candidate / LOCK_FILENAME
    return None


def read_lock(path: Path) -> Lock:
    """The lock at ``path``; ConfigError naming the file and what is wrong with it."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read: {exc.strerror}", source=str(path)) from None
    except ValueError as exc:
        line = getattr(exc, "lineno", None)
        raise ConfigError(
            f"not valid JSON ({exc}); run `meshagent mcp refresh` to write it again",
            source=str(path),
            line=line,
        ) from None
    servers = data.get("servers") if isinstance(data, dict) else None
    if not isinstance(servers, dict) or data.get("version") != LOCK_VERSION:
        raise ConfigError(
            f"not an MCP lock of version {LOCK_VERSION}; run `meshagent mcp refresh`",
            source=str(path),
        )
    lock = Lock(path=path)
    for name, server in servers.items():
        tools = server.get("tools") if isinstance(server, dict) else None
        if not isinstance(tools, list):
            raise ConfigError(f"server {name!r} has no list of tools", source=str(path))
        lock.servers[name] = {}
        for tool in tools:
            if not isinstance(tool, dict) or not isinstance(tool.get("name"), str):
                raise ConfigError(f"server {name!r}: a tool without a name", source=str(path))
            lock.servers[name][tool["name"]] = LockedTool(
                tool["name"],
                str(tool.get("description") or ""),
                dict(tool.get("inputSchema") or {}),
                dict(tool.get("annotations") or {}),
            )
    return lock


def changes(old: Lock | None, new: Lock, servers: Iterable[str] | None = None) -> list[str]:
    """What ``new`` changes of ``old``, one line each (``servers``: only those are compared)."""
    lines: list[str] = []
    before = old.servers if old is not None else {}
    names = sorted(set(servers) if servers is not None else set(before) | set(new.servers))
    for server in names:
        was, now = before.get(server), new.servers.get(server)
        if was is None and now is not None:
            lines.append(f"+ {server}: new server, {len(now)} tools ({', '.join(sorted(now))})")
            continue
        if now is None:
            lines.append(f"- {server}: server removed")
            continue
        for tool in sorted(set(was) | set(now)):
            a, b = was.get(tool), now.get(tool)
            if a is None:
                lines.append(f"+ {server}.{tool}: new tool")
            elif b is None:
                lines.append(f"- {server}.{tool}: tool removed")
            else:
                lines.extend(f"~ {server}.{tool}: {what}" for what in _differences(a, b))
    return lines


def _differences(a: LockedTool, b: LockedTool) -> list[str]:
    found = []
    if a.description != b.description:  # what the model reads: shown, as a changed tool may lie
        found.append(f"description changed: {_cut(a.description)} -> {_cut(b.description)}")
    old_props = dict(a.input_schema.get("properties") or {})
    new_props = dict(b.input_schema.get("properties") or {})
    for arg in sorted(set(old_props) | set(new_props)):
        if arg not in new_props:
            found.append(f"argument {arg} removed")
        elif arg not in old_props:
            found.append(f"argument {arg} added")
        elif old_props[arg] != new_props[arg]:
            found.append(f"argument {arg} changed")
    if sorted(a.input_schema.get("required") or []) != sorted(b.input_schema.get("required") or []):
        found.append(
            f"required arguments {sorted(a.input_schema.get('required') or [])} -> "
            f"{sorted(b.input_schema.get('required') or [])}"
        )
    rest = ("properties", "required")
    if {k: v for k, v in a.input_schema.items() if k not in rest} != {
        k: v for k, v in b.input_schema.items() if k not in rest
    }:
        found.append("input schema changed")
    if a.annotations != b.annotations:
        found.append(f"annotations {dict(a.annotations)} -> {dict(b.annotations)}")
    return found


def _cut(text: str, size: int = 80) -> str:
    text = " ".join(text.split())
    return repr(text if len(text) <= size else text[: size - 3] + "...")
