"""The site: server info, fields, projects, issue types, priorities and resolutions."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from meshagent.sandbox.jira.base import (
    _FIELDS,
    _RESOLUTIONS,
    _VERSIONS,
    SERVER_TITLE,
    _ApiBase,
    _ApiError,
    _Ctx,
    _fmt,
    _now,
)


class _SiteState:
    """JiraState's lookups of priorities, projects and issue types."""

    def default_priority(self) -> str:
        """Medium, or the middle one of the seeded priorities."""
        found = self._find_priority("Medium") or self.priorities[len(self.priorities) // 2]
        return found["name"]

    def _find_priority(self, ref: str) -> dict[str, Any] | None:
        wanted = ref.strip().lower()
        return next((p for p in self.priorities if wanted in (p["name"].lower(), p["id"])), None)

    def _find_project(self, ref: str) -> dict[str, Any] | None:
        wanted = ref.strip().lower()
        return next(
            (
                p
                for p in self.projects.values()
                if wanted in (p["key"].lower(), p["id"], p["name"].lower())
            ),
            None,
        )

    def _find_type(self, ref: str) -> dict[str, Any] | None:
        wanted = ref.strip().lower()
        return next(
            (t for t in self.issue_types.values() if wanted in (t["name"].lower(), t["id"])), None
        )


class _SiteApi(_ApiBase):
    """The site's vocabulary as JSON and its endpoints."""

    def type_json(self, ctx: _Ctx, name: str) -> dict[str, Any]:
        kind = self.state.issue_types[name.lower()]
        return {
            "self": ctx.api(f"issuetype/{kind['id']}"),
            "id": kind["id"],
            "description": kind["description"],
            "iconUrl": f"{ctx.base}/images/icons/issuetypes/{kind['name'].lower()}.svg",
            "name": kind["name"],
            "subtask": False,
        }

    def priority_json(self, ctx: _Ctx, name: str | None) -> dict[str, Any] | None:
        if name is None:
            return None
        priority = self.state._find_priority(name)
        assert priority is not None
        return {
            "self": ctx.api(f"priority/{priority['id']}"),
            "iconUrl": f"{ctx.base}/images/icons/priorities/{priority['name'].lower()}.svg",
            "name": priority["name"],
            "id": priority["id"],
        }

    def project_json(
        self, ctx: _Ctx, project: dict[str, Any], *, types: bool = False
    ) -> dict[str, Any]:
        data: dict[str, Any] = {
            "expand": "description,lead,issueTypes,url,projectKeys,permissions,insight",
            "self": ctx.api(f"project/{project['id']}"),
            "id": project["id"],
            "key": project["key"],
            "name": project["name"],
            "projectTypeKey": "software",
        }
        if types:
            data["issueTypes"] = [self.type_json(ctx, t) for t in project["issue_types"]]
        return data

    def resolution_json(self, ctx: _Ctx, named: str | None = None) -> dict[str, Any]:
        found = [r for r in _RESOLUTIONS if named and r[1].lower() == named.lower()]
        rid, name, description = (found or _RESOLUTIONS)[0]
        return {
            "self": ctx.api(f"resolution/{rid}"),
            "id": rid,
            "description": description,
            "name": name,
        }

    async def server_info(self, request: web.Request) -> web.Response:
        ctx = self.ctx(request)
        version, numbers, build = _VERSIONS[self.state.deployment]
        data: dict[str, Any] = {
            "baseUrl": ctx.base,
            "version": version,
            "versionNumbers": numbers,
            "deploymentType": self.state.deployment,
            "buildNumber": build,
            "buildDate": "2026-10-01T00:00:00.000+0000",
            "serverTime": _fmt(_now()),
            "scmInfo": "0000000000000000000000000000000000000000",
            "serverTitle": SERVER_TITLE,
        }
        if self.state.cloud:
            data["defaultLocale"] = {"locale": "en_US"}
        return web.json_response(data)

    async def fields(self, request: web.Request) -> web.Response:
        items = []
        for fid, name, clauses, kind in _FIELDS:
            item: dict[str, Any] = {
                "id": fid,
                "key": fid,
                "name": name,
                "custom": False,
                "orderable": fid not in ("issuekey", "statusCategory", "created", "updated"),
                "navigable": True,
                "searchable": True,
                "clauseNames": clauses,
            }
            if kind:
                item["schema"] = {"type": kind, "system": fid}
                if fid == "labels":
                    item["schema"]["items"] = "string"
                if fid == "fixVersions":
                    item["schema"]["items"] = "version"
            items.append(item)
        return web.json_response(items)

    async def projects(self, request: web.Request) -> web.Response:
        ctx = self.ctx(request)
        types = "issuetypes" in request.query.get("expand", "").lower()
        return web.json_response(
            [self.project_json(ctx, p, types=types) for p in self.state.projects.values()]
        )

    def project_or_404(self, request: web.Request) -> dict[str, Any]:
        """The project the path's ``{ref}`` names, by key or id."""
        ref = request.match_info["ref"]
        project = next(
            (p for p in self.state.projects.values() if ref.upper() in (p["key"], p["id"])), None
        )
        if project is None:
            raise _ApiError(404, [f"No project could be found with key '{ref}'."])
        return project

    async def project(self, request: web.Request) -> web.Response:
        project = self.project_or_404(request)
        return web.json_response(self.project_json(self.ctx(request), project, types=True))

    async def project_statuses(self, request: web.Request) -> web.Response:
        project = self.project_or_404(request)
        ctx = self.ctx(request)
        statuses = [self.status_json(ctx, s["name"]) for s in self.state.statuses]
        return web.json_response(
            [self.type_json(ctx, t) | {"statuses": statuses} for t in project["issue_types"]]
        )

    async def issue_types(self, request: web.Request) -> web.Response:
        ctx = self.ctx(request)
        return web.json_response(
            [self.type_json(ctx, t["name"]) for t in self.state.issue_types.values()]
        )

    async def priorities(self, request: web.Request) -> web.Response:
        ctx = self.ctx(request)
        return web.json_response(
            [self.priority_json(ctx, p["name"]) for p in self.state.priorities]
        )

    async def resolutions(self, request: web.Request) -> web.Response:
        ctx = self.ctx(request)
        return web.json_response(
            [
                {"self": ctx.api(f"resolution/{rid}"), "id": rid, "description": d, "name": n}
                for rid, n, d in _RESOLUTIONS
            ]
        )
