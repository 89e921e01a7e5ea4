"""A real MCP server written with the SDK, for the tests: run as a script it serves stdio.

Its tools: ``lookup`` (read-only), ``write_note`` (no annotations: a write), ``file_note``
(read-only false, destructive: takes a path), ``env_names`` (the variables it was started with),
``fail`` (answers an error), ``big`` (a large answer), ``slow`` (sleeps), ``crash`` (exits the
process). With ``TEST_MCP_VARIANT=2`` its tools differ (``lookup`` described anew, ``extra``
added, ``big`` gone), as a server that changed would. Every call is appended to the file named
by ``TEST_MCP_CALLS`` (when set), so a test sees what reached the server.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from typing import Any


def build(variant: str = "1", calls_file: str | None = None) -> Any:
    from mcp.server import MCPServer
    from mcp_types import ToolAnnotations

    root = logging.getLogger()
    guard = logging.NullHandler()
    root.addHandler(guard)  # MCPServer would set up the root logger of the test process
    try:
        server = MCPServer("test-tools")
    finally:
        root.removeHandler(guard)

    def record(name: str, arguments: dict[str, Any]) -> None:
        if calls_file:
            with open(calls_file, "a", encoding="utf-8") as out:
                out.write(json.dumps([name, arguments]) + "\n")

    described = "Look up a record by its id." if variant == "1" else "Look up one record by id."

    @server.tool(description=described, annotations=ToolAnnotations(read_only_hint=True))
    def lookup(record_id: str) -> dict[str, Any]:
        record("lookup", {"record_id": record_id})
        return {"id": record_id, "status": "open", "url": f"https://tracker.example/r/{record_id}"}

    @server.tool()
    def write_note(space: str, title: str, body: str, count: int = 1) -> dict[str, Any]:
        """Write a note into a space."""
        record("write_note", {"space": space, "title": title, "body": body, "count": count})
        return {"id": f"{space}-{title}"[:40], "link": f"https://notes.example/{space}/1"}

    @server.tool(annotations=ToolAnnotations(read_only_hint=False, destructive_hint=True))
    def file_note(path: str, text: str) -> str:
        """Write text to a file path in the notes store."""
        record("file_note", {"path": path, "text": text})
        return f"wrote {path}"

    @server.tool(annotations=ToolAnnotations(read_only_hint=True))
    def env_names() -> list[str]:
        """The environment variables the server was started with."""
        return sorted(os.environ)

    @server.tool(annotations=ToolAnnotations(read_only_hint=True))
    def fail(reason: str) -> str:
        """Always fails."""
        raise ValueError(f"cannot do it: {reason}")

    if variant == "1":

        @server.tool(annotations=ToolAnnotations(read_only_hint=True))
        def big(size: int) -> str:
            """A long answer."""
            return "x" * size

    else:

        @server.tool(annotations=ToolAnnotations(read_only_hint=True))
        def extra(query: str) -> str:
            """A tool added later."""
            return query

    @server.tool(annotations=ToolAnnotations(read_only_hint=True))
    def slow(seconds: float) -> str:
        """Answers after a while."""
        time.sleep(seconds)
        return "late"

    @server.tool(annotations=ToolAnnotations(read_only_hint=True))
    def crash() -> str:
        """Ends the server's process."""
        print("crashing on purpose", file=sys.stderr, flush=True)
        os._exit(7)

    return server


if __name__ == "__main__":
    print("test server starting", file=sys.stderr, flush=True)
    build(os.environ.get("TEST_MCP_VARIANT", "1"), os.environ.get("TEST_MCP_CALLS")).run()
