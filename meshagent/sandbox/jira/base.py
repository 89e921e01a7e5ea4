"""What every part of the sandbox Jira shares: constants, times, ADF, errors, request context."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from aiohttp import web

SERVER_TITLE = "MeshAgent sandbox"
_VERSIONS = {
    "Server": ("9.12.0", [9, 12, 0], 9120000),
    "Cloud": ("1001.0.0-SNAPSHOT", [1001, 0, 0], 100289),
}
_NOT_AUTHENTICATED = "You are not authenticated. Authentication required to perform this operation."
_NO_ISSUE = "Issue does not exist or you do not have permission to see it."
_NOT_ADF = "Operation value must be an Atlassian Document (see the Atlassian Document Format)"
_SEARCH_GONE = (
    "The requested API has been removed. Please migrate to the /rest/api/3/search/jql API. "
    "A full migration guideline is available at https://developer.atlassian.com/changelog/#CHANGE-2046"
)
_NOT_SETTABLE = "Field '{name}' cannot be set. It is not on the appropriate screen, or unknown."
_ISSUE_EXPAND = "renderedFields,names,schema,operations,editmeta,changelog,versionedRepresentations"
_PAGE_CAP = 100

_CATEGORIES: dict[str, dict[str, Any]] = {
    "new": {"id": 2, "key": "new", "colorName": "blue-gray", "name": "To Do"},
    "indeterminate": {
        "id": 4,
        "key": "indeterminate",
        "colorName": "yellow",
        "name": "In Progress",
    },
    "done": {"id": 3, "key": "done", "colorName": "green", "name": "Done"},
}
_PRIORITIES = ["Highest", "High", "Medium", "Low", "Lowest"]
_RESOLUTIONS = [
    ("10000", "Done", "Work has been completed on this issue."),
    ("10001", "Won't Do", "This issue won't be actioned."),
    ("10002", "Duplicate", "The problem is a duplicate of an existing issue."),
    ("10003", "Cannot Reproduce", "This issue could not be reproduced."),
]

# (id, name, clause names, schema type, orderable) as GET /field lists them.
_FIELDS: list[tuple[str, str, list[str], str | None]] = [
    ("issuekey", "Key", ["id", "issue", "issuekey", "key"], None),
    ("summary", "Summary", ["summary"], "string"),
    ("description", "Description", ["description"], "string"),
    ("status", "Status", ["status"], "status"),
    ("statusCategory", "Status Category", ["statusCategory"], "statusCategory"),
    ("issuetype", "Issue Type", ["issuetype", "type"], "issuetype"),
    ("project", "Project", ["project"], "project"),
    ("priority", "Priority", ["priority"], "priority"),
    ("assignee", "Assignee", ["assignee"], "user"),
    ("reporter", "Reporter", ["reporter"], "user"),
    ("labels", "Labels", ["labels"], "array"),
    ("fixVersions", "Fix Version/s", ["fixVersion"], "array"),
    ("created", "Created", ["created", "createdDate"], "datetime"),
    ("updated", "Updated", ["updated", "updatedDate"], "datetime"),
    ("duedate", "Due Date", ["due", "duedate"], "date"),
    ("resolution", "Resolution", ["resolution"], "resolution"),
    ("resolutiondate", "Resolved", ["resolutiondate", "resolved"], "datetime"),
    ("comment", "Comment", ["comment"], "comments-page"),
]
_ISSUE_FIELDS = [f[0] for f in _FIELDS if f[0] not in ("issuekey", "statusCategory")]


# -- times ------------------------------------------------------------------------------------

_PERIOD = re.compile(r"^([+-]?)\s*((?:\d+\s*[wdhm]\s*)+)$", re.IGNORECASE)
_PERIOD_PART = re.compile(r"(\d+)\s*([wdhm])", re.IGNORECASE)
_UNITS = {
    "w": timedelta(weeks=1),
    "d": timedelta(days=1),
    "h": timedelta(hours=1),
    "m": timedelta(minutes=1),
}


def _now() -> datetime:
    return datetime.now(UTC)


def _period(text: str) -> timedelta | None:
    """``-7d``, ``+2w``, ``4w 2d``, ``-30m`` as a signed timedelta; None if not a period."""
    match = _PERIOD.match(text.strip())
    if not match:
        return None
    total = sum(
        (int(n) * _UNITS[u.lower()] for n, u in _PERIOD_PART.findall(match[2])), timedelta()
    )
    return -total if match[1] == "-" else total


def _fmt(moment: datetime) -> str:
    """Jira's timestamp form: ``2026-11-20T10:00:00.000+0000``."""
    moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}+0000"


