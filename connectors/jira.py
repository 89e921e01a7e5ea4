"""The `jira` connector on the `jira` package: search, read, create, comment, transition, assign,
each scoped to granted projects (and issue types and transitions).

The jira client is synchronous, so every call runs in a worker thread. Credentials come from the
environment variables named in meshagent.toml ([jira]): JIRA_URL with JIRA_EMAIL and
JIRA_API_TOKEN (Cloud) or JIRA_TOKEN (Server/Data Center personal access token).
Reads return only the fields asked for, flattened for the prompt: a person's or an option's name,
date-times in UTC to the minute (``2026-11-30 14:05``), dates as dates; ``NAME_email`` among the
fields asked for gives the email of the person in field NAME (``assignee_email``), for a delivery
that writes to them. A search gives the list of issues, nothing around it (not the query, not a
count).

The jira client builds URLs by concatenation (issue/<key>/comment), so every issue key, project
key, transition, assignee and field name is parsed against Jira's format before the grant is
checked and before any request; the grant compares the parsed key's project. Numeric issue ids
are refused: their project cannot be known without a request about an issue maybe outside it.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import random
import re
import threading
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from pydantic import Field, field_validator

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
    identifier,
)
from meshagent.exceptions import ConnectorError, GrantDenied

if TYPE_CHECKING:  # the jira library is imported when a call is made: validate does without it
    from jira import JIRA, JIRAError

__all__ = ["connector"]

#: What jira.search returns of each issue (besides its key) when no fields are asked for.
DEFAULT_FIELDS = ["summary", "status", "assignee", "priority", "updated", "duedate"]
#: A field asked for as NAME_email: the email address of the person in field NAME.
EMAIL_SUFFIX = "_email"
PAGE_SIZE = 100  # Jira's own cap per search page
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
RETRIES = 4
RETRY_CAP_SECONDS = 8.0
log = logging.getLogger(__name__)
_clients: dict[tuple[str, str], JIRA] = {}
_lock = threading.Lock()


# Identifiers, parsed before any grant check or request: the jira client builds its URLs by
# concatenation (issue/<key>/comment), so nothing unparsed may reach it.
PROJECT_KEY = r"[A-Z][A-Z0-9_]{1,49}"


class IssueKey(str):
    """A parsed issue key such as PAY-123: its text, ``project`` and ``number``."""

    project: str
    number: int

    @classmethod
    def parse(cls, text: str) -> IssueKey:
        project, _, number = text.rpartition("-")
        key = cls(text)
        key.project, key.number = project, int(number)
        return key


def _transition(text: str) -> str:
    """A transition id (digits) or name; a name the client would read as a number is refused:
    ``int()`` reads '٣١' and '1_1' as ids 31 and 11."""
    if not text.isascii() or not text.isdigit():
        try:
            int(text)
        except ValueError:
            pass
        else:
            raise ValueError(text)
    if any(unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp") for c in text):
        raise ValueError(text)
    return text


_KEY = rf"{PROJECT_KEY}-[1-9][0-9]{{0,17}}"
IssueKeyArg = identifier(
    "a Jira issue key",
    _KEY,
    "a project key, '-' and a number, such as PAY-123 (not a numeric issue id: its project "
    "cannot be checked before a request)",
    parse=IssueKey.parse,
)
ProjectKeyArg = identifier(
    "a Jira project key",
    PROJECT_KEY,
    "capital letters, digits and '_', starting with a letter, such as PAY",
)
TransitionArg = identifier(
    "a Jira transition",
    r"[1-9][0-9]{0,9}|[^\x00-\x20\x7f](?:[^\x00-\x1f\x7f]{0,98}[^\x00-\x20\x7f])?",
    "a transition id (digits) or name such as Done, without control characters or spaces around it",
    parse=_transition,
)
AssigneeArg = identifier(
    "a Jira user",
    r"[A-Za-z0-9._@+:-]{1,128}",
    "an account id (Cloud), a user name or an email address, or -1 for automatic",
)
FieldArg = identifier(
    "a Jira field name",
    r"[A-Za-z0-9_.*\[\]-]{1,100}",
    "a field id or name such as summary, customfield_10010, cf[10010] or *all",
)


class ProjectGrant(ActionGrant):
    projects: list[str] = Field(min_length=1, description="Project keys allowed, e.g. [PAY].")

    @field_validator("projects")
    @classmethod
    def _keys(cls, projects: list[str]) -> list[str]:
        # Checked before upper(): 'payı'.upper() is 'PAYI'.
        bad = [p for p in projects if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]{1,49}", p)]
        if bad:
            raise ValueError(f"not Jira project keys: {', '.join(map(repr, bad))}")
        return [p.upper() for p in projects]


class CreateGrant(ProjectGrant):
    issue_types: list[str] = Field(default_factory=list, description="Allowed types; [] = any.")


class TransitionGrant(ProjectGrant):
    transitions: list[str] = Field(default_factory=list, description="Allowed names; [] = any.")


class SearchArgs(ActionArgs):
    jql: str = Field(description="JQL query, e.g. project = PAY AND updated >= -1d.")
    fields: list[FieldArg] = Field(
        default=DEFAULT_FIELDS,
        description="Fields to return; NAME_email for a person's email.",
    )
    limit: int = Field(default=50, ge=1, le=1000, description="At most this many issues.")


class IssueArgs(ActionArgs):
    key: IssueKeyArg = Field(description="Issue key, e.g. PAY-123.")
    fields: list[FieldArg] = Field(
        default=[*DEFAULT_FIELDS, "description"],
        description="Fields to return; NAME_email for a person's email.",
    )
    comments: int = Field(default=10, ge=0, le=100, description="Latest comments to include.")


class CreateArgs(ActionArgs):
    project: ProjectKeyArg = Field(description="Project key, e.g. PAY.")
    summary: str = Field(description="Issue title.")
    description: str = Field(default="", description="Issue body (the answer, under deliver).")
    issue_type: str = Field(default="Task", description="Issue type name.")
    labels: list[str] = Field(default_factory=list, description="Labels.")


class CommentArgs(ActionArgs):
    key: IssueKeyArg = Field(description="Issue key, e.g. PAY-123.")
    body: str = Field(description="Comment text (the answer, under deliver).")


class TransitionArgs(ActionArgs):
    key: IssueKeyArg = Field(description="Issue key, e.g. PAY-123.")
    transition: TransitionArg = Field(description="Transition name, e.g. Done, or its id.")


class AssignArgs(ActionArgs):
    key: IssueKeyArg = Field(description="Issue key, e.g. PAY-123.")
    assignee: AssigneeArg | None = Field(
        description="Account id (Cloud) or user name; null unassigns."
    )


def _project_of(args: Any) -> str:
    """The project of a call's parsed key (IssueKey) or project key, never of a raw string."""
    if isinstance(args, CreateArgs):
        return args.project
    if not isinstance(args.key, IssueKey):  # built without validation: parse it now
        return IssueKey.parse(args.key).project if re.fullmatch(_KEY, args.key) else ""
    return args.key.project


