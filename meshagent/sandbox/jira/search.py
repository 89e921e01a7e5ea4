"""Search: JQL evaluated over the issues, and the /search endpoints with their page tokens."""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web

from meshagent.sandbox.jira.base import (
    _CATEGORIES,
    _PAGE_CAP,
    _RESOLUTIONS,
    _SEARCH_GONE,
    _UNITS,
    _ApiBase,
    _ApiError,
    _midnight,
    _not_found,
    _now,
    _period,
)
from meshagent.sandbox.jira.jql import (
    _BAD_DATE,
    _COMPARE,
    _DATE_FUNCTIONS,
    _EMPTINESS,
    _JQL_FIELDS,
    _KEY,
    _KINDS,
    _OPS,
    _RANGE,
    _UNSORTABLE,
    _Bool,
    _Clause,
    _JqlInvalid,
    _JqlSyntax,
    _Not,
    _Operand,
    _Parser,
    _text_matcher,
)

_JQL_DATE = re.compile(r"^(\d{4})[-/](\d{1,2})[-/](\d{1,2})(?:\s+(\d{1,2}):(\d{2}))?$")


def _add_months(moment: datetime, months: int) -> datetime:
    index = moment.month - 1 + months
    year, month = moment.year + index // 12, index % 12 + 1
    last = [
        31,
        29 if year % 4 == 0 and (year % 100 or year % 400 == 0) else 28,
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ][month - 1]
    return moment.replace(year=year, month=month, day=min(moment.day, last))


