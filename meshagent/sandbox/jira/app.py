"""The sandbox Jira assembled: JiraState, the request handlers, authentication and the routes."""

from __future__ import annotations

import base64
import binascii
import hmac
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from meshagent.sandbox.jira.base import (
    _NOT_AUTHENTICATED,
    _PRIORITIES,
    SERVER_TITLE,
    _ApiError,
    _not_found,
    _now,
)
from meshagent.sandbox.jira.issues import _IssueApi, _IssueState
from meshagent.sandbox.jira.search import _SearchApi, _SearchState
from meshagent.sandbox.jira.seed import (
    _DEFAULT_BOT,
    _DEFAULT_STATUSES,
    _DEFAULT_TRANSITIONS,
    _SeedState,
)
from meshagent.sandbox.jira.site import _SiteApi, _SiteState
from meshagent.sandbox.jira.users import _UserApi, _UserState
from meshagent.sandbox.jira.workflow import _WorkflowApi, _WorkflowState

__all__ = ["JIRA_STATE_KEY", "JiraState", "build_jira_app"]


class JiraState(_SeedState, _UserState, _WorkflowState, _SiteState, _IssueState, _SearchState):
    """The seeded site and a record of every request it received."""

    def __init__(
        self,
        seed: dict[str, Any],
        *,
        deployment: str = "Server",
        token: str = "sandbox-pat",
        email: str = "bot@example.com",
        api_token: str = "sandbox-api-token",
    ) -> None:
        if deployment not in ("Server", "Cloud"):
            raise ValueError(f"deployment must be 'Server' or 'Cloud', got {deployment!r}")
        self.deployment = deployment
        self.cloud = deployment == "Cloud"
        self.token, self.email, self.api_token = token, email, api_token
        self.requests: list[tuple[str, str]] = []
        #: Every request as it arrived: method, raw path and query (not percent-decoded), body.
        self.received: list[tuple[str, str, bytes]] = []
        self.created: list[str] = []
        self.comments_added: list[tuple[str, str]] = []
        self.transitions_done: list[tuple[str, str]] = []
        self.assignments: list[tuple[str, str | None]] = []
        seed = seed or {}
        now = _now()

        self.users: dict[str, dict[str, Any]] = {}
        self.bot = self._add_user(seed.get("bot") or _DEFAULT_BOT)
        for spec in seed.get("users") or []:
            self._add_user(spec)

        self.statuses = [
            self._status_spec(s, i) for i, s in enumerate(seed.get("statuses") or _DEFAULT_STATUSES)
        ]
        transitions = seed.get("transitions")
        if transitions is None:  # the default workflow, as far as the seeded statuses go
            names = {s["name"].lower() for s in self.statuses}
            transitions = [
                t | {"from": [s for s in t["from"] if s.lower() in names]}
                for t in _DEFAULT_TRANSITIONS
                if t["to"].lower() in names and (any(s.lower() in names for s in t["from"]))
            ]
        self.transitions = [self._transition_spec(t, i) for i, t in enumerate(transitions)]
        self.priorities = [
            {"id": str(i + 1), "name": str(name)}
            for i, name in enumerate(seed.get("priorities") or _PRIORITIES)
        ]
        self.issue_types: dict[str, dict[str, Any]] = {}
        self.projects: dict[str, dict[str, Any]] = {}
        self.versions: dict[str, str] = {}
        for i, spec in enumerate(seed.get("projects") or []):
            self._add_project(spec, i)

        self.issues: dict[str, dict[str, Any]] = {}
        self._next_issue_id = 10001
        self._next_comment_id = 10001
        for spec in seed.get("issues") or []:
            self._add_seed_issue(spec, now)

    def writes(self) -> list[tuple[str, str]]:
        """(METHOD, path) of every request that is not a read (GET, HEAD, OPTIONS)."""
        return [(m, p) for m, p in self.requests if m not in ("GET", "HEAD", "OPTIONS")]


class _Api(_SearchApi, _IssueApi, _WorkflowApi, _UserApi, _SiteApi):
    """The request handlers over one JiraState."""

    def __init__(self, state: JiraState) -> None:
        self.state = state


def _authorized(state: JiraState, header: str | None) -> bool:
    if not header or " " not in header:
        return False
    scheme, _, credentials = header.strip().partition(" ")
    credentials = credentials.strip()
    if state.cloud:
        if scheme.lower() != "basic":
            return False
        try:
            decoded = base64.b64decode(credentials, validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return False
        return hmac.compare_digest(decoded, f"{state.email}:{state.api_token}")
    return scheme.lower() == "bearer" and hmac.compare_digest(credentials, state.token)


JIRA_STATE_KEY = web.AppKey("jira_state", JiraState)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def build_jira_app(state: JiraState, *, middlewares: tuple[Any, ...] = ()) -> web.Application:
    """The Jira REST API over ``state``: requests are recorded first, then ``middlewares`` run,
    then authentication (Bearer PAT on Server, Basic email:api_token on Cloud)."""

    @web.middleware
    async def record(request: web.Request, handler: Handler) -> web.StreamResponse:
        state.requests.append((request.method, request.path))
        body = await request.read() if request.can_read_body else b""
        state.received.append((request.method, request.raw_path, body))
        return await handler(request)

    @web.middleware
    async def authenticate(request: web.Request, handler: Handler) -> web.StreamResponse:
        if not _authorized(state, request.headers.get("Authorization")):
            scheme = "Basic" if state.cloud else "Bearer"
            return web.json_response(
                {"errorMessages": [_NOT_AUTHENTICATED], "errors": {}},
                status=401,
                headers={"WWW-Authenticate": f'{scheme} realm="{SERVER_TITLE}"'},
            )
        try:
            return await handler(request)
        except _ApiError as exc:
            return web.json_response(exc.body, status=exc.status)

    api = _Api(state)
    app = web.Application(middlewares=[record, *middlewares, authenticate])
    app[JIRA_STATE_KEY] = state
    prefix = "/rest/api/{version:(?:2|3|latest)}"
    routes: list[tuple[str, str, Handler]] = [
        ("GET", "/serverInfo", api.server_info),
        ("GET", "/field", api.fields),
        ("GET", "/myself", api.myself),
        ("GET", "/user", api.user),
        ("GET", "/user/search", api.user_search),
        ("GET", "/project", api.projects),
        ("GET", "/project/{ref}", api.project),
        ("GET", "/project/{ref}/statuses", api.project_statuses),
        ("GET", "/issuetype", api.issue_types),
        ("GET", "/status", api.statuses),
        ("GET", "/priority", api.priorities),
        ("GET", "/resolution", api.resolutions),
        ("GET", "/search", api.search),
        ("POST", "/search", api.search),
        ("GET", "/search/jql", api.search_jql),
        ("POST", "/search/jql", api.search_jql),
        ("POST", "/issue", api.create_issue),
        ("GET", "/issue/{key}", api.get_issue),
        ("GET", "/issue/{key}/comment", api.comments),
        ("POST", "/issue/{key}/comment", api.post_comment),
        ("GET", "/issue/{key}/comment/{id}", api.comment),
        ("GET", "/issue/{key}/transitions", api.transitions),
        ("GET", "/issue/{key}/watchers", api.watchers),
        ("POST", "/issue/{key}/transitions", api.post_transition),
        ("PUT", "/issue/{key}/assignee", api.assign),
    ]
    for method, path, handler in routes:
        app.router.add_route(method, prefix + path, handler)

    async def unknown(request: web.Request) -> web.Response:
        return _not_found(request)

    app.router.add_route("*", "/rest/{tail:.*}", unknown)
    return app
