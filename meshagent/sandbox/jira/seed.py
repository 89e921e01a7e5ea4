"""The seed: the built-in Jira site and how a seed becomes users, workflow, projects and issues."""

from __future__ import annotations

import hashlib
from datetime import UTC, date, datetime, timedelta
from typing import Any

import yaml

from meshagent.sandbox.jira.base import (
    _CATEGORIES,
    _midnight,
    _period,
)
from meshagent.sandbox.jira.jql import _KEY

_DEFAULT_STATUSES = [
    {"name": "To Do", "category": "new"},
    {"name": "In Progress", "category": "indeterminate"},
    {"name": "Blocked", "category": "indeterminate"},
    {"name": "Done", "category": "done"},
]
_DEFAULT_TRANSITIONS = [
    {"name": "Start Progress", "from": ["To Do", "Blocked"], "to": "In Progress"},
    {"name": "Block", "from": ["In Progress"], "to": "Blocked"},
    {"name": "Done", "from": ["To Do", "In Progress", "Blocked"], "to": "Done"},
    {"name": "Reopen", "from": ["Done"], "to": "To Do"},
]
_DEFAULT_BOT = {
    "name": "meshagent",
    "display_name": "MeshAgent",
    "email": "bot@example.com",
    "account_id": "5f0000000000000000000bot",
}


_DEFAULT_SEED_YAML = """
bot: {name: meshagent, display_name: MeshAgent, email: bot@example.com,
      account_id: 5f0000000000000000000bot}
users:
  - {name: alice, display_name: Alice Adams, email: alice@example.com,
     account_id: 5f000000000000000a11ce01}
  - {name: bob, display_name: Bob Brown, email: bob@example.com,
     account_id: 5f0000000000000000b0b002}
  - {name: carol, display_name: Carol Chen, email: carol@example.com,
     account_id: 5f00000000000000ca401003}
  - {name: dave, display_name: Dave Diaz, email: dave@example.com,
     account_id: 5f00000000000000da7e0004}
statuses:
  - {name: To Do, category: new}
  - {name: In Progress, category: indeterminate}
  - {name: Blocked, category: indeterminate}
  - {name: Done, category: done}
transitions:
  - {name: Start Progress, from: [To Do, Blocked], to: In Progress}
  - {name: Block, from: [In Progress], to: Blocked}
  - {name: Done, from: [To Do, In Progress, Blocked], to: Done}
  - {name: Reopen, from: [Done], to: To Do}
projects:
  - {key: PAY, name: Payments, issue_types: [Task, Bug, Story]}
  - {key: OPS, name: Operations, issue_types: [Task, Bug, Incident]}
issues:
  - key: PAY-1
    type: Bug
    summary: Checkout fails for 3-D Secure cards on Safari
    description: The challenge iframe never loads on Safari 18; the order times out.
    status: Blocked
    priority: High
    assignee: alice
    reporter: bob
    labels: [checkout, customer-impact]
    fix_version: "2026.12"
    created: -12d
    updated: -3d
    due: -1d
    comments:
      - {author: bob, ago: 4d, body: Still reproducible on Safari 18.1.}
      - {author: alice, ago: 3d,
         body: "Blocked on the PSP sandbox credentials; asked their support."}
  - key: PAY-2
    type: Story
    summary: Offer Apple Pay on the mobile web checkout
    status: In Progress
    priority: Medium
    assignee: bob
    reporter: carol
    labels: [checkout, mobile]
    fix_version: "2026.12"
    created: -20d
    updated: -1d
    due: +5d
  - key: PAY-3
    type: Task
    summary: Rotate the webhook signing secret
    description: The current secret was shared in a support ticket.
    status: To Do
    priority: Highest
    reporter: dave
    labels: [security]
    created: -4d
    due: -2d
  - key: PAY-4
    type: Bug
    summary: Refund emails show the wrong currency symbol
    description: CHF refunds are shown with a euro sign.
    status: Done
    priority: Low
    assignee: carol
    reporter: alice
    labels: [emails]
    fix_version: "2026.11"
    created: -30d
    updated: -6d
    due: -10d
    comments:
      - {author: carol, ago: 6d, body: Fixed in the template.}
  - key: PAY-5
    type: Task
    summary: Add idempotency keys to the payout API
    status: In Progress
    priority: High
    assignee: alice
    reporter: bob
    labels: [api]
    fix_version: "2027.01"
    created: -8d
    updated: -2h
    due: +10d
  - key: PAY-6
    type: Story
    summary: Show saved cards on the account page
    status: To Do
    priority: Medium
    reporter: carol
    created: -2d
  - key: PAY-7
    type: Bug
    summary: Duplicate charge when Pay is double-clicked
    description: Two authorisations are captured when the button is clicked twice.
    status: Blocked
    priority: Highest
    assignee: dave
    reporter: alice
    labels: [checkout, customer-impact]
    fix_version: "2026.12"
    created: -6d
    updated: -5d
    due: -3d
    comments:
      - {author: dave, ago: 5d,
         body: Waiting for the frontend debounce fix before we can verify.}
  - key: OPS-1
    type: Incident
    summary: Nightly backup failed on db-replica-2
    description: The backup volume ran out of space at 02:14.
    status: Done
    priority: High
    assignee: dave
    reporter: carol
    labels: [backup]
    created: -9d
    updated: -7d
  - key: OPS-2
    type: Task
    summary: Upgrade the Kubernetes clusters to 1.31
    status: In Progress
    priority: Medium
    assignee: carol
    reporter: dave
    labels: [infra, k8s]
    fix_version: "2026.12"
    created: -15d
    updated: -1d
    due: +3d
  - key: OPS-3
    type: Bug
    summary: Payment latency alert fires every night
    description: The alert threshold ignores the nightly settlement batch.
    status: To Do
    priority: Low
    assignee: bob
    reporter: alice
    labels: [monitoring]
    created: -10d
    due: -5d
  - key: OPS-4
    type: Task
    summary: Renew the TLS certificate for api.example.com
    status: Blocked
    priority: Highest
    assignee: carol
    reporter: dave
    labels: [security, infra]
    created: -5d
    updated: -4d
    due: +1d
    comments:
      - {author: carol, ago: 4d, body: Blocked until IT approves the DNS validation record.}
  - key: OPS-5
    type: Task
    summary: Document the on-call escalation policy
    status: To Do
    priority: Medium
    reporter: bob
    labels: [docs]
    created: -1d
    due: +14d
  - key: OPS-6
    type: Incident
    summary: Elevated 502s from the api-gateway
    description: Connection pool limit halved in gateway 2.31; rolled back to 2.30.
    status: In Progress
    priority: Highest
    assignee: dave
    reporter: carol
    labels: [incident]
    created: -6h
    updated: -1h
"""
#: The built-in ``jira:`` seed: projects PAY and OPS, four people and the bot, 13 issues.
DEFAULT_JIRA_SEED: dict[str, Any] = yaml.safe_load(_DEFAULT_SEED_YAML)