def _project_scope(args: Any, grant: ProjectGrant) -> str | None:
    allowed = set(grant.projects)
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


@dataclass(frozen=True)
class _Site:
    """A Jira site and its credentials; the client is made (serverInfo, fields) in a thread."""

    server: str
    key: tuple[str, str]
    auth: dict[str, Any]

    def connect(self) -> JIRA:
        from jira import JIRA

        with _lock:
            if self.key not in _clients:
                # Retries are ours (_call): the client's own wait up to a minute and skip 5xx.
                _clients[self.key] = JIRA(
                    server=self.server, timeout=20, max_retries=0, **self.auth
                )
            return _clients[self.key]

    def browse(self, key: str) -> str:
        return f"{self.server.rstrip('/')}/browse/{key}"


def _missing(context: ActionContext, action: Action | None = None) -> str | None:
    """The site and its credentials; a dry run's writes need neither (they make no request)."""
    if action is not None and context.dry_run and action.kind == ActionKind.WRITE:
        return None
    get = context.settings.get
    url_env = get("url_env", "JIRA_URL")
    if not context.env.get(url_env):
        return f"set {url_env} to the Jira base URL"
    pat = context.env.get(get("token_env", "JIRA_TOKEN"))
    email = context.env.get(get("email_env", "JIRA_EMAIL"))
    api_token = context.env.get(get("api_token_env", "JIRA_API_TOKEN"))
    if not pat and not (email and api_token):
        return (
            f"set {get('email_env', 'JIRA_EMAIL')} and {get('api_token_env', 'JIRA_API_TOKEN')} "
            f"(Jira Cloud) or {get('token_env', 'JIRA_TOKEN')} (Server/Data Center)"
        )
    return None


