"""The `jira` connector on the `jira` package: search, read, create, comment, transition, assign,
each scoped to granted projects (and issue types and transitions).

The jira client is synchronous, so every call runs in a worker thread. Credentials come from the
environment variables named in meshagent.toml ([jira]): JIRA_URL with JIRA_EMAIL and
JIRA_API_TOKEN (Cloud) or JIRA_TOKEN (Server/Data Center personal access token).
Reads return only the fields asked for, flattened for the prompt.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any

from jira import JIRA, JIRAError
from pydantic import Field

from connectors.jql import JqlError, confine
from meshagent.actions import (
    Action,
    ActionArgs,
    ActionContext,
    ActionGrant,
    ActionKind,
    ActionResult,
    Connector,
    Outcome,
)
from meshagent.exceptions import ConnectorError, GrantDenied

__all__ = ["connector"]

DEFAULT_FIELDS = ["summary", "status", "assignee", "priority", "updated", "duedate"]
_clients: dict[tuple[str, str], JIRA] = {}
_lock = threading.Lock()


class ProjectGrant(ActionGrant):
    projects: list[str] = Field(min_length=1, description="Project keys allowed, e.g. [PAY].")


class CreateGrant(ProjectGrant):
    issue_types: list[str] = Field(default_factory=list, description="Allowed types; [] = any.")


class TransitionGrant(ProjectGrant):
    transitions: list[str] = Field(default_factory=list, description="Allowed names; [] = any.")


class SearchArgs(ActionArgs):
    jql: str = Field(description="JQL query, e.g. project = PAY AND updated >= -1d.")
    fields: list[str] = Field(default=DEFAULT_FIELDS, description="Fields to return.")
    limit: int = Field(default=50, ge=1, le=1000, description="At most this many issues.")


class IssueArgs(ActionArgs):
    key: str = Field(description="Issue key, e.g. PAY-123.")
    fields: list[str] = Field(default=[*DEFAULT_FIELDS, "description"], description="Fields.")
    comments: int = Field(default=10, ge=0, le=100, description="Latest comments to include.")


class CreateArgs(ActionArgs):
    project: str = Field(description="Project key.")
    summary: str = Field(description="Issue title.")
    description: str = Field(default="", description="Issue body (the answer, under deliver).")
    issue_type: str = Field(default="Task", description="Issue type name.")
    labels: list[str] = Field(default_factory=list, description="Labels.")


class CommentArgs(ActionArgs):
    key: str = Field(description="Issue key.")
    body: str = Field(description="Comment text (the answer, under deliver).")


class TransitionArgs(ActionArgs):
    key: str = Field(description="Issue key.")
    transition: str = Field(description="Transition name, e.g. Done.")


class AssignArgs(ActionArgs):
    key: str = Field(description="Issue key.")
    assignee: str | None = Field(description="Account id (Cloud) or user name; null unassigns.")


def _project_of(args: Any) -> str:
    return (getattr(args, "project", None) or args.key.split("-")[0]).upper()


def _project_scope(args: Any, grant: ProjectGrant) -> str | None:
    allowed = {p.upper() for p in grant.projects}
    if isinstance(args, SearchArgs):
        try:
            confine(args.jql, grant.projects)
        except JqlError as exc:
            return f"the search cannot be confined to {', '.join(grant.projects)}: {exc}"
        return None
    if _project_of(args) in allowed:
        return None
    target = getattr(args, "key", None) or _project_of(args)
    return f"{target} is outside the granted projects {', '.join(sorted(allowed))}"


def _create_scope(args: CreateArgs, grant: CreateGrant) -> str | None:
    if grant.issue_types and args.issue_type not in grant.issue_types:
        return f"issue type {args.issue_type} is not granted ({', '.join(grant.issue_types)})"
    return _project_scope(args, grant)


def _transition_scope(args: TransitionArgs, grant: TransitionGrant) -> str | None:
    names = {t.lower() for t in grant.transitions}
    if names and args.transition.lower() not in names:
        return f"transition {args.transition} is not granted ({', '.join(grant.transitions)})"
    return _project_scope(args, grant)


def _client(context: ActionContext, action: str) -> JIRA:
    get = context.settings.get
    url_env = get("url_env", "JIRA_URL")
    server = context.env.get(url_env)
    if not server:
        raise ConnectorError(action, "", f"set {url_env} to the Jira base URL")
    pat = context.env.get(get("token_env", "JIRA_TOKEN"))
    email = context.env.get(get("email_env", "JIRA_EMAIL"))
    api_token = context.env.get(get("api_token_env", "JIRA_API_TOKEN"))
    if not pat and not (email and api_token):
        raise ConnectorError(
            action,
            server,
            f"set {get('email_env', 'JIRA_EMAIL')} and {get('api_token_env', 'JIRA_API_TOKEN')} "
            f"(Jira Cloud) or {get('token_env', 'JIRA_TOKEN')} (Server/Data Center)",
        )
    secret = pat or api_token or ""
    key = (server, f"{email}:{secret[-4:]}:{len(secret)}")
    with _lock:
        if key not in _clients:
            auth: dict[str, Any] = (
                {"token_auth": pat} if pat else {"basic_auth": (email, api_token)}
            )
            _clients[key] = JIRA(server=server, timeout=20, max_retries=3, **auth)
        return _clients[key]


def _flat(value: Any) -> Any:
    if isinstance(value, dict):
        for name in ("displayName", "name", "value", "key"):
            if name in value:
                return value[name]
        return value
    if isinstance(value, list):
        return [_flat(v) for v in value]
    return value


def _compact(raw: dict[str, Any], fields: list[str]) -> dict[str, Any]:
    values = raw.get("fields", {})
    item = {"key": raw["key"]}
    item.update({name: _flat(values.get(name)) for name in fields if name in values})
    return item


def _browse(client: JIRA, key: str) -> str:
    return f"{client.server_url.rstrip('/')}/browse/{key}"


async def _call(action: str, target: str, work: Callable[[], Any]) -> Any:
    try:
        return await asyncio.to_thread(work)
    except JIRAError as exc:
        detail = (exc.text or "").splitlines()[0] if exc.text else ""
        code = f"HTTP {exc.status_code}" + (f": {detail}" if detail else "")
        raise ConnectorError(action, target, code) from None


async def _search(context: ActionContext, args: SearchArgs, grant: Any) -> ActionResult:
    jql = args.jql
    if grant is not None:
        try:
            jql = confine(jql, grant.projects)
        except JqlError as exc:
            raise GrantDenied("jira.search", str(exc)) from None
    client = _client(context, "jira.search")
    found = await _call(
        "jira.search",
        jql,
        lambda: client.search_issues(jql, maxResults=args.limit, fields=args.fields),
    )
    issues = [_compact(issue.raw, args.fields) for issue in found]
    return ActionResult(data={"jql": jql, "count": len(issues), "issues": issues})


async def _issue(context: ActionContext, args: IssueArgs, grant: Any) -> ActionResult:
    client = _client(context, "jira.issue")
    issue = await _call(
        "jira.issue", args.key, lambda: client.issue(args.key, fields=",".join(args.fields))
    )
    data = _compact(issue.raw, args.fields)
    if args.comments:
        comments = await _call("jira.issue", args.key, lambda: client.comments(args.key))
        data["comments"] = [
            {"author": _flat(c.raw.get("author")), "created": c.created, "body": c.body}
            for c in comments[-args.comments :]
        ]
    return ActionResult(data=data)


async def _create(context: ActionContext, args: CreateArgs, grant: Any) -> ActionResult:
    if context.dry_run:
        return ActionResult.planned("jira.create_issue", args, args.project)
    client = _client(context, "jira.create_issue")
    fields = {
        "project": {"key": args.project},
        "summary": args.summary,
        "description": args.description,
        "issuetype": {"name": args.issue_type},
        "labels": args.labels,
    }
    issue = await _call("jira.create_issue", args.project, lambda: client.create_issue(fields))
    outcome = Outcome("jira.issue", issue.key, _browse(client, issue.key))
    return ActionResult(data={"key": issue.key}, outcomes=[outcome])


async def _comment(context: ActionContext, args: CommentArgs, grant: Any) -> ActionResult:
    if context.dry_run:
        return ActionResult.planned("jira.add_comment", args, args.key)
    client = _client(context, "jira.add_comment")
    comment = await _call(
        "jira.add_comment", args.key, lambda: client.add_comment(args.key, args.body)
    )
    url = f"{_browse(client, args.key)}?focusedCommentId={comment.id}"
    outcome = Outcome("jira.comment", f"{args.key}#{comment.id}", url)
    return ActionResult(data={"key": args.key, "comment": comment.id}, outcomes=[outcome])


async def _transition(context: ActionContext, args: TransitionArgs, grant: Any) -> ActionResult:
    if context.dry_run:
        return ActionResult.planned("jira.transition", args, args.key)
    client = _client(context, "jira.transition")
    await _call(
        "jira.transition", args.key, lambda: client.transition_issue(args.key, args.transition)
    )
    outcome = Outcome(
        "jira.transition", f"{args.key}->{args.transition}", _browse(client, args.key)
    )
    return ActionResult(data={"key": args.key, "transition": args.transition}, outcomes=[outcome])


async def _assign(context: ActionContext, args: AssignArgs, grant: Any) -> ActionResult:
    if context.dry_run:
        return ActionResult.planned("jira.assign", args, args.key)
    client = _client(context, "jira.assign")
    await _call("jira.assign", args.key, lambda: client.assign_issue(args.key, args.assignee))
    outcome = Outcome("jira.assign", f"{args.key}->{args.assignee}", _browse(client, args.key))
    return ActionResult(data={"key": args.key, "assignee": args.assignee}, outcomes=[outcome])


def _action(name: str, kind: ActionKind, description: str, **parts: Any) -> Action:
    parts.setdefault("grant", ProjectGrant)
    parts.setdefault("scope", _project_scope)
    return Action(name=name, kind=kind, description=description, **parts)


READ, WRITE = ActionKind.READ, ActionKind.WRITE
connector = Connector(
    name="jira",
    description="Jira Cloud or Server/Data Center through its REST API.",
    actions=(
        _action(
            "jira.search", READ, "Issues matching a JQL query.", args=SearchArgs, handler=_search
        ),
        _action(
            "jira.issue",
            READ,
            "One issue with its latest comments.",
            args=IssueArgs,
            handler=_issue,
        ),
        _action(
            "jira.create_issue",
            WRITE,
            "Create an issue.",
            args=CreateArgs,
            grant=CreateGrant,
            handler=_create,
            scope=_create_scope,
            answer_field="description",
        ),
        _action(
            "jira.add_comment",
            WRITE,
            "Comment on an issue.",
            args=CommentArgs,
            handler=_comment,
            answer_field="body",
        ),
        _action(
            "jira.transition",
            WRITE,
            "Move an issue through a workflow transition.",
            args=TransitionArgs,
            grant=TransitionGrant,
            handler=_transition,
            scope=_transition_scope,
        ),
        _action("jira.assign", WRITE, "Assign an issue.", args=AssignArgs, handler=_assign),
    ),
)