def _seed_time(value: Any, now: datetime, what: str) -> datetime | None:
    """A seed time: relative (``-12d``, ``-3h``) to now, or absolute ISO."""
    if value is None:
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, date):
        return _midnight(value)
    text = str(value).strip()
    delta = _period(text)
    if delta is not None:
        return now + delta
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"seed: jira {what} {value!r} is neither -12d/-3h nor ISO") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _seed_date(value: Any, today: date, what: str) -> date | None:
    """A seed date: relative in days (``-1d``, ``+2d``) to today, or ISO."""
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    text = str(value).strip()
    delta = _period(text)
    if delta is not None:
        return today + timedelta(days=round(delta / timedelta(days=1)))
    try:
        return date.fromisoformat(text[:10])
    except ValueError:
        raise ValueError(f"seed: jira {what} {value!r} is neither -1d/+2d nor ISO") from None


class _SeedState:
    """JiraState's seeding: each part of the seed checked and added."""

    def _add_user(self, spec: dict[str, Any]) -> dict[str, Any]:
        name = str(spec.get("name") or "").strip()
        if not name:
            raise ValueError(f"seed: jira user without a name: {spec!r}")
        user = {
            "name": name,
            "key": f"JIRAUSER{10000 + len(self.users)}",
            "display_name": str(spec.get("display_name") or name),
            "email": str(spec.get("email") or f"{name}@example.com"),
            "account_id": str(
                spec.get("account_id") or "5f" + hashlib.sha1(name.encode()).hexdigest()[:22]
            ),
            "active": bool(spec.get("active", True)),
        }
        self.users[name.lower()] = user
        return user

    def _status_spec(self, spec: dict[str, Any], index: int) -> dict[str, Any]:
        category = str(spec.get("category") or "indeterminate")
        if category not in _CATEGORIES:
            raise ValueError(f"seed: jira status category must be new/indeterminate/done: {spec!r}")
        return {"id": str(10000 + index), "name": str(spec["name"]), "category": category}

    def _transition_spec(self, spec: dict[str, Any], index: int) -> dict[str, Any]:
        sources = spec.get("from") or []
        sources = [sources] if isinstance(sources, str) else sources
        return {
            "id": str(11 + 10 * index),
            "name": str(spec["name"]),
            "from": [self._status_named(s, "transition")["name"] for s in sources],
            "to": self._status_named(spec["to"], "transition")["name"],
        }

    def _add_project(self, spec: dict[str, Any], index: int) -> None:
        key = str(spec["key"]).upper()
        types = [str(t) for t in spec.get("issue_types") or ["Task"]]
        for name in types:
            if name.lower() not in self.issue_types:
                self.issue_types[name.lower()] = {
                    "id": str(10001 + len(self.issue_types)),
                    "name": name,
                    "description": f"A {name.lower()}.",
                }
        self.projects[key] = {
            "id": str(10000 + index),
            "key": key,
            "name": str(spec.get("name") or key),
            "issue_types": [self.issue_types[name.lower()]["name"] for name in types],
            "versions": [],
        }
        for version in spec.get("versions") or []:
            self._add_version(key, str(version))

    def _add_version(self, project: str, name: str) -> None:
        self.versions.setdefault(name, str(10100 + len(self.versions)))
        if name not in self.projects[project]["versions"]:
            self.projects[project]["versions"].append(name)

    def _add_seed_issue(self, spec: dict[str, Any], now: datetime) -> None:
        key = str(spec.get("key") or "").upper()
        match = _KEY.match(key)
        if not match or match[1] not in self.projects:
            raise ValueError(f"seed: jira issue key {key!r} is not PROJECT-N of a seeded project")
        if key in self.issues:
            raise ValueError(f"seed: jira issue {key} appears twice")
        project = self.projects[match[1]]
        type_name = str(spec.get("type") or project["issue_types"][0])
        if type_name.lower() not in {t.lower() for t in project["issue_types"]}:
            raise ValueError(
                f"seed: jira issue {key}: type {type_name!r} is not one of {project['key']}'s"
            )
        status = self._status_named(spec.get("status") or self.statuses[0]["name"], key)
        priority = spec.get("priority", self.default_priority())
        if priority is not None:
            found = self._find_priority(str(priority))
            if found is None:
                raise ValueError(f"seed: jira issue {key}: unknown priority {priority!r}")
            priority = found["name"]
        versions = spec.get("fix_versions", spec.get("fix_version")) or []
        versions = [versions] if isinstance(versions, str | int | float) else versions
        for version in versions:
            self._add_version(project["key"], str(version))
        created = _seed_time(spec.get("created"), now, f"{key} created") or now
        updated = _seed_time(spec.get("updated"), now, f"{key} updated") or created
        issue = {
            "id": str(self._next_issue_id),
            "key": key,
            "project": project["key"],
            "type": self.issue_types[type_name.lower()]["name"],
            "summary": str(spec.get("summary") or key),
            "description": None if spec.get("description") is None else str(spec["description"]),
            "status": status["name"],
            "priority": priority,
            "assignee": self._seed_user(spec.get("assignee"), key),
            "reporter": self._seed_user(spec.get("reporter"), key) or self.bot["name"],
            "labels": [str(label) for label in spec.get("labels") or []],
            "fix_versions": [str(v) for v in versions],
            "created": created,
            "updated": updated,
            "due": _seed_date(spec.get("due", spec.get("duedate")), now.date(), f"{key} due"),
            "resolved": updated if status["category"] == "done" else None,
            "comments": [],
        }
        self._next_issue_id += 1
        for comment in spec.get("comments") or []:
            ago = comment.get("ago")
            delta = _period(str(ago)) if ago is not None else None
            if ago is not None and delta is None:
                raise ValueError(f"seed: jira issue {key}: comment ago {ago!r} is not like 2d/3h")
            when = (
                now - abs(delta)
                if delta is not None
                else _seed_time(comment.get("created"), now, f"{key} comment") or updated
            )
            author = self._seed_user(comment.get("author"), key) or self.bot["name"]
            issue["comments"].append(self._new_comment(author, str(comment.get("body", "")), when))
        self.issues[key] = issue

    def _seed_user(self, ref: Any, where: str) -> str | None:
        if ref is None:
            return None
        user = self.find_user(str(ref))
        if user is None:
            raise ValueError(f"seed: jira issue {where}: unknown user {ref!r}")
        return user["name"]
