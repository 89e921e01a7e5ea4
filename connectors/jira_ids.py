"""The jira connector's identifiers, arguments and grants. The jira client builds URLs by
concatenation (issue/<key>/comment), so every issue key, project key, transition, assignee and field
name is parsed against Jira's format before the grant is checked and before any request; the grant
compares the parsed key's project, and a search's JQL is confined to the granted projects.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Any

from pydantic import Field, field_validator

from connectors.jql import JqlError, confine
from meshagent.actions import ActionArgs, ActionGrant, identifier

__all__ = [
    "DEFAULT_FIELDS",
    "EMAIL_SUFFIX",
    "AssignArgs",
    "CommentArgs",
    "CreateArgs",
    "CreateGrant",
    "IssueArgs",
    "IssueKey",
    "ProjectGrant",
    "SearchArgs",
    "TransitionArgs",
    "TransitionGrant",
    "create_scope",
    "project_scope",
    "transition_scope",
]


#: What jira.search returns of each issue (besides its key) when no fields are asked for.
DEFAULT_FIELDS = ["summary", "status", "assignee", "priority", "updated", "duedate"]
#: A field asked for as NAME_email: the email address of the person in field NAME.
EMAIL_SUFFIX = "_email"


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


def parse_transition(text: str) -> str:
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
    parse=parse_transition,
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
    # No project clause is needed: the query is confined to the granted projects.
    jql: str = Field(description="JQL query.")
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
    description: str = Field(default="", description="Issue body.")
    issue_type: str = Field(default="Task", description="Issue type name.")
    labels: list[str] = Field(default_factory=list)


class CommentArgs(ActionArgs):
    key: IssueKeyArg = Field(description="Issue key, e.g. PAY-123.")
    body: str = Field(description="Comment text.")


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


def project_scope(args: Any, grant: ProjectGrant) -> str | None:
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


def create_scope(args: CreateArgs, grant: CreateGrant) -> str | None:
    if grant.issue_types and args.issue_type not in grant.issue_types:
        return f"issue type {args.issue_type} is not granted ({', '.join(grant.issue_types)})"
    return project_scope(args, grant)


def transition_scope(args: TransitionArgs, grant: TransitionGrant) -> str | None:
    names = {t.lower() for t in grant.transitions}
    if names and args.transition.lower() not in names:
        return f"transition {args.transition} is not granted ({', '.join(grant.transitions)})"
    return project_scope(args, grant)
