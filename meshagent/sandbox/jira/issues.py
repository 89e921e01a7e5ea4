"""Issues and comments: their JSON, reading, creating and commenting, and helpers for tests."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from aiohttp import web

from meshagent.sandbox.jira.base import (
    _ISSUE_EXPAND,
    _ISSUE_FIELDS,
    _NOT_ADF,
    _NOT_SETTABLE,
    _adf_text,
    _ApiBase,
    _ApiError,
    _Ctx,
    _fmt,
    _now,
)


class _IssueState:
    """JiraState's issues and comments, and changes made as a person would."""

    def _new_comment(self, author: str, body: str, when: datetime) -> dict[str, Any]:
        comment = {
            "id": str(self._next_comment_id),
            "author": author,
            "body": body,
            "created": when,
            "updated": when,
        }
        self._next_comment_id += 1
        return comment

    def comment_by(self, key: str, user: str, body: str) -> str:
        """``user`` comments on issue ``key``; the comment's id."""
        issue = self.issues[key.upper()]
        person = self.find_user(user)
        if person is None:
            raise ValueError(f"unknown Jira user {user!r}")
        comment = self._new_comment(person["name"], body, _now())
        issue["comments"].append(comment)
        return comment["id"]

    def delete_comment(self, key: str, comment_id: str) -> None:
        """Delete comment ``comment_id`` of issue ``key``, as its author could."""
        issue = self.issues[key.upper()]
        issue["comments"] = [c for c in issue["comments"] if c["id"] != str(comment_id)]

    def watch(self, key: str, *users: str) -> None:
        """Set the watchers of issue ``key`` (names, emails, ...)."""
        issue = self.issues[key.upper()]
        found = [self.find_user(u) for u in users]
        if None in found:
            raise ValueError(f"unknown Jira user among {users!r}")
        issue["watchers"] = [u["name"] for u in found if u is not None]

    def delete_issue(self, key: str) -> None:
        """Delete issue ``key``: every read of it answers 404."""
        del self.issues[key.upper()]

    def find_issue(self, ref: str) -> dict[str, Any] | None:
        """The issue with key (any case) or numeric id ``ref``."""
        issue = self.issues.get(ref.strip().upper())
        if issue is None and ref.strip().isdigit():
            issue = next((i for i in self.issues.values() if i["id"] == ref.strip()), None)
        return issue


