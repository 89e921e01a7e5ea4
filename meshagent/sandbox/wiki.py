"""The sandbox's team wiki: a small MCP server (search pages, read a page, create a page) over
streamable HTTP, written with the official ``mcp`` SDK, for the MCP example agent and tests.

``WikiState`` holds the pages and what was asked of the server; ``build_wiki_app`` is the ASGI
app (the endpoint is ``/mcp``); ``Sandbox`` serves it with uvicorn on its own loop.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["WikiPage", "WikiState", "build_wiki_server"]

SEED_PAGES = (
    {
        "space": "ENG",
        "title": "Payments on-call runbook",
        "body": "Checkout errors: check the gateway dashboard first, then card-vault. "
        "Roll back the gateway before debugging when 502s exceed 2%.",
    },
    {
        "space": "ENG",
        "title": "Release process",
        "body": "Releases are cut on Thursdays. Release notes are drafted from the fix version "
        "and reviewed by the product manager.",
    },
    {
        "space": "OPS",
        "title": "Incident postmortem template",
        "body": "Summary, impact, timeline, root cause, what went well, action items with owners.",
    },
)


@dataclass
class WikiPage:
    id: str
    space: str
    title: str
    body: str

    def link(self, base: str) -> str:
        return f"{base}/pages/{self.id}"


@dataclass
class WikiState:
    """The wiki's pages and every tool call it received (``calls``: name and arguments)."""

    pages: list[WikiPage] = field(default_factory=list)
    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    base_url: str = "http://wiki.example.invalid"
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @classmethod
    def seeded(cls, pages: Any = None) -> WikiState:
        state = cls()
        for page in pages if pages is not None else SEED_PAGES:
            state.add(page["space"], page["title"], page["body"])
        return state

    def add(self, space: str, title: str, body: str) -> WikiPage:
        with self.lock:
            page = WikiPage(str(len(self.pages) + 1), space, title, body)
            self.pages.append(page)
            return page

    def created(self) -> list[WikiPage]:
        """Pages made by create_page calls, in order."""
        made = {str(args.get("title")) for name, args in self.calls if name == "create_page"}
        return [page for page in self.pages if page.title in made]

    def record(self, name: str, arguments: Mapping[str, Any]) -> None:
        with self.lock:
            self.calls.append((name, dict(arguments)))


def build_wiki_server(state: WikiState) -> Any:
    """The wiki as an ``MCPServer`` of the SDK (serve it with ``streamable_http_app()``)."""
    from mcp.server import MCPServer
    from mcp_types import ToolAnnotations

    # MCPServer calls logging.basicConfig (a rich handler on the root logger, at INFO) when the
    # root logger has no handler: the process's logging is its own, so give it one meanwhile.
    root = logging.getLogger()
    guard = logging.NullHandler()
    root.addHandler(guard)
    try:
        server = MCPServer("team-wiki", instructions="The team wiki: spaces ENG and OPS.")
    finally:
        root.removeHandler(guard)
    reads = ToolAnnotations(read_only_hint=True, open_world_hint=False)
    creates = ToolAnnotations(read_only_hint=False, destructive_hint=False, idempotent_hint=False)

    @server.tool(annotations=reads)
    def search_pages(query: str, space: str | None = None, limit: int = 5) -> list[dict[str, Any]]:
        """Search the wiki's pages by words in their title or body; optionally in one space."""
        state.record("search_pages", {"query": query, "space": space, "limit": limit})
        words = [w for w in re.findall(r"\w+", query.lower()) if len(w) > 2]
        found = [
            page
            for page in state.pages
            if (space is None or page.space == space)
            and any(w in f"{page.title} {page.body}".lower() for w in words)
        ]
        return [
            {"id": p.id, "space": p.space, "title": p.title, "url": p.link(state.base_url)}
            for p in found[: max(1, min(limit, 20))]
        ]

    @server.tool(annotations=reads)
    def read_page(page_id: str) -> dict[str, Any]:
        """One page of the wiki, by its id: space, title, body and link."""
        state.record("read_page", {"page_id": page_id})
        for page in state.pages:
            if page.id == page_id:
                return {**page.__dict__, "url": page.link(state.base_url)}
        raise ValueError(f"no page {page_id}")

    @server.tool(annotations=creates)
    def create_page(space: str, title: str, body: str) -> dict[str, Any]:
        """Create a page in a space (ENG or OPS) with a title and a body (markdown)."""
        state.record("create_page", {"space": space, "title": title, "body": body})
        if space not in ("ENG", "OPS"):
            raise ValueError(f"no space {space}")
        page = state.add(space, title, body)
        return {"id": page.id, "title": page.title, "url": page.link(state.base_url)}

    return server
