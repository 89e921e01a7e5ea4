"""The jira connector's reads: a search (page by page, confined to the granted projects) and one
issue with its latest comments, each flattened for the prompt: only the fields asked for, a person's
or an option's name, date-times in UTC to the minute, NAME_email for the email of a person.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from connectors.jira_ids import EMAIL_SUFFIX, IssueArgs, SearchArgs
from connectors.jira_site import call, site_of
from connectors.jql import JqlError, confine
from meshagent.actions import ActionContext, ActionResult
from meshagent.exceptions import GrantDenied

if TYPE_CHECKING:  # the jira library is imported when a call is made: validate does without it
    from jira import JIRA

__all__ = ["PAGE_SIZE", "read_issue", "readable", "search"]


PAGE_SIZE = 100  # Jira's own cap per search page


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


def readable(value: Any) -> Any:
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
            item[name] = readable(_flat(values.get(name)))
        elif name.endswith(EMAIL_SUFFIX):  # the person in field NAME: reachable by DM
            person = values.get(name.removesuffix(EMAIL_SUFFIX))
            if isinstance(person, dict) and person.get("emailAddress"):
                item[name] = person["emailAddress"]
    return item


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


async def search(context: ActionContext, args: SearchArgs, grant: Any) -> ActionResult:
    jql = args.jql
    if grant is not None:
        try:
            jql = confine(jql, grant.projects)
        except JqlError as exc:
            raise GrantDenied("jira.search", str(exc)) from None
    site = site_of(context, "jira.search")
    found = await call(
        "jira.search",
        jql,
        site,
        lambda client: _search_pages(client, jql, _jira_fields(args.fields), args.limit),
    )
    return ActionResult(data=[_compact(issue.raw, args.fields) for issue in found])


async def read_issue(context: ActionContext, args: IssueArgs, grant: Any) -> ActionResult:
    site = site_of(context, "jira.issue")
    issue = await call(
        "jira.issue",
        args.key,
        site,
        lambda client: client.issue(args.key, fields=",".join(_jira_fields(args.fields))),
    )
    data = _compact(issue.raw, args.fields)
    if args.comments:
        comments = await call(
            "jira.issue", args.key, site, lambda client: client.comments(args.key)
        )
        data["comments"] = [
            {"author": _flat(c.raw.get("author")), "created": readable(c.created), "body": c.body}
            for c in comments[-args.comments :]
        ]
    return ActionResult(data=data)