def _client(context: ActionContext, action: str) -> _Site:
    get = context.settings.get
    server = context.env.get(get("url_env", "JIRA_URL")) or ""
    missing = _missing(context)
    if missing is not None:
        raise ConnectorError(action, server, missing)
    pat = context.env.get(get("token_env", "JIRA_TOKEN"))
    email = context.env.get(get("email_env", "JIRA_EMAIL"))
    api_token = context.env.get(get("api_token_env", "JIRA_API_TOKEN"))
    secret = pat or api_token or ""
    digest = hashlib.sha256(f"{email}:{secret}".encode()).hexdigest()
    auth: dict[str, Any] = {"token_auth": pat} if pat else {"basic_auth": (email, api_token)}
    return _Site(server, (server, digest), auth)


def _flat(value: Any) -> Any:
    if isinstance(value, dict):
        for name in ("displayName", "name", "value", "key"):
            if name in value:
                return value[name]
        return value
    if isinstance(value, list):
        return [_flat(v) for v in value]
    return value


# A date-time as Jira writes it: 2026-11-30T14:05:12.345+0000 (or +01:00, or Z).
_DATE_TIME = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}(?::[0-9]{2}(?:\.[0-9]+)?)?"
    r"(?:Z|[+-][0-9]{2}:?[0-9]{2})?"
)


def _readable(value: Any) -> Any:
    """A date-time at the precision a person reads, in UTC: ``2026-11-30 14:05``."""
    if isinstance(value, str) and _DATE_TIME.fullmatch(value):
        try:
            moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return value
        if moment.tzinfo is not None:
            moment = moment.astimezone(UTC)
        return moment.strftime("%Y-%m-%d %H:%M")
    return value


def _jira_fields(fields: list[str]) -> list[str]:
    """The fields to ask Jira for: NAME_email is read from field NAME."""
    asked: list[str] = []
    for name in fields:
        base = name.removesuffix(EMAIL_SUFFIX)
        if base and base not in asked:
            asked.append(base)
    return asked


def _compact(raw: dict[str, Any], fields: list[str]) -> dict[str, Any]:
    """The issue's key and the fields asked for, each as a person reads it."""
    values = raw.get("fields", {})
    item = {"key": raw["key"]}
    for name in fields:
        if name in values:
            item[name] = _readable(_flat(values.get(name)))
        elif name.endswith(EMAIL_SUFFIX):  # the person in field NAME: reachable by DM
            person = values.get(name.removesuffix(EMAIL_SUFFIX))
            if isinstance(person, dict) and person.get("emailAddress"):
                item[name] = person["emailAddress"]
    return item


def _retry_delay(exc: JIRAError, attempt: int) -> float:
    """Retry-After when the server gives one, else capped exponential backoff with jitter."""
    headers = getattr(exc.response, "headers", None) or {}
    try:
        asked = float(headers.get("Retry-After", ""))
    except ValueError:
        asked = None
    if asked is not None:
        return min(asked, RETRY_CAP_SECONDS)
    return min(RETRY_CAP_SECONDS, 0.25 * 2**attempt) * random.uniform(0.5, 1.0)


async def _call(action: str, target: str, site: _Site, work: Callable[[JIRA], Any]) -> Any:
    """Run a jira client call in a worker thread; retry 429 and 5xx; name failures plainly."""
    from jira import JIRAError
    from requests import RequestException

    for attempt in range(RETRIES + 1):
        try:
            return await asyncio.to_thread(lambda: work(site.connect()))
        except JIRAError as exc:
            if exc.status_code in RETRY_STATUSES and attempt < RETRIES:
                delay = _retry_delay(exc, attempt)
                log.warning(
                    "%s %s: HTTP %s, retry %d/%d in %.2fs",
                    action,
                    target,
                    exc.status_code,
                    attempt + 1,
                    RETRIES,
                    delay,
                )
                await asyncio.sleep(delay)
                continue
            raise ConnectorError(action, target, _describe(exc)) from None
        except (OSError, RequestException) as exc:
            if attempt < RETRIES:
                await asyncio.sleep(min(RETRY_CAP_SECONDS, 0.25 * 2**attempt))
                continue
            raise ConnectorError(
                action, target, f"cannot reach Jira ({type(exc).__name__})"
            ) from None
    raise AssertionError("unreachable")


