"""``meshagent mcp refresh``: ask each declared server for its tools and lock them.

Every server of ``[mcp]`` is started (or reached), listed page by page, and stopped; the lock is
written only when every server answered, so a server that is down never empties its part of the
lock. What changed against the lock already there is returned line by line.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from meshagent.exceptions import ConfigError
from meshagent.mcp.connection import McpConnection, McpUnavailable, list_tools
from meshagent.mcp.lock import Lock, LockedTool, changes, read_lock
from meshagent.mcp.tools import TOOL_NAME, lock_path_for

__all__ = ["Refreshed", "refresh"]


@dataclass
class Refreshed:
    """What a refresh found: the new lock, its changes, notes, and the servers that failed."""

    lock: Lock
    path: Path
    changes: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    written: bool = False


async def refresh(config: Any, env: Mapping[str, str], *, write: bool = True) -> Refreshed:
    """Lock the tools of every server of ``config.mcp``; ``write=False`` only compares."""
    path = lock_path_for(config)
    old = read_lock(path) if path.is_file() else None
    if not config.mcp:
        raise ConfigError(
            "no MCP servers are declared: add [mcp.NAME] with command or url to meshagent.toml",
            source=str(config.source) if config.source else None,
        )
    found = Refreshed(Lock(), path)
    for name, settings in sorted(config.mcp.items()):
        connection = McpConnection(name, settings, env, cwd=config.root)
        try:
            tools = await list_tools(connection)
        except McpUnavailable as exc:
            found.failures.append(str(exc))
            continue
        except Exception as exc:  # noqa: BLE001 - a server that answers nonsense
            found.failures.append(f"{connection.where}: listing its tools failed: {exc}")
            continue
        finally:
            await connection.aclose()
        locked: dict[str, LockedTool] = {}
        for tool in tools:
            if not TOOL_NAME.fullmatch(tool.name):
                found.notes.append(
                    f"{name}: tool {tool.name!r} left out: its name is not letters, digits, "
                    "_ and - (at most 64)"
                )
                continue
            annotations = tool.annotations.model_dump(by_alias=True, exclude_none=True) if (
                tool.annotations is not None
            ) else {}  # fmt: skip
            locked[tool.name] = LockedTool(
                tool.name, tool.description or "", dict(tool.input_schema or {}), annotations
            )
        for listed in (*settings.read, *settings.write):
            if listed not in locked:
                found.notes.append(
                    f"[mcp.{name}] names {listed!r} under read/write, but the server has no "
                    f"such tool (tools: {', '.join(sorted(locked)) or 'none'})"
                )
        found.lock.servers[name] = locked
    found.changes = changes(old, found.lock)
    if write and not found.failures:
        path.parent.mkdir(parents=True, exist_ok=True)
        found.lock.write(path)
        found.written = True
    return found
