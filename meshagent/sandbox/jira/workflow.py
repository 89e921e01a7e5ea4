"""Workflow: statuses, transitions and assignment, in the state and over the API."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from meshagent.sandbox.jira.base import (
    _CATEGORIES,
    _NOT_SETTABLE,
    _ApiBase,
    _ApiError,
    _Ctx,
    _now,
)


class _WorkflowState:
    """JiraState's statuses and transitions, and moves made as a person would."""

    def _status_named(self, name: Any, where: str) -> dict[str, Any]:
        for status in self.statuses:
            if status["name"].lower() == str(name).lower():
                return status
        raise ValueError(f"seed: jira {where}: unknown status {name!r}")

    def status_of(self, key: str) -> str:
        """The current status name of issue ``key``."""
        return self.issues[key.upper()]["status"]

    def transition_by(
        self, key: str, status: str, user: str, *, resolution: str | None = None
    ) -> None:
        """``user`` (name, email, ...) moves issue ``key`` to ``status``, recorded in its
        changelog; a done status resolves it (``resolution``: Done, Won't Do, Duplicate, ...)."""
        issue = self.issues[key.upper()]
        target = self._status_named(status, key)
        person = self.find_user(user)
        if person is None:
            raise ValueError(f"unknown Jira user {user!r}")
        change = {"field": "status", "fromString": issue["status"], "toString": target["name"]}
        issue.setdefault("history", []).append(
            {"author": person["name"], "created": _now(), "items": [change]}
        )
        issue["status"] = target["name"]
        if target["category"] == "done":
            issue["resolved"] = issue["resolved"] or _now()
            issue["resolution_name"] = resolution or "Done"
        issue["updated"] = _now()

    def status(self, name: str) -> dict[str, Any]:
        return next(s for s in self.statuses if s["name"] == name)

    def available_transitions(self, issue: dict[str, Any]) -> list[dict[str, Any]]:
        return [t for t in self.transitions if not t["from"] or issue["status"] in t["from"]]


class _WorkflowApi(_ApiBase):
    """Statuses as JSON, /status, and an issue's transitions and assignee."""

    def status_json(self, ctx: _Ctx, name: str) -> dict[str, Any]:
        status = self.state.status(name)
        category = _CATEGORIES[status["category"]]
        return {
            "self": ctx.api(f"status/{status['id']}"),
            "description": "",
            "iconUrl": f"{ctx.base}/images/icons/statuses/generic.png",
            "name": status["name"],
            "id": status["id"],
            "statusCategory": {"self": ctx.api(f"statuscategory/{category['id']}"), **category},
        }

    async def statuses(self, request: web.Request) -> web.Response:
        ctx = self.ctx(request)
        return web.json_response([self.status_json(ctx, s["name"]) for s in self.state.statuses])

    async def transitions(self, request: web.Request) -> web.Response:
        issue = self.issue_or_404(request)
        ctx = self.ctx(request)
        wanted = request.query.get("transitionId")
        return web.json_response(
            {
                "expand": "transitions",
                "transitions": [
                    {
                        "id": t["id"],
                        "name": t["name"],
                        "to": self.status_json(ctx, t["to"]),
                        "hasScreen": False,
                        "isGlobal": not t["from"],
                        "isInitial": False,
                        "isAvailable": True,
                        "isConditional": False,
                    }
                    for t in self.state.available_transitions(issue)
                    if wanted is None or t["id"] == wanted
                ],
            }
        )

    async def post_transition(self, request: web.Request) -> web.Response:
        issue = self.issue_or_404(request)
        ctx = self.ctx(request)
        data = await self.body(request)
        ref = data.get("transition")
        wanted = ref.get("id") if isinstance(ref, dict) else None
        if wanted is None:
            raise _ApiError(400, ["Missing 'transition' identifier"])
        transition = next(
            (t for t in self.state.available_transitions(issue) if t["id"] == str(wanted)), None
        )
        if transition is None:
            raise _ApiError(400, [f"Transition id '{wanted}' is not valid for this issue."])
        errors = {
            name: _NOT_SETTABLE.format(name=name)
            for name in data.get("fields") or {}
            if name != "resolution"
        }
        comments = []
        for operation in (data.get("update") or {}).get("comment") or []:
            added = operation.get("add") if isinstance(operation, dict) else None
            if isinstance(added, dict):
                text = self.text_input(ctx, added.get("body"), "comment", errors)
                if text and text.strip():
                    comments.append(text)
        if errors:
            raise _ApiError(400, [], errors)
        target = self.state.status(transition["to"])
        issue["status"] = target["name"]
        if target["category"] == "done":
            issue["resolved"] = issue["resolved"] or _now()
        else:
            issue["resolved"] = None
        self.state.transitions_done.append((issue["key"], transition["name"]))
        for text in comments:
            self.add_comment(issue, text)
        self.touch(issue)
        return web.Response(status=204)

    async def assign(self, request: web.Request) -> web.Response:
        issue = self.issue_or_404(request)
        data = await self.body(request)
        key = "accountId" if self.state.cloud else "name"
        if key not in data:
            raise _ApiError(400, [], {"assignee": f"Specify the assignee by '{key}'."})
        user, problem = self.user_from(data)
        if problem:
            raise _ApiError(400, [], {"assignee": problem})
        issue["assignee"] = user["name"] if user else None
        ident = None if user is None else user["account_id" if self.state.cloud else "name"]
        self.state.assignments.append((issue["key"], ident))
        self.touch(issue)
        return web.Response(status=204)
