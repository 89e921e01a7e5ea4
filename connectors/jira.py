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

The identifiers, arguments and grants are in ``connectors.jira_ids``; the site, its credentials and
the calls with their retries in ``connectors.jira_site``; search and reading an issue in
``connectors.jira_read``; the writes and their reach in ``connectors.jira_write``.
"""

from __future__ import annotations

from typing import Any

from connectors.jira_ids import (
    DEFAULT_FIELDS,
    AssignArgs,
    CommentArgs,
    CreateArgs,
    CreateGrant,
    IssueArgs,
    ProjectGrant,
    SearchArgs,
    TransitionArgs,
    TransitionGrant,
    create_scope,
    project_scope,
    transition_scope,
)
from connectors.jira_read import read_issue, search
from connectors.jira_read import readable as _readable  # noqa: F401 - the tests read it here
from connectors.jira_site import credentials_missing
from connectors.jira_write import add_comment, assign_issue, create_issue, transition_issue
from meshagent.actions import Action, ActionKind, Connector

__all__ = ["DEFAULT_FIELDS", "connector"]


def _action(name: str, kind: ActionKind, description: str, **parts: Any) -> Action:
    parts.setdefault("grant", ProjectGrant)
    parts.setdefault("scope", project_scope)
    return Action(name=name, kind=kind, description=description, **parts)


READ, WRITE = ActionKind.READ, ActionKind.WRITE
connector = Connector(
    name="jira",
    description="Jira Cloud or Server/Data Center through its REST API.",
    missing=credentials_missing,
    actions=(
        _action(
            "jira.search", READ, "Issues matching a JQL query.", args=SearchArgs, handler=search
        ),
        _action(
            "jira.issue",
            READ,
            "One issue with its latest comments.",
            args=IssueArgs,
            handler=read_issue,
        ),
        _action(
            "jira.create_issue",
            WRITE,
            "Create an issue.",
            args=CreateArgs,
            grant=CreateGrant,
            handler=create_issue,
            scope=create_scope,
            answer_field="description",
        ),
        _action(
            "jira.add_comment",
            WRITE,
            "Comment on an issue.",
            args=CommentArgs,
            handler=add_comment,
            answer_field="body",
        ),
        _action(
            "jira.transition",
            WRITE,
            "Move an issue through a workflow transition.",
            args=TransitionArgs,
            grant=TransitionGrant,
            handler=transition_issue,
            scope=transition_scope,
        ),
        _action("jira.assign", WRITE, "Assign an issue.", args=AssignArgs, handler=assign_issue),
    ),
)
