"""People: finding a user by any of their names, their JSON, and the user endpoints."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from aiohttp import web

from meshagent.sandbox.jira.base import (
    _ApiBase,
    _ApiError,
    _Ctx,
)


class _UserState:
    """JiraState's user lookups."""

    def find_user(self, ref: str) -> dict[str, Any] | None:
        """The user whose name, accountId, display name or email is ``ref`` (any case)."""
        wanted = ref.strip().lower()
        for user in self.users.values():
            if wanted in (
                user["name"].lower(),
                user["account_id"].lower(),
                user["display_name"].lower(),
                user["email"].lower(),
            ):
                return user
        return None


class _UserApi(_ApiBase):
    """Users as JSON, user references in request bodies, and /myself, /user, /user/search."""

    def user_json(self, ctx: _Ctx, user: dict[str, Any] | None) -> dict[str, Any] | None:
        if user is None:
            return None
        avatar = f"{ctx.base}/secure/useravatar?avatarId=10122"
        data: dict[str, Any] = {
            "self": ctx.api(
                f"user?accountId={user['account_id']}"
                if ctx.cloud
                else f"user?username={quote(user['name'])}"
            ),
        }
        if ctx.cloud:
            data |= {"accountId": user["account_id"], "accountType": "atlassian"}
        else:
            data |= {"name": user["name"], "key": user["key"]}
        data |= {
            "emailAddress": user["email"],
            "avatarUrls": {
                size: f"{avatar}&size={size}" for size in ("48x48", "24x24", "16x16", "32x32")
            },
            "displayName": user["display_name"],
            "active": user["active"],
            "timeZone": "Etc/UTC",
        }
        return data

    def user_ref(self, ctx: _Ctx, name: str | None) -> dict[str, Any] | None:
        return self.user_json(ctx, self.state.users[name.lower()]) if name else None

    def user_from(self, ref: Any) -> tuple[dict[str, Any] | None, str | None]:
        """The user a ``{"name"}``/``{"accountId"}`` reference names, or an error text."""
        if ref is None:
            return None, None
        if not isinstance(ref, dict):
            return None, f"Could not find a user for '{ref}'."
        key = "accountId" if self.state.cloud else "name"
        if key not in ref and ("id" if self.state.cloud else "key") in ref:
            key = "id" if self.state.cloud else "key"
        if key not in ref:
            other = "name" if self.state.cloud else "accountId"
            if other in ref:
                return None, (
                    "Specify the user by accountId; Jira Cloud does not accept user names."
                    if self.state.cloud
                    else "Specify the user by name; accountId is a Jira Cloud property."
                )
            return None, None
        value = ref[key]
        if value is None or str(value) == "-1":
            return None, None
        for user in self.state.users.values():
            ids = (
                (user["account_id"],)
                if self.state.cloud
                else (user["name"].lower(), user["key"].lower())
            )
            if (str(value) if self.state.cloud else str(value).lower()) in ids:
                return user, None
        return None, f"User '{value}' does not exist."

    async def myself(self, request: web.Request) -> web.Response:
        data = self.user_json(self.ctx(request), self.state.bot) or {}
        data |= {"locale": "en_US", "groups": {"size": 1, "items": []}, "expand": "groups"}
        return web.json_response(data)

    async def user(self, request: web.Request) -> web.Response:
        query = request.query
        ref = (
            query.get("accountId")
            if self.state.cloud
            else query.get("username") or query.get("key")
        )
        user = None
        if ref:
            user = next(
                (
                    u
                    for u in self.state.users.values()
                    if ref in ((u["account_id"],) if self.state.cloud else (u["name"], u["key"]))
                ),
                None,
            )
        if user is None:
            raise _ApiError(404, [f"The user named '{ref}' does not exist"])
        return web.json_response(self.user_json(self.ctx(request), user))

    async def user_search(self, request: web.Request) -> web.Response:
        query = request.query
        if self.state.cloud:
            if query.get("username") and not query.get("query"):
                raise _ApiError(
                    400, ["The query parameter 'username' is not supported in GDPR strict mode."]
                )
            term = query.get("query") or query.get("accountId")
            if not term:
                raise _ApiError(400, ["The query parameter 'query' is required."])
        else:
            term = query.get("username")
            if not term:
                raise _ApiError(400, ["The username query parameter was not provided"])
        start = self.integer(query.get("startAt"), 0, "startAt")
        limit = self.integer(query.get("maxResults"), 50, "maxResults")
        inactive = str(query.get("includeInactive", "false")).lower() == "true"
        active = str(query.get("includeActive", "true")).lower() != "false"
        wanted = term.lower()
        found = [
            u
            for u in self.state.users.values()
            if (u["active"] and active or not u["active"] and inactive)
            and any(
                wanted in str(u[k]).lower() for k in ("name", "account_id", "display_name", "email")
            )
        ]
        ctx = self.ctx(request)
        return web.json_response(
            [self.user_json(ctx, u) for u in found[max(start, 0) : max(start, 0) + max(limit, 0)]]
        )
