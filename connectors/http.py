"""The built-in `http` connector: `http.get` fetches JSON or text under allow-listed URL prefixes.

Reads internal status pages and APIs. Bodies are streamed and cut at ``max_bytes``; redirects are
followed hop by hop, each hop checked against the grant; ``${VAR}`` in headers is resolved from
the environment at call time and never appears in an error, in calls the agent file makes (a
call the model makes may not name one). A URL is compared with its grant as httpx will send it,
and refused when its path holds what servers read differently (``..;``, encoded slashes, dots
or percent signs, backslashes, whitespace); headers may not choose another site (Host).
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import re
import ssl
import unicodedata
from collections.abc import Mapping
from http.cookiejar import CookieJar, DefaultCookiePolicy
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import unquote, urljoin, urlsplit

from pydantic import Field, field_validator

from meshagent.actions import (
    ENV_ALLOWED,
    Action,
    ActionArgs,
    ActionContext,
    ActionGrant,
    ActionKind,
    ActionResult,
    Connector,
)
from meshagent.exceptions import ConnectorError, GrantDenied

if TYPE_CHECKING:  # httpx is imported when a call is made: validate and list do without it
    import httpx

__all__ = ["GetArgs", "GetGrant", "connector", "inside_prefix"]

MAX_REDIRECTS = 5
_ENV = re.compile(r"(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


# Whitespace, control characters and backslashes: httpx refuses some, servers read others as
# separators; a URL that holds one is refused rather than guessed at.
_UNSAFE = re.compile(r"[\x00-\x20\x7f\\]")


_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]{1,100}")  # RFC 9110 token
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
#: Headers that choose the site a server answers for: the grant is of a URL, so they are its.
_ROUTING_HEADERS = frozenset({"host", "forwarded", ":authority"})


def _absolute_http(url: str) -> str:
    if _UNSAFE.search(url):
        raise ValueError(f"{url!r} holds whitespace, a control character or a backslash")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{url!r} is not an absolute http(s) URL")
    return url


def _safe_segment(raw: str) -> bool:
    """A path segment that every server reads as the same one segment: after percent-decoding
    (and NFKC, which some servers apply) no dot segment, '/', '\\', ';' (Tomcat's path
    parameters), '%' (a second decoding) or control character, and valid UTF-8."""
    try:
        text = unquote(raw, errors="strict")
    except UnicodeDecodeError:
        return False
    for form in {text, unicodedata.normalize("NFKC", text)}:
        if form in (".", "..") or _UNSAFE.search(form) or any(c in form for c in "/;%"):
            return False
    return True


class GetArgs(ActionArgs):
    url: str = Field(description="The http(s) URL to fetch.")
    params: dict[str, str | int | float | bool] = Field(
        default_factory=dict, description="Query parameters added to the URL."
    )
    headers: dict[str, str] = Field(
        default_factory=dict,
        description="Request headers; only the agent file's own calls may use ${VAR} (secrets).",
        json_schema_extra=ENV_ALLOWED,
    )
    format: Literal["auto", "json", "text"] = Field(
        default="auto", description="How to read the body; auto follows the content type."
    )
    max_bytes: int = Field(
        default=1_000_000, ge=1, le=10_000_000, description="Refuse bodies larger than this."
    )
    timeout_seconds: float = Field(
        default=10, gt=0, le=120, description="Give up after this many seconds."
    )
    select: list[str] | None = Field(
        default=None,
        description="Keys (dotted for nested ones) to keep from a JSON body.",
    )

    @field_validator("url")
    @classmethod
    def _absolute(cls, url: str) -> str:
        return _absolute_http(url)

    @field_validator("headers")
    @classmethod
    def _plain_headers(cls, headers: dict[str, str]) -> dict[str, str]:
        for name, value in headers.items():
            if not _HEADER_NAME.fullmatch(name) or _CONTROL.search(value):
                raise ValueError(f"header {name!r}: a name or value httpx cannot send as is")
            if name.lower() in _ROUTING_HEADERS or name.lower().startswith("x-forwarded-"):
                raise ValueError(f"header {name!r} would send the request to another site")
        return headers


class GetGrant(ActionGrant):
    url_prefixes: list[str] = Field(
        min_length=1, description="URLs the model may fetch under (scheme, host, port, path)."
    )

    @field_validator("url_prefixes")
    @classmethod
    def _absolute(cls, prefixes: list[str]) -> list[str]:
        return [_absolute_http(prefix) for prefix in prefixes]


def _origin_and_path(url: str) -> tuple[tuple[str, str, int], list[str]] | None:
    """The origin and path segments of ``url`` as httpx will send it, or None for a URL that
    is not safe to compare (userinfo, a segment servers may read differently, unparsable)."""
    if _UNSAFE.search(url):
        return None
    import httpx

    try:
        parts = urlsplit(url)
        parsed = httpx.URL(url)
        host = parsed.raw_host.decode("ascii").lower()
        port = parsed.port or (443 if parsed.scheme == "https" else 80)
    except (httpx.InvalidURL, UnicodeError, ValueError):
        return None
    if parts.username is not None or parts.password is not None or parsed.userinfo or not host:
        return None
    raw_segments = parts.path.split("/")[1:]
    if not all(_safe_segment(segment) for segment in raw_segments):
        return None
    sent = parsed.raw_path.decode("ascii").partition("?")[0]
    return (parsed.scheme, host, port), sent.split("/")[1:]


def inside_prefix(url: str, prefix: str) -> bool:
    """Whether ``url`` lies under ``prefix``: same origin and the path below it by segments."""
    target, base = _origin_and_path(url), _origin_and_path(prefix)
    if target is None or base is None or target[0] != base[0]:
        return False
    path, root = target[1], base[1]
    if root and root[-1] == "":  # a prefix ending in '/': anything below it, or itself
        root = root[:-1]
        return path[: len(root)] == root and (len(path) > len(root) or path == root)
    return path == root or (path[: len(root)] == root and len(path) > len(root))


def _scope(args: GetArgs, grant: GetGrant) -> str | None:
    if any(inside_prefix(args.url, prefix) for prefix in grant.url_prefixes):
        return None
    return f"{args.url} is outside the granted prefixes {', '.join(grant.url_prefixes)}"


def _headers(headers: Mapping[str, str], env: Mapping[str, str], url: str) -> dict[str, str]:
    resolved = {}
    for name, value in headers.items():

        def lookup(match: re.Match[str]) -> str:
            if match.group(1) not in env:
                raise ConnectorError(
                    "http.get", url, f"environment variable {match.group(1)} is not set"
                )
            return env[match.group(1)]

        resolved[name] = _ENV.sub(lookup, value).replace("$${", "${")
    return resolved


def _select(data: Any, keys: list[str]) -> dict[str, Any]:
    picked: dict[str, Any] = {}
    for key in keys:
        value: Any = data
        for part in key.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        picked[key] = value
    return picked


async def _read(response: httpx.Response, args: GetArgs) -> bytes:
    body = bytearray()
    async for chunk in response.aiter_bytes():
        body += chunk
        if len(body) > args.max_bytes:
            raise ConnectorError(
                "http.get", args.url, f"response larger than {args.max_bytes} bytes"
            )
    return bytes(body)


async def _fetch(context: ActionContext, args: GetArgs, grant: GetGrant | None) -> ActionResult:
    if grant is not None and any(_ENV.search(value) for value in args.headers.values()):
        # A call the model makes: ${VAR} would send a secret of the environment to the site.
        raise GrantDenied("http.get", "headers may not name environment variables (${VAR})")
    import httpx

    headers = _headers(args.headers, context.env, args.url)
    url, params = args.url, dict(args.params)
    timeout = httpx.Timeout(args.timeout_seconds)
    clients = context.services.get("clients")
    try:
        async with contextlib.AsyncExitStack() as stack:
            if clients is None:  # called outside a runtime: a client for this call alone
                client = await stack.enter_async_context(_client())
            else:
                client = await clients.get("http", _client)
            cookies = httpx.Cookies()  # this call's: set by one hop, sent to the next
            for _ in range(MAX_REDIRECTS + 1):
                request = client.build_request(
                    "GET", url, params=params, headers=headers, timeout=timeout
                )
                cookies.set_cookie_header(request)
                response = await client.send(request, stream=True)
                async with contextlib.aclosing(response):
                    cookies.extract_cookies(response)
                    if response.is_redirect:
                        url, params = _next_hop(url, response, grant, args.url), {}
                        continue
                    if response.status_code >= 400:
                        raise ConnectorError("http.get", url, f"HTTP {response.status_code}")
                    body = await _read(response, args)
                    return ActionResult(data=_decode(body, response, args))
            raise ConnectorError("http.get", args.url, f"more than {MAX_REDIRECTS} redirects")
    except httpx.TimeoutException:
        raise ConnectorError(
            "http.get", url, f"timed out after {args.timeout_seconds:g}s"
        ) from None
    except httpx.HTTPError as exc:
        raise ConnectorError("http.get", url, type(exc).__name__) from None


def _client() -> httpx.AsyncClient:
    """A client for http.get: redirects checked hop by hop, no cookie kept between calls (a
    runtime's client serves every run: a site's cookie must not reach another run), and the
    process's one TLS context (loading the CA bundle is most of what building a client costs)."""
    import httpx

    jar = CookieJar(policy=DefaultCookiePolicy(allowed_domains=[]))
    return httpx.AsyncClient(follow_redirects=False, cookies=jar, verify=_tls_context())