def _midnight(day: date) -> datetime:
    return datetime.combine(day, time(), UTC)


# -- Atlassian Document Format (v3) -------------------------------------------------------------


def _adf(text: str | None) -> dict[str, Any] | None:
    if text is None:
        return None
    paragraphs = [p for p in re.split(r"\n\s*\n", text) if p.strip()]
    return {
        "type": "doc",
        "version": 1,
        "content": [
            {"type": "paragraph", "content": [{"type": "text", "text": p}]} for p in paragraphs
        ],
    }


def _adf_text(node: Any) -> str:
    if isinstance(node, dict):
        if node.get("type") == "text":
            return str(node.get("text", ""))
        if node.get("type") == "hardBreak":
            return "\n"
        parts = [_adf_text(child) for child in node.get("content") or []]
        joiner = "\n\n" if node.get("type") == "doc" else ""
        return joiner.join(parts)
    if isinstance(node, list):
        return "".join(_adf_text(child) for child in node)
    return ""


# -- errors -----------------------------------------------------------------------------------


class _ApiError(Exception):
    """An error answer: status plus Jira's ``errorMessages``/``errors`` body."""

    def __init__(
        self, status: int, messages: list[str] | None = None, errors: dict[str, str] | None = None
    ) -> None:
        super().__init__(status, messages, errors)
        self.status = status
        self.body = {"errorMessages": messages or [], "errors": errors or {}}


# -- handlers ----------------------------------------------------------------------------------


@dataclass
class _Ctx:
    """Where a request came in: base URL and API version, for ``self`` links and bodies."""

    base: str
    version: str
    cloud: bool

    def api(self, path: str) -> str:
        return f"{self.base}/rest/api/{self.version}/{path}"

    @property
    def adf(self) -> bool:
        return self.version == "3"

    def text(self, value: str | None) -> Any:
        return _adf(value) if self.adf else value


class _ApiBase:
    """What every group of request handlers shares: the state, a request's context and body."""

    state: Any  # the JiraState the handlers serve (set by _Api in app.py)

    def ctx(self, request: web.Request) -> _Ctx:
        path = request.path
        prefix = path[: path.find("/rest/api/")] if "/rest/api/" in path else ""
        return _Ctx(
            f"{request.url.origin()}{prefix}".rstrip("/"),
            request.match_info.get("version", "2"),
            self.state.cloud,
        )

    async def body(self, request: web.Request) -> dict[str, Any]:
        raw = await request.read()
        if not raw.strip():
            raise _ApiError(400, ["No content to map to Object due to end of input"])
        try:
            data = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            raise _ApiError(400, ["Unexpected character in the JSON request body."]) from None
        if not isinstance(data, dict):
            raise _ApiError(400, ["The request body must be a JSON object."])
        return data

    def issue_or_404(self, request: web.Request) -> dict[str, Any]:
        issue = self.state.find_issue(request.match_info["key"])
        if issue is None:
            raise _ApiError(404, [_NO_ISSUE])
        return issue

    @staticmethod
    def integer(value: Any, default: int, name: str) -> int:
        if value is None or value == "":
            return default
        try:
            return int(value)
        except (TypeError, ValueError):
            raise _ApiError(
                400, [f"The value '{value}' is not a valid number for {name}."]
            ) from None

    def touch(self, issue: dict[str, Any]) -> None:
        issue["updated"] = _now()


def _not_found(request: web.Request) -> web.Response:
    return web.json_response(
        {"message": f"null for uri: {request.url}", "status-code": 404}, status=404
    )