class _IssueApi(_ApiBase):
    """Issues and comments as JSON, and the /issue endpoints that read, create and comment."""

    def comment_json(
        self, ctx: _Ctx, issue: dict[str, Any], comment: dict[str, Any]
    ) -> dict[str, Any]:
        author = self.user_ref(ctx, comment["author"])
        data = {
            "self": ctx.api(f"issue/{issue['id']}/comment/{comment['id']}"),
            "id": comment["id"],
            "author": author,
            "body": ctx.text(comment["body"]),
            "updateAuthor": author,
            "created": _fmt(comment["created"]),
            "updated": _fmt(comment["updated"]),
        }
        if ctx.cloud:
            data["jsdPublic"] = True
        return data

    def comments_page(
        self, ctx: _Ctx, issue: dict[str, Any], start: int = 0, limit: int | None = None
    ) -> dict[str, Any]:
        comments = issue["comments"]
        page = comments[start : None if limit is None else start + limit]
        return {
            "comments": [self.comment_json(ctx, issue, c) for c in page],
            "maxResults": len(page) if limit is None else limit,
            "total": len(comments),
            "startAt": start,
        }

    def field_value(self, ctx: _Ctx, issue: dict[str, Any], name: str) -> Any:
        project = self.state.projects[issue["project"]]
        if name == "summary":
            return issue["summary"]
        if name == "description":
            return ctx.text(issue["description"])
        if name == "status":
            return self.status_json(ctx, issue["status"])
        if name == "issuetype":
            return self.type_json(ctx, issue["type"])
        if name == "project":
            return self.project_json(ctx, project)
        if name == "priority":
            return self.priority_json(ctx, issue["priority"])
        if name in ("assignee", "reporter"):
            return self.user_ref(ctx, issue[name])
        if name == "labels":
            return list(issue["labels"])
        if name == "fixVersions":
            return [
                {
                    "self": ctx.api(f"version/{self.state.versions[v]}"),
                    "id": self.state.versions[v],
                    "name": v,
                    "archived": False,
                    "released": False,
                }
                for v in issue["fix_versions"]
            ]
        if name in ("created", "updated"):
            return _fmt(issue[name])
        if name == "duedate":
            return issue["due"].isoformat() if issue["due"] else None
        if name == "resolution":
            named = issue.get("resolution_name")
            return self.resolution_json(ctx, named) if issue["resolved"] else None
        if name == "resolutiondate":
            return _fmt(issue["resolved"]) if issue["resolved"] else None
        if name == "comment":
            return self.comments_page(ctx, issue)
        raise KeyError(name)

    def issue_json(
        self, ctx: _Ctx, issue: dict[str, Any], fields: list[str] | None
    ) -> dict[str, Any]:
        data: dict[str, Any] = {
            "expand": _ISSUE_EXPAND,
            "id": issue["id"],
            "self": ctx.api(f"issue/{issue['id']}"),
            "key": issue["key"],
        }
        names = _ISSUE_FIELDS if fields is None else fields
        data["fields"] = {name: self.field_value(ctx, issue, name) for name in names}
        return data

    @staticmethod
    def field_selection(values: list[Any], default: list[str] | None) -> list[str] | None:
        """Field ids asked for by ``fields`` (comma lists, repeated; *all, *navigable, -x)."""
        names = [
            str(part).strip()
            for value in values
            if value is not None
            for part in (value if isinstance(value, list) else str(value).split(","))
            if str(part).strip()
        ]
        if not names:
            return default
        everything = any(n in ("*all", "*navigable") for n in names)
        excluded = {n[1:] for n in names if n.startswith("-")}
        chosen = (
            list(_ISSUE_FIELDS)
            if everything or (excluded and all(n.startswith("-") for n in names))
            else [n for n in names if n in _ISSUE_FIELDS]
        )
        return [n for n in dict.fromkeys(chosen) if n not in excluded]

    async def get_issue(self, request: web.Request) -> web.Response:
        issue = self.issue_or_404(request)
        fields = self.field_selection(request.query.getall("fields", []), None)
        ctx = self.ctx(request)
        data = self.issue_json(ctx, issue, fields)
        if "changelog" in ",".join(request.query.getall("expand", [])).split(","):
            histories = [
                {
                    "id": str(10000 + at),
                    "author": self.user_ref(ctx, item["author"]),
                    "created": _fmt(item["created"]),
                    "items": [dict(change) for change in item["items"]],
                }
                for at, item in enumerate(issue.get("history", []))
            ]
            data["changelog"] = {
                "startAt": 0,
                "maxResults": len(histories),
                "total": len(histories),
                "histories": histories,
            }
        return web.json_response(data)

    def text_input(
        self, ctx: _Ctx, value: Any, field_name: str, errors: dict[str, str]
    ) -> str | None:
        if value is None:
            return None
        if ctx.adf:
            if not isinstance(value, dict) or value.get("type") != "doc":
                errors[field_name] = _NOT_ADF
                return None
            return _adf_text(value)
        if not isinstance(value, str):
            errors[field_name] = f"Field '{field_name}' must be a string."
            return None
        return value

    async def create_issue(self, request: web.Request) -> web.Response:
        ctx = self.ctx(request)
        body = await self.body(request)
        fields = body.get("fields")
        if not isinstance(fields, dict):
            raise _ApiError(400, [], {"project": "project is required"})
        errors: dict[str, str] = {}
        state = self.state
        project = None
        ref = fields.get("project")
        if not ref:
            errors["project"] = "project is required"
        else:
            wanted = str(ref.get("key") or ref.get("id") or "") if isinstance(ref, dict) else ""
            project = next(
                (p for p in state.projects.values() if wanted.upper() in (p["key"], p["id"])),
                None,
            )
            if project is None:
                errors["project"] = "valid project is required"
        kind = None
        ref = fields.get("issuetype")
        if not ref:
            errors["issuetype"] = "issue type is required"
        elif project is not None:
            found = None
            if isinstance(ref, dict) and ref.get("id") is not None:
                found = next(
                    (t for t in state.issue_types.values() if t["id"] == str(ref["id"])), None
                )
            elif isinstance(ref, dict) and ref.get("name") is not None:
                found = state.issue_types.get(str(ref["name"]).lower())
            if found is None or found["name"] not in project["issue_types"]:
                errors["issuetype"] = "valid issue type is required"
            else:
                kind = found["name"]
        summary = fields.get("summary")
        if not isinstance(summary, str) or not summary.strip():
            errors["summary"] = "You must specify a summary of the issue."
        elif "\n" in summary or "\r" in summary:
            errors["summary"] = "The summary is invalid because it contains newline characters."
        elif len(summary) > 255:
            errors["summary"] = "Summary must be less than 255 characters."
        description = self.text_input(ctx, fields.get("description"), "description", errors)
        labels = fields.get("labels") or []
        if not isinstance(labels, list) or not all(isinstance(x, str) for x in labels):
            errors["labels"] = "The labels must be a list of strings."
            labels = []
        for label in labels:
            if not label or any(c.isspace() for c in label):
                errors["labels"] = f"The label '{label}' contains spaces which is invalid."
        priority = state.default_priority()
        ref = fields.get("priority")
        if ref is not None:
            found = (
                state._find_priority(str(ref.get("id") or ref.get("name") or ""))
                if isinstance(ref, dict)
                else None
            )
            if found is None:
                errors["priority"] = "The priority selected is invalid."
            else:
                priority = found["name"]
        assignee, problem = self.user_from(fields.get("assignee"))
        if problem:
            errors["assignee"] = problem
        reporter, problem = self.user_from(fields.get("reporter"))
        if problem:
            errors["reporter"] = problem
        due = None
        if fields.get("duedate") is not None:
            try:
                due = date.fromisoformat(str(fields["duedate"]))
            except ValueError:
                errors["duedate"] = f"Error parsing date string: {fields['duedate']}"
        versions: list[str] = []
        for ref in fields.get("fixVersions") or []:
            name = None
            if isinstance(ref, dict) and ref.get("id") is not None:
                name = next((n for n, i in state.versions.items() if i == str(ref["id"])), None)
            elif isinstance(ref, dict):
                name = ref.get("name")
            if project is not None and name not in project["versions"]:
                errors["fixVersions"] = f"Version name '{name or ref}' is not valid"
            elif name:
                versions.append(name)
        known = {
            "project",
            "issuetype",
            "summary",
            "description",
            "labels",
            "priority",
            "assignee",
            "reporter",
            "duedate",
            "fixVersions",
        }
        for name in fields:
            if name not in known:
                errors[name] = _NOT_SETTABLE.format(name=name)
        if errors:
            raise _ApiError(400, [], errors)
        assert project is not None and kind is not None and isinstance(summary, str)
        number = 1 + max(
            (int(k.rsplit("-", 1)[1]) for k in state.issues if k.startswith(project["key"] + "-")),
            default=0,
        )
        key = f"{project['key']}-{number}"
        now = _now()
        issue = {
            "id": str(state._next_issue_id),
            "key": key,
            "project": project["key"],
            "type": kind,
            "summary": summary,
            "description": description,
            "status": state.statuses[0]["name"],
            "priority": priority,
            "assignee": assignee["name"] if assignee else None,
            "reporter": (reporter or state.bot)["name"],
            "labels": list(labels),
            "fix_versions": versions,
            "created": now,
            "updated": now,
            "due": due,
            "resolved": now if state.statuses[0]["category"] == "done" else None,
            "comments": [],
        }
        state._next_issue_id += 1
        state.issues[key] = issue
        state.created.append(key)
        return web.json_response(
            {"id": issue["id"], "key": key, "self": ctx.api(f"issue/{issue['id']}")}, status=201
        )

    async def comments(self, request: web.Request) -> web.Response:
        issue = self.issue_or_404(request)
        ctx = self.ctx(request)
        start = max(self.integer(request.query.get("startAt"), 0, "startAt"), 0)
        limit = max(self.integer(request.query.get("maxResults"), 5000, "maxResults"), 0)
        page = self.comments_page(ctx, issue, start, limit)
        if request.query.get("orderBy", "").startswith("-"):
            ordered = sorted(issue["comments"], key=lambda c: c["created"], reverse=True)
            page["comments"] = [
                self.comment_json(ctx, issue, c) for c in ordered[start : start + limit]
            ]
        return web.json_response(page)

    async def comment(self, request: web.Request) -> web.Response:
        issue = self.issue_or_404(request)
        found = next((c for c in issue["comments"] if c["id"] == request.match_info["id"]), None)
        if found is None:
            raise _ApiError(404, ["Can not find a comment for the id."])
        return web.json_response(self.comment_json(self.ctx(request), issue, found))

    async def watchers(self, request: web.Request) -> web.Response:
        issue = self.issue_or_404(request)
        ctx = self.ctx(request)
        names = issue.get("watchers")
        if names is None:  # Jira makes the reporter and the assignee watchers
            names = [n for n in dict.fromkeys((issue["reporter"], issue["assignee"])) if n]
        people = [self.user_ref(ctx, name) for name in names]
        return web.json_response(
            {
                "self": ctx.api(f"issue/{issue['key']}/watchers"),
                "isWatching": False,
                "watchCount": len(people),
                "watchers": people,
            }
        )

    def add_comment(self, issue: dict[str, Any], body: str) -> dict[str, Any]:
        comment = self.state._new_comment(self.state.bot["name"], body, _now())
        issue["comments"].append(comment)
        self.state.comments_added.append((issue["key"], body))
        self.touch(issue)
        return comment

    async def post_comment(self, request: web.Request) -> web.Response:
        issue = self.issue_or_404(request)
        ctx = self.ctx(request)
        data = await self.body(request)
        errors: dict[str, str] = {}
        body = self.text_input(ctx, data.get("body"), "comment", errors)
        if errors:
            raise _ApiError(400, [], errors)
        if not body or not body.strip():
            raise _ApiError(400, [], {"comment": "Comment body can not be empty!"})
        comment = self.add_comment(issue, body)
        return web.json_response(self.comment_json(ctx, issue, comment), status=201)