def _tls_context() -> ssl.SSLContext:
    """httpx's default TLS context, made once per process and CA bundle (it holds no state of a
    connection; OpenSSL shares it between threads)."""
    return _tls_context_for(os.environ.get("SSL_CERT_FILE"), os.environ.get("SSL_CERT_DIR"))


@functools.cache
def _tls_context_for(cert_file: str | None, cert_dir: str | None) -> ssl.SSLContext:
    import httpx

    return httpx.create_ssl_context()


def _next_hop(url: str, response: httpx.Response, grant: GetGrant | None, first: str) -> str:
    target = urljoin(url, response.headers.get("location", ""))
    try:
        _absolute_http(target)
    except ValueError as exc:
        raise GrantDenied("http.get", f"redirect to a URL that cannot be checked: {exc}") from None
    if grant is not None:
        reason = _scope(GetArgs(url=target), grant)
        if reason is not None:
            raise GrantDenied("http.get", f"redirect to {reason}")
    elif _origin_and_path(target) is None or (
        _origin_and_path(target)[0] != _origin_and_path(first)[0]  # type: ignore[index]
    ):
        raise GrantDenied("http.get", f"redirect from {first} to another origin: {target}")
    return target


def _decode(body: bytes, response: httpx.Response, args: GetArgs) -> Any:
    text = body.decode(response.encoding or "utf-8", errors="replace")
    wants_json = args.format == "json" or (
        args.format == "auto" and "json" in response.headers.get("content-type", "")
    )
    if not wants_json:
        return text
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConnectorError("http.get", args.url, f"invalid JSON at line {exc.lineno}") from None
    return _select(data, args.select) if args.select else data


GET = Action(
    name="http.get",
    kind=ActionKind.READ,
    description="Fetch JSON or text from a URL under allow-listed prefixes.",
    args=GetArgs,
    grant=GetGrant,
    handler=_fetch,
    scope=_scope,
)

connector = Connector(name="http", description="Plain HTTP reads.", actions=(GET,))
