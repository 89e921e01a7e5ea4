"""``[mcp.NAME]`` of ``meshagent.toml``: how to reach one MCP server, never its secrets.

A server is a command run over stdio (``command``; ``env`` names the variables passed to it) or a
streamable HTTP URL (``url``, or ``url_env`` naming the variable that holds it; ``headers_env``
maps header names to the variables holding their values). Values of variables never go in the
file: only their names.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    model_validator,
)

from meshagent.config.fields import env_name, no_bool

__all__ = ["SERVER_NAME", "McpServerSettings", "secret_variables", "server_name"]

#: A server's name: the first part of its actions' names (``wiki`` of ``wiki.create_page``).
SERVER_NAME = re.compile(r"[a-z][a-z0-9_]{0,30}")
_HEADER = re.compile(r"[A-Za-z0-9-]{1,64}")


def server_name(value: str) -> str:
    if not SERVER_NAME.fullmatch(value):
        raise ValueError(
            f"{value!r} is not a server name: use lowercase letters, digits and underscores, "
            "starting with a letter (at most 31)"
        )
    return value


def _header(value: str) -> str:
    if not _HEADER.fullmatch(value):
        raise ValueError(f"{value!r} is not an HTTP header name")
    return value


def _url(value: str) -> str:
    if not re.fullmatch(r"https?://[^\s/@]+(/\S*)?", value):
        raise ValueError(f"{value!r} is not an http:// or https:// URL (without user:password@)")
    return value


_EnvName = Annotated[str, AfterValidator(env_name)]
_HeaderName = Annotated[str, AfterValidator(_header)]


def secret_variables(table: Any) -> set[str]:
    """The variables whose values an MCP server's settings (``[mcp.NAME]`` as a mapping) pass
    to it: ``env`` and ``headers_env``, secrets whatever their names (masked where recorded)."""
    if not isinstance(table, dict):
        return set()
    names = {v for v in table.get("env") or () if isinstance(v, str)}
    headers = table.get("headers_env")
    if isinstance(headers, dict):
        names.update(v for v in headers.values() if isinstance(v, str))
    return names


class McpServerSettings(BaseModel):
    """`[mcp.NAME]`: one MCP server whose tools become the actions `NAME.TOOL`."""

    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)

    command: tuple[str, ...] | None = Field(None, min_length=1)
    """Run the server as this command over stdio, e.g. ["python", "-m", "wiki_server"]."""
    env: tuple[_EnvName, ...] = ()
    """Names of environment variables passed to the command (their values never go here)."""
    url: Annotated[str, AfterValidator(_url)] | None = None
    """The server's streamable HTTP endpoint, e.g. https://mcp.example.com/mcp."""
    url_env: _EnvName | None = None
    """Variable holding the endpoint instead of `url` (a sandbox's port, a per-site URL)."""
    headers_env: dict[_HeaderName, _EnvName] = Field(default_factory=dict)
    """HTTP headers sent to the server, each from the variable that holds its value:
    {Authorization = "WIKI_AUTH"}."""
    read: tuple[str, ...] = ()
    """Tools to treat as reads whatever their annotations say (context, no dry-run plan)."""
    write: tuple[str, ...] = ()
    """Tools to treat as writes whatever their annotations say (a tool without a
    readOnlyHint already is one)."""
    timeout_seconds: Annotated[float, BeforeValidator(no_bool), Field(gt=0)] = 30.0
    """Longest wait for one tool call's answer."""
    start_timeout_seconds: Annotated[float, BeforeValidator(no_bool), Field(gt=0)] = 20.0
    """Longest wait for the server to start and answer its handshake."""
    max_result_bytes: Annotated[int, BeforeValidator(no_bool), Field(ge=1)] = 100_000
    """A tool's answer larger than this (as text) is refused, not passed to the model."""

    @model_validator(mode="after")
    def _one_transport(self) -> McpServerSettings:
        given = [k for k in ("command", "url", "url_env") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(
                "give exactly one of command (stdio), url or url_env (streamable HTTP)"
                + (f"; got {', '.join(given)}" if given else "")
            )
        if self.env and self.command is None:
            raise ValueError("env is for a command's variables; an HTTP server uses headers_env")
        if self.headers_env and self.command is not None:
            raise ValueError("headers_env is for an HTTP server; a command gets env")
        both = sorted(set(self.read) & set(self.write))
        if both:
            raise ValueError(f"{', '.join(both)}: listed under both read and write")
        return self

    @property
    def transport(self) -> str:
        return "stdio" if self.command is not None else "http"

    def where(self, env: Any = None) -> str:
        """The command or URL, as an error message names the server's place."""
        if self.command is not None:
            return "command " + " ".join(self.command)
        if self.url is not None:
            return f"url {self.url}"
        found = (env or {}).get(self.url_env or "") if env is not None else None
        return f"url {found} (from ${self.url_env})" if found else f"url from ${self.url_env}"

    def kind_of(self, tool: str, read_only_hint: bool | None) -> str:
        """read or write: the toml's word first, then the tool's readOnlyHint (none: write)."""
        if tool in self.read:
            return "read"
        if tool in self.write:
            return "write"
        return "read" if read_only_hint is True else "write"
