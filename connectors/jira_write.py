"""The jira connector's writes: create an issue, comment, transition, assign; each recorded as an
outcome, created issues and comments with their reach: who sees the issue (its reporter, assignee
and watchers), and whether anyone but the run's owner and triggerer (and the bot) is among them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from connectors.jira_ids import AssignArgs, CommentArgs, CreateArgs, TransitionArgs
from connectors.jira_site import Site, call, site_of
from meshagent.actions import ActionContext, ActionResult, Outcome

if TYPE_CHECKING:  # the jira library is imported when a call is made: validate does without it
    from jira import JIRA

__all__ = ["add_comment", "assign_issue", "create_issue", "transition_issue"]


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


async def _reach(site: Site, key: str, context: ActionContext) -> dict[str, Any]:
    """Who sees an issue: its project, reporter, assignee and watchers; whether anyone but the
    run's owner and triggerer (and the bot) is among them. Never fails the write: unknown
    reach is recorded as such."""

    def read(client: JIRA) -> tuple[Any, Any]:
        issue = client.issue(key, fields="project,reporter,assignee")
        return issue, client.watchers(key)

    try:
        issue, watchers = await call("jira.reach", key, site, read)
        fields = issue.fields
        people = {
            "reporter": _person(getattr(fields, "reporter", None)),
            "assignee": _person(getattr(fields, "assignee", None)),
        }
        watching = sorted({p for w in getattr(watchers, "watchers", []) if (p := _person(w))})
        if site.key not in _bots:
            bot = await call("jira.reach", key, site, lambda client: client.myself())
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


async def create_issue(context: ActionContext, args: CreateArgs, grant: Any) -> ActionResult:
    if context.dry_run:
        return ActionResult.planned("jira.create_issue", args, args.project)
    site = site_of(context, "jira.create_issue")
    fields = {
        "project": {"key": args.project},
        "summary": args.summary,
        "description": args.description,
        "issuetype": {"name": args.issue_type},
        "labels": args.labels,
    }
    issue = await call(
        "jira.create_issue", args.project, site, lambda client: client.create_issue(fields)
    )
    reach = await _reach(site, issue.key, context)
    outcome = Outcome("jira.issue", issue.key, site.browse(issue.key), **reach)
    return ActionResult(data={"key": issue.key}, outcomes=[outcome])


async def add_comment(context: ActionContext, args: CommentArgs, grant: Any) -> ActionResult:
    if context.dry_run:
        return ActionResult.planned("jira.add_comment", args, args.key)
    site = site_of(context, "jira.add_comment")
    comment = await call(
        "jira.add_comment", args.key, site, lambda client: client.add_comment(args.key, args.body)
    )
    url = f"{site.browse(args.key)}?focusedCommentId={comment.id}"
    reach = await _reach(site, args.key, context)
    outcome = Outcome("jira.comment", f"{args.key}#{comment.id}", url, **reach)
    return ActionResult(data={"key": args.key, "comment": comment.id}, outcomes=[outcome])


async def transition_issue(
    context: ActionContext, args: TransitionArgs, grant: Any
) -> ActionResult:
    return await _change(context, args, "jira.transition", "transition", "transition_issue")


async def assign_issue(context: ActionContext, args: AssignArgs, grant: Any) -> ActionResult:
    return await _change(context, args, "jira.assign", "assignee", "assign_issue")


async def _change(
    context: ActionContext, args: Any, action: str, field: str, method: str
) -> ActionResult:
    """Set one field of an issue (its workflow status, its assignee) to ``args.<field>`` with the
    jira client's ``method`` (issue key, value); the outcome, named as the action, reads
    ``KEY->value``."""
    if context.dry_run:
        return ActionResult.planned(action, args, args.key)
    site = site_of(context, action)
    value = getattr(args, field)
    await call(action, args.key, site, lambda client: getattr(client, method)(args.key, value))
    outcome = Outcome(action, f"{args.key}->{value}", site.browse(args.key))
    return ActionResult(data={"key": args.key, field: value}, outcomes=[outcome])