def _describe(exc: JIRAError) -> str:
    """``HTTP 404: Issue does not exist ...`` from the API's own error messages."""
    detail = ""
    response = exc.response
    try:
        body = response.json() if response is not None else {}
    except ValueError:
        body = {}
    if isinstance(body, dict):
        messages = list(body.get("errorMessages") or [])
        messages += [f"{k}: {v}" for k, v in (body.get("errors") or {}).items()]
        detail = "; ".join(str(m) for m in messages)
    if not detail and exc.text:
        detail = str(exc.text).splitlines()[0]
    status = f"HTTP {exc.status_code}" if exc.status_code else "error"
    return f"{status}: {detail}" if detail else status


def _search_pages(client: JIRA, jql: str, fields: list[str], limit: int) -> list[Any]:
    """Up to ``limit`` issues, page by page: nextPageToken on Cloud, startAt elsewhere."""
    issues: list[Any] = []
    token: str | None = None
    while len(issues) < limit:
        size = min(PAGE_SIZE, limit - len(issues))
        if client._is_cloud:
            page = client.enhanced_search_issues(
                jql, nextPageToken=token, maxResults=size, fields=list(fields)
            )
            token = getattr(page, "nextPageToken", None)
            more = bool(token)
        else:
            page = client.search_issues(
                jql, startAt=len(issues), maxResults=size, fields=list(fields)
            )
            more = bool(page) and len(issues) + len(page) < (page.total or 0)
        issues.extend(page)
        if not more or not page:
            break
    return issues[:limit]


async def _search(context: ActionContext, args: SearchArgs, grant: Any) -> ActionResult:
    jql = args.jql
    if grant is not None:
        try:
            jql = confine(jql, grant.projects)
        except JqlError as exc:
            raise GrantDenied("jira.search", str(exc)) from None
    site = _client(context, "jira.search")
    found = await _call(
        "jira.search",
        jql,
        site,
        lambda client: _search_pages(client, jql, _jira_fields(args.fields), args.limit),
    )
    return ActionResult(data=[_compact(issue.raw, args.fields) for issue in found])


async def _issue(context: ActionContext, args: IssueArgs, grant: Any) -> ActionResult:
    site = _client(context, "jira.issue")
    issue = await _call(
        "jira.issue",
        args.key,
        site,
        lambda client: client.issue(args.key, fields=",".join(_jira_fields(args.fields))),
    )
    data = _compact(issue.raw, args.fields)
    if args.comments:
        comments = await _call(
            "jira.issue", args.key, site, lambda client: client.comments(args.key)
        )
        data["comments"] = [
            {"author": _flat(c.raw.get("author")), "created": _readable(c.created), "body": c.body}
            for c in comments[-args.comments :]
        ]
    return ActionResult(data=data)


_bots: dict[tuple[str, str], set[str]] = {}  # site -> the names of the account we act as


def _person(value: Any) -> str | None:
    """A Jira user as the ledger names people: the email when Jira shows it, else the name."""
    if value is None:
        return None
    for name in ("emailAddress", "name", "accountId", "displayName"):
        found = getattr(value, name, None)
        if found:
            return str(found).lower() if name == "emailAddress" else str(found)
    return None