class _SearchState:
    """JiraState's search: a JQL query compiled to a predicate and a sort order."""

    def search(self, jql: str) -> list[dict[str, Any]]:
        """The issue records matching ``jql``, in its order; ValueError for a bad query."""
        return self._run(jql)[0]

    def _run(self, jql: str) -> tuple[list[dict[str, Any]], bool]:
        """Issues matching ``jql`` in its order, and whether the query had a restriction.

        Raises _JqlSyntax or _JqlInvalid (answered as HTTP 400).
        """
        query = _Parser(jql).parse()
        now = _now()
        predicate = self._compile(query.where, now) if query.where is not None else None
        order = [(self._sorter(name), desc) for name, desc, _ in query.order]
        if not order:
            order = [(lambda i: i["created"], True)]
        found = [i for i in self.issues.values() if predicate is None or predicate(i)]
        found.sort(key=lambda i: int(i["id"]), reverse=True)
        for value, desc in reversed(order):

            def sort_key(issue: dict[str, Any], value: Any = value) -> tuple[bool, Any]:
                v = value(issue)
                return (v is None, 0 if v is None else v)

            found.sort(key=sort_key, reverse=desc)
        return found, query.where is not None

    def _canonical(self, name: str) -> str:
        canonical = _JQL_FIELDS.get(name.lower())
        if canonical is None:
            raise _JqlInvalid(
                f"Field '{name}' does not exist or you do not have permission to view it."
            )
        return canonical

    def _compile(self, node: Any, now: datetime) -> Callable[[dict[str, Any]], bool]:
        if isinstance(node, _Bool):
            left, right = self._compile(node.left, now), self._compile(node.right, now)
            if node.op == "and":
                return lambda i: left(i) and right(i)
            return lambda i: left(i) or right(i)
        if isinstance(node, _Not):
            inner = self._compile(node.inner, now)
            return lambda i: not inner(i)
        return self._clause(node, now)

    def _clause(self, clause: _Clause, now: datetime) -> Callable[[dict[str, Any]], bool]:
        canonical = self._canonical(clause.field)
        kind, op, name = _KINDS[canonical], clause.op, clause.field
        if op not in _OPS[kind]:
            raise _JqlInvalid(f"The operator '{op}' is not supported by the '{name}' field.")
        get = self._getter(canonical)
        if op in _EMPTINESS:
            want = op == "is"
            return lambda i: (not get(i)) == want
        if kind == "text":
            matcher = _text_matcher(self._plain_value(clause.values[0], name), name)
            if op == "~":
                return lambda i: matcher(get(i))
            return lambda i: bool(get(i)) and not matcher(get(i))
        want_empty = any(v.kind == "empty" for v in clause.values)
        values = [v for v in clause.values if v.kind != "empty"]
        if op in _RANGE:
            if want_empty or not values:
                raise _JqlInvalid(f"The operator '{op}' does not support the value 'EMPTY'.")
            return self._range(canonical, kind, op, values[0], name, now)
        if kind == "date":
            moments = [self._date_value(v, name, now) for v in values]
            if op in ("=", "in"):
                return lambda i: (get(i) is None and want_empty) or get(i) in moments
            return lambda i: get(i) is not None and get(i) not in moments
        targets = {self._resolve(canonical, v, name) for v in values}
        targets.discard(None)
        if canonical == "resolution" and any(
            v.kind != "empty" and self._plain_value(v, name).lower() == "unresolved" for v in values
        ):
            want_empty = True
        if op in ("=", "in"):
            return lambda i: bool(set(get(i)) & targets) or (want_empty and not get(i))
        return lambda i: bool(get(i)) and not set(get(i)) & targets

    def _plain_value(self, operand: _Operand, name: str) -> str:
        if operand.kind == "func":
            raise _JqlInvalid(
                f"The function '{operand.text}' is not supported by the field '{name}'."
            )
        return operand.text

    def _getter(self, canonical: str) -> Callable[[dict[str, Any]], Any]:
        def one(value: Any) -> list[str]:
            return [str(value).lower()] if value is not None else []

        def comments(issue: dict[str, Any]) -> str:
            return "\n".join(c["body"] for c in issue["comments"])

        getters: dict[str, Callable[[dict[str, Any]], Any]] = {
            "project": lambda i: one(i["project"]),
            "key": lambda i: one(i["key"]),
            "status": lambda i: one(i["status"]),
            "statusCategory": lambda i: [self.status(i["status"])["category"]],
            "issuetype": lambda i: one(i["type"]),
            "priority": lambda i: one(i["priority"]),
            "resolution": lambda i: ["done"] if i["resolved"] else [],
            "assignee": lambda i: one(i["assignee"]),
            "reporter": lambda i: one(i["reporter"]),
            "labels": lambda i: [label.lower() for label in i["labels"]],
            "fixVersion": lambda i: [v.lower() for v in i["fix_versions"]],
            "created": lambda i: i["created"],
            "updated": lambda i: i["updated"],
            "duedate": lambda i: _midnight(i["due"]) if i["due"] else None,
            "resolved": lambda i: i["resolved"],
            "summary": lambda i: i["summary"],
            "description": lambda i: i["description"] or "",
            "comment": comments,
            "text": lambda i: "\n".join(
                [i["summary"], i["description"] or "", comments(i)]
            ).strip(),
        }
        return getters[canonical]

    def _resolve(self, canonical: str, operand: _Operand, name: str) -> str | None:
        """The lower-case canonical name a value stands for; raises for unknown values."""
        if operand.kind == "func":
            if operand.text.lower() == "currentuser" and canonical in ("assignee", "reporter"):
                return self.bot["name"].lower()
            self._unknown_function(operand, name)
        text = operand.text
        found: Any = None
        if canonical == "project":
            found = self._find_project(text)
            found = found and found["key"]
        elif canonical == "status":
            found = next(
                (s["name"] for s in self.statuses if text.lower() in (s["name"].lower(), s["id"])),
                None,
            )
        elif canonical == "statusCategory":
            found = next(
                (
                    k
                    for k, c in _CATEGORIES.items()
                    if text.lower() in (k, c["name"].lower(), str(c["id"]))
                ),
                None,
            )
        elif canonical == "issuetype":
            found = self._find_type(text)
            found = found and found["name"]
        elif canonical == "priority":
            found = self._find_priority(text)
            found = found and found["name"]
        elif canonical == "resolution":
            if text.lower() == "unresolved":
                return None
            found = next((n for i, n, _ in _RESOLUTIONS if text.lower() in (n.lower(), i)), None)
        elif canonical in ("assignee", "reporter"):
            found = self.find_user(text)
            found = found and found["name"]
        elif canonical == "labels":
            found = text
        elif canonical == "fixVersion":
            found = next((v for v in self.versions if v.lower() == text.lower()), None)
        elif canonical == "key":
            issue = self.find_issue(text)
            if issue is None:
                raise _JqlInvalid(f"An issue with key '{text}' does not exist for field '{name}'.")
            found = issue["key"]
        if found is None:
            raise _JqlInvalid(f"The value '{text}' does not exist for the field '{name}'.")
        return str(found).lower()

    def _unknown_function(self, operand: _Operand, name: str) -> None:
        known = _DATE_FUNCTIONS | {"currentuser"}
        if operand.text.lower() not in known:
            raise _JqlInvalid(f"Unable to find JQL function '{operand.text}()'.")
        raise _JqlInvalid(f"The function '{operand.text}' is not supported by the field '{name}'.")

    def _range(
        self, canonical: str, kind: str, op: str, operand: _Operand, name: str, now: datetime
    ) -> Callable[[dict[str, Any]], bool]:
        compare = _COMPARE[op]
        if kind == "date":
            get = self._getter(canonical)
            moment = self._date_value(operand, name, now)
            return lambda i: get(i) is not None and compare(get(i), moment)
        if kind == "priority":
            wanted = self._resolve(canonical, operand, name)
            rank = {p["name"].lower(): -n for n, p in enumerate(self.priorities)}
            return lambda i: (
                i["priority"] is not None
                and compare(rank[i["priority"].lower()], rank[str(wanted)])
            )
        text = self._plain_value(operand, name)
        match = _KEY.match(text)
        if not match:
            raise _JqlInvalid(f"The issue key '{text}' for field '{name}' is invalid.")
        project, number = match[1].upper(), int(match[2])
        return lambda i: (
            i["project"] == project and compare(int(i["key"].rsplit("-", 1)[1]), number)
        )

    def _date_value(self, operand: _Operand, name: str, now: datetime) -> datetime:
        if operand.kind == "func":
            return self._date_function(operand, name, now)
        text = operand.text.strip()
        delta = _period(text)
        if delta is not None:
            return now + delta
        match = _JQL_DATE.match(text)
        if match:
            try:
                return datetime(
                    int(match[1]),
                    int(match[2]),
                    int(match[3]),
                    int(match[4] or 0),
                    int(match[5] or 0),
                    tzinfo=UTC,
                )
            except ValueError:
                pass
        raise _JqlInvalid(_BAD_DATE.format(value=operand.text, field=name))

    def _date_function(self, operand: _Operand, name: str, now: datetime) -> datetime:
        fn = operand.text.lower()
        if fn not in _DATE_FUNCTIONS:
            self._unknown_function(operand, name)
        if fn == "now":
            return now
        unit = fn.removeprefix("start").removeprefix("end").removeprefix("of")
        start = now.replace(hour=0, minute=0, second=0, microsecond=0)
        if unit == "week":
            start -= timedelta(days=start.weekday())
        elif unit == "month":
            start = start.replace(day=1)
        elif unit == "year":
            start = start.replace(month=1, day=1)
        default_unit = {"day": "d", "week": "w", "month": "M", "year": "y"}[unit]
        amount, step = 0, default_unit
        if operand.args:
            match = re.fullmatch(r"\s*([+-]?\d+)\s*([yMwdhm]?)\s*", operand.args[0])
            if not match:
                raise _JqlInvalid(
                    f"The function '{operand.text}' got an invalid increment '{operand.args[0]}'."
                )
            amount, step = int(match[1]), match[2] or default_unit

        def shift(moment: datetime, count: int, by: str) -> datetime:
            if by == "y":
                return _add_months(moment, 12 * count)
            if by == "M":
                return _add_months(moment, count)
            return moment + count * _UNITS[by]

        if fn.startswith("start"):
            return shift(start, amount, step)
        if step == default_unit:
            return shift(start, amount + 1, step) - timedelta(milliseconds=1)
        return shift(shift(start, 1, default_unit) - timedelta(milliseconds=1), amount, step)

    def _sorter(self, name: str) -> Callable[[dict[str, Any]], Any]:
        canonical = self._canonical(name)
        if canonical in _UNSORTABLE:
            raise _JqlInvalid(f"Field '{name}' does not support sorting.")
        rank = {p["name"]: len(self.priorities) - n for n, p in enumerate(self.priorities)}
        order = {s["name"]: n for n, s in enumerate(self.statuses)}
        categories = list(_CATEGORIES)

        def user(ref: str | None) -> str | None:
            return self.users[ref.lower()]["display_name"].lower() if ref else None

        values: dict[str, Callable[[dict[str, Any]], Any]] = {
            "key": lambda i: (i["project"], int(i["key"].rsplit("-", 1)[1])),
            "project": lambda i: self.projects[i["project"]]["name"].lower(),
            "status": lambda i: order[i["status"]],
            "statusCategory": lambda i: categories.index(self.status(i["status"])["category"]),
            "priority": lambda i: rank[i["priority"]] if i["priority"] else None,
            "issuetype": lambda i: i["type"].lower(),
            "resolution": lambda i: "done" if i["resolved"] else None,
            "assignee": lambda i: user(i["assignee"]),
            "reporter": lambda i: user(i["reporter"]),
            "created": lambda i: i["created"],
            "updated": lambda i: i["updated"],
            "resolved": lambda i: i["resolved"],
            "duedate": lambda i: i["due"],
            "summary": lambda i: i["summary"].lower(),
            "fixVersion": lambda i: min(i["fix_versions"]).lower() if i["fix_versions"] else None,
        }
        return values[canonical]


# -- rendering --------------------------------------------------------------------------------


class _SearchApi(_ApiBase):
    """The /search (Server) and /search/jql (Cloud) endpoints."""

    async def search_params(self, request: web.Request) -> dict[str, Any]:
        if request.method == "POST":
            body = await self.body(request)
            fields = body.get("fields")
            body["fields"] = fields if isinstance(fields, list) else [fields]
            return body
        query = request.query
        params: dict[str, Any] = {k: query.get(k) for k in query}
        params["fields"] = query.getall("fields", [])
        return params

    def run_jql(self, jql: str) -> tuple[list[dict[str, Any]], bool]:
        try:
            return self.state._run(jql)
        except (_JqlSyntax, _JqlInvalid) as exc:
            raise _ApiError(400, [str(exc)]) from None

    async def search(self, request: web.Request) -> web.Response:
        if self.state.cloud:
            raise _ApiError(410, [_SEARCH_GONE])
        params = await self.search_params(request)
        start = max(self.integer(params.get("startAt"), 0, "startAt"), 0)
        limit = min(max(self.integer(params.get("maxResults"), 50, "maxResults"), 0), _PAGE_CAP)
        fields = self.field_selection(params["fields"], None)
        found, _ = self.run_jql(str(params.get("jql") or ""))
        ctx = self.ctx(request)
        return web.json_response(
            {
                "expand": "schema,names",
                "startAt": start,
                "maxResults": limit,
                "total": len(found),
                "issues": [self.issue_json(ctx, i, fields) for i in found[start : start + limit]],
            }
        )

    async def search_jql(self, request: web.Request) -> web.Response:
        if not self.state.cloud:
            return _not_found(request)
        params = await self.search_params(request)
        jql = str(params.get("jql") or "")
        limit = min(max(self.integer(params.get("maxResults"), 50, "maxResults"), 1), _PAGE_CAP)
        start = _token_offset(params.get("nextPageToken"), jql)
        found, bounded = self.run_jql(jql)
        if not bounded:
            raise _ApiError(
                400,
                [
                    "Unbounded JQL queries are not allowed here. Please add a search restriction "
                    "to your query."
                ],
            )
        fields = self.field_selection(params["fields"], None)
        ctx = self.ctx(request)
        page = found[start : start + limit]
        issues = [
            {"id": i["id"]} if fields is None else self.issue_json(ctx, i, fields) for i in page
        ]
        data: dict[str, Any] = {"issues": issues}
        end = start + len(page)
        if end < len(found):
            data["nextPageToken"] = _token(end, jql)
        data["isLast"] = end >= len(found)
        return web.json_response(data)


# -- next page tokens -------------------------------------------------------------------------


def _token(offset: int, jql: str) -> str:
    digest = hashlib.sha256(jql.encode()).hexdigest()[:16]
    raw = json.dumps({"o": offset, "q": digest}).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _token_offset(token: Any, jql: str) -> int:
    if not token:
        return 0
    try:
        text = str(token)
        data = json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
        offset = int(data["o"])
        same = data["q"] == hashlib.sha256(jql.encode()).hexdigest()[:16]
    except (ValueError, KeyError, TypeError, binascii.Error):
        same, offset = False, -1
    if not same or offset < 0:
        raise _ApiError(400, ["The provided next page token is invalid or expired."])
    return offset


# -- the app ----------------------------------------------------------------------------------