async def _reach(site: _Site, key: str, context: ActionContext) -> dict[str, Any]:
    """Who sees an issue: its project, reporter, assignee and watchers; whether anyone but the
    run's owner and triggerer (and the bot) is among them. Never fails the write: unknown
    reach is recorded as such."""

    def read(client: JIRA) -> tuple[Any, Any]:
        issue = client.issue(key, fields="project,reporter,assignee")
        return issue, client.watchers(key)

    try:
        issue, watchers = await _call("jira.reach", key, site, read)
        fields = issue.fields
        people = {
            "reporter": _person(getattr(fields, "reporter", None)),
            "assignee": _person(getattr(fields, "assignee", None)),
        }
        watching = sorted({p for w in getattr(watchers, "watchers", []) if (p := _person(w))})
        if site.key not in _bots:
            bot = await _call("jira.reach", key, site, lambda client: client.myself())
            _bots[site.key] = {
                str(bot.get(n) or "").lower() for n in ("emailAddress", "name", "accountId")
            }
        own = set(_bots[site.key])
        own |= {
            str(context.services.get(n) or "").strip().lstrip("@").lower()
            for n in ("owner", "triggered_by")
        }
        seen = {p.lower() for p in [*people.values(), *watching] if p}
        project = getattr(getattr(fields, "project", None), "key", None)
        return {
            "audience": "jira",
            "audience_size": len(seen),
            "reaches_others": bool(seen - own),
            "reach_detail": {"project": project, **people, "watchers": watching},
        }
    except Exception as exc:  # noqa: BLE001 - the write is done: its reach stays unknown
        return {"reach_detail": {"unknown": getattr(exc, "code", None) or type(exc).__name__}}


async def _create(context: ActionContext, args: CreateArgs, grant: Any) -> ActionResult:
    if context.dry_run:
        return ActionResult.planned("jira.create_issue", args, args.project)
    site = _client(context, "jira.create_issue")
    fields = {
        "project": {"key": args.project},
        "summary": args.summary,
        "description": args.description,
        "issuetype": {"name": args.issue_type},
        "labels": args.labels,
    }
    issue = await _call(
        "jira.create_issue", args.project, site, lambda client: client.create_issue(fields)
    )
    reach = await _reach(site, issue.key, context)
    outcome = Outcome("jira.issue", issue.key, site.browse(issue.key), **reach)
    return ActionResult(data={"key": issue.key}, outcomes=[outcome])


async def _comment(context: ActionContext, args: CommentArgs, grant: Any) -> ActionResult:
    if context.dry_run:
        return ActionResult.planned("jira.add_comment", args, args.key)
    site = _client(context, "jira.add_comment")
    comment = await _call(
        "jira.add_comment", args.key, site, lambda client: client.add_comment(args.key, args.body)
    )
    url = f"{site.browse(args.key)}?focusedCommentId={comment.id}"
    reach = await _reach(site, args.key, context)
    outcome = Outcome("jira.comment", f"{args.key}#{comment.id}", url, **reach)
    return ActionResult(data={"key": args.key, "comment": comment.id}, outcomes=[outcome])


async def _transition(context: ActionContext, args: TransitionArgs, grant: Any) -> ActionResult:
    if context.dry_run:
        return ActionResult.planned("jira.transition", args, args.key)
    site = _client(context, "jira.transition")
    await _call(
        "jira.transition",
        args.key,
        site,
        lambda client: client.transition_issue(args.key, args.transition),
    )
    outcome = Outcome("jira.transition", f"{args.key}->{args.transition}", site.browse(args.key))
    return ActionResult(data={"key": args.key, "transition": args.transition}, outcomes=[outcome])


async def _assign(context: ActionContext, args: AssignArgs, grant: Any) -> ActionResult:
    if context.dry_run:
        return ActionResult.planned("jira.assign", args, args.key)
    site = _client(context, "jira.assign")
    await _call(
        "jira.assign", args.key, site, lambda client: client.assign_issue(args.key, args.assignee)
    )
    outcome = Outcome("jira.assign", f"{args.key}->{args.assignee}", site.browse(args.key))
    return ActionResult(data={"key": args.key, "assignee": args.assignee}, outcomes=[outcome])


def _action(name: str, kind: ActionKind, description: str, **parts: Any) -> Action:
    parts.setdefault("grant", ProjectGrant)
    parts.setdefault("scope", _project_scope)
    return Action(name=name, kind=kind, description=description, **parts)


READ, WRITE = ActionKind.READ, ActionKind.WRITE
connector = Connector(
    name="jira",
    description="Jira Cloud or Server/Data Center through its REST API.",
    missing=_missing,
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
