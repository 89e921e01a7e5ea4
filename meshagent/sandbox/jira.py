"""A local Jira REST API (Server/Data Center or Cloud) for tests and demos, on aiohttp.

Faithful in request and response shapes to what the ``jira`` package sends and parses: issues,
comments, users, statuses and projects carry ``self`` links so that they become the same
Resource objects as against a real site. Searches run a small JQL evaluator (fields, operators,
functions, ORDER BY) over the seeded issues; writes (create, comment, transition, assign) change
them and are recorded on :class:`JiraState` for assertions.

Routes live under ``/rest/api/{2,3,latest}/``; version 3 speaks the Atlassian Document Format
for descriptions and comment bodies, as Cloud does.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from urllib.parse import quote

import yaml
from aiohttp import web

__all__ = ["DEFAULT_JIRA_SEED", "JIRA_STATE_KEY", "JiraState", "build_jira_app"]

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


# -- times ------------------------------------------------------------------------------------

_PERIOD = re.compile(r"^([+-]?)\s*((?:\d+\s*[wdhm]\s*)+)$", re.IGNORECASE)
_PERIOD_PART = re.compile(r"(\d+)\s*([wdhm])", re.IGNORECASE)
_UNITS = {
    "w": timedelta(weeks=1),
    "d": timedelta(days=1),
    "h": timedelta(hours=1),
    "m": timedelta(minutes=1),
}
_JQL_DATE = re.compile(r"^(\d{4})[-/](\d{1,2})[-/](\d{1,2})(?:\s+(\d{1,2}):(\d{2}))?$")


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


class _JqlSyntax(ValueError):
    def __init__(self, message: str, position: int) -> None:
        super().__init__(f"Error in the JQL Query: {message} (line 1, character {position})")


class _JqlInvalid(ValueError):
    """A well-formed query that names an unknown field, value or function."""


# -- JQL: tokens and syntax -------------------------------------------------------------------


@dataclass
class _Tok:
    kind: str  # word, str, op, lp, rp, comma, eof
    text: str
    pos: int


@dataclass
class _Operand:
    kind: str  # word, str, func, empty
    text: str
    pos: int
    args: tuple[str, ...] = ()


@dataclass
class _Clause:
    field: str
    op: str
    values: list[_Operand]
    pos: int


@dataclass
class _Bool:
    op: str
    left: Any
    right: Any


@dataclass
class _Not:
    inner: Any


@dataclass
class _Query:
    where: Any
    order: list[tuple[str, bool, int]] = field(default_factory=list)


_SPECIAL = set("\"'(),=!<>~&|")
_RESERVED = {"and", "or", "not", "in", "is", "order", "by", "was", "changed", "empty", "null"}
_VALID_OPS = (
    "The valid operators are '=', '!=', '<', '>', '<=', '>=', '~', '!~', 'IN', 'NOT IN', 'IS' "
    "and 'IS NOT'."
)


def _tokenize(jql: str) -> list[_Tok]:
    tokens: list[_Tok] = []
    i, n = 0, len(jql)
    while i < n:
        char = jql[i]
        if char.isspace():
            i += 1
            continue
        pos = i + 1
        if char in "\"'":
            j, buf = i + 1, []
            while j < n and jql[j] != char:
                if jql[j] == "\\" and j + 1 < n:
                    nxt = jql[j + 1]
                    buf.append({"n": "\n", "t": "\t", "r": "\r"}.get(nxt, nxt))
                    j += 2
                    continue
                buf.append(jql[j])
                j += 1
            if j >= n:
                raise _JqlSyntax(f"The quoted string '{''.join(buf)}' has not been completed.", pos)
            tokens.append(_Tok("str", "".join(buf), pos))
            i = j + 1
            continue
        if char in "(),":
            tokens.append(_Tok({"(": "lp", ")": "rp", ",": "comma"}[char], char, pos))
            i += 1
            continue
        two = jql[i : i + 2]
        if two in ("!=", "!~", ">=", "<=", "&&", "||"):
            tokens.append(_Tok("op", two, pos))
            i += 2
            continue
        if char in "=~<>!":
            tokens.append(_Tok("op", char, pos))
            i += 1
            continue
        if char in "&|":
            raise _JqlSyntax(f"The character '{char}' is a reserved JQL character.", pos)
        # An unquoted word may escape any character with a backslash, as in Jira's own lexer
        # (\" is a quote inside the word, \) a parenthesis, \u0029 too).
        j, word = i, []
        while j < n and not jql[j].isspace() and jql[j] not in _SPECIAL:
            if jql[j] == "\\" and j + 1 < n:
                escaped, j = _escape(jql, j + 1)
                word.append(escaped)
                continue
            word.append(jql[j])
            j += 1
        tokens.append(_Tok("word", "".join(word), pos))
        i = j
    tokens.append(_Tok("eof", "", n + 1))
    return tokens


def _escape(jql: str, at: int) -> tuple[str, int]:
    """The character escaped at ``jql[at]`` (after a backslash) and the index after it."""
    char = jql[at]
    if char == "u" and re.fullmatch(r"[0-9a-fA-F]{4}", jql[at + 1 : at + 5]):
        return chr(int(jql[at + 1 : at + 5], 16)), at + 5
    return {"n": "\n", "t": "\t", "r": "\r"}.get(char, char), at + 1


class _Parser:
    """Recursive descent: or := and (OR and)*; and := not (AND not)*; not := NOT not | ( or ) |
    clause; then an optional ORDER BY."""

    def __init__(self, jql: str) -> None:
        self.tokens = _tokenize(jql)
        self.i = 0

    @property
    def tok(self) -> _Tok:
        return self.tokens[self.i]

    def take(self) -> _Tok:
        tok = self.tokens[self.i]
        self.i = min(self.i + 1, len(self.tokens) - 1)
        return tok

    def word(self, *words: str) -> bool:
        return self.tok.kind == "word" and self.tok.text.lower() in words

    def fail(self, expecting: str, suffix: str = "") -> None:
        tok = self.tok
        if tok.kind == "eof":
            raise _JqlSyntax(f"{expecting} but reached the end of the query.", tok.pos)
        raise _JqlSyntax(f"{expecting} but got '{tok.text}'.{suffix}", tok.pos)

    def parse(self) -> _Query:
        where = None
        if self.tok.kind != "eof" and not self.word("order"):
            where = self.or_expr()
        order: list[tuple[str, bool, int]] = []
        if self.word("order"):
            self.take()
            if not self.word("by"):
                self.fail("Expecting 'by'")
            self.take()
            order = self.order_list()
        if self.tok.kind != "eof":
            self.fail("Expecting either 'OR' or 'AND'")
        return _Query(where, order)

    def or_expr(self) -> Any:
        node = self.and_expr()
        while self.word("or") or (self.tok.kind == "op" and self.tok.text == "||"):
            self.take()
            node = _Bool("or", node, self.and_expr())
        return node

    def and_expr(self) -> Any:
        node = self.not_expr()
        while self.word("and") or (self.tok.kind == "op" and self.tok.text == "&&"):
            self.take()
            node = _Bool("and", node, self.not_expr())
        return node

    def not_expr(self) -> Any:
        if self.word("not") or (self.tok.kind == "op" and self.tok.text == "!"):
            self.take()
            return _Not(self.not_expr())
        if self.tok.kind == "lp":
            self.take()
            node = self.or_expr()
            if self.tok.kind != "rp":
                self.fail(
                    "Expecting ')'" if self.tok.kind == "eof" else "Expecting either 'OR' or 'AND'"
                )
            self.take()
            return node
        return self.clause()

    def field_name(self) -> _Tok:
        tok = self.tok
        if tok.kind == "str" or (tok.kind == "word" and tok.text.lower() not in _RESERVED):
            return self.take()
        self.fail("Expecting a field name")
        raise AssertionError("unreachable")

    def clause(self) -> _Clause:
        name = self.field_name()
        op = self.operator()
        if op in ("in", "not in"):
            values = self.value_list()
        elif op in ("is", "is not"):
            if not self.word("empty", "null"):
                self.fail("Expecting 'EMPTY' or 'NULL'")
            tok = self.take()
            values = [_Operand("empty", tok.text, tok.pos)]
        else:
            if self.tok.kind == "lp":
                self.fail(
                    f"The operator '{op}' does not support a list of values. Expecting a value"
                )
            values = [self.operand()]
        return _Clause(name.text, op, values, name.pos)

    def operator(self) -> str:
        tok = self.tok
        if tok.kind == "op" and tok.text in ("=", "!=", ">", ">=", "<", "<=", "~", "!~"):
            self.take()
            return tok.text
        if self.word("in"):
            self.take()
            return "in"
        if self.word("is"):
            self.take()
            if self.word("not"):
                self.take()
                return "is not"
            return "is"
        if self.word("not"):
            self.take()
            if not self.word("in"):
                self.fail("Expecting 'IN'")
            self.take()
            return "not in"
        if self.word("was", "changed"):
            raise _JqlSyntax(
                f"The history operator '{tok.text.upper()}' is not supported by the "
                f"{SERVER_TITLE}.",
                tok.pos,
            )
        self.fail("Expecting operator", f" {_VALID_OPS}")
        raise AssertionError("unreachable")

    def value_list(self) -> list[_Operand]:
        following = self.tokens[min(self.i + 1, len(self.tokens) - 1)]
        if self.tok.kind == "word" and following.kind == "lp":
            return [self.operand()]  # a function giving a list, e.g. membersOf(devs)
        if self.tok.kind != "lp":
            self.fail("Expecting '('")
        self.take()
        values = [self.operand()]
        while self.tok.kind == "comma":
            self.take()
            values.append(self.operand())
        if self.tok.kind != "rp":
            self.fail("Expecting ')'" if self.tok.kind == "eof" else "Expecting ',' or ')'")
        self.take()
        return values

    def operand(self) -> _Operand:
        tok = self.tok
        if tok.kind == "str":
            self.take()
            return _Operand("str", tok.text, tok.pos)
        if tok.kind != "word":
            self.fail("Expecting either a value, list or function")
        lowered = tok.text.lower()
        if lowered in ("empty", "null"):
            self.take()
            return _Operand("empty", tok.text, tok.pos)
        if lowered in _RESERVED:
            self.fail(
                "Expecting either a value, list or function",
                f" You must surround '{tok.text}' in quotation marks to use it as a value.",
            )
        self.take()
        if self.tok.kind != "lp":
            return _Operand("word", tok.text, tok.pos)
        self.take()
        args: list[str] = []
        while self.tok.kind != "rp":
            if self.tok.kind not in ("word", "str"):
                self.fail("Expecting a function argument or ')'")
            args.append(self.take().text)
            if self.tok.kind == "comma":
                self.take()
            elif self.tok.kind != "rp":
                self.fail("Expecting ',' or ')'")
        self.take()
        return _Operand("func", tok.text, tok.pos, tuple(args))

    def order_list(self) -> list[tuple[str, bool, int]]:
        order = []
        while True:
            name = self.field_name()
            desc = False
            if self.word("asc", "desc"):
                desc = self.take().text.lower() == "desc"
            order.append((name.text, desc, name.pos))
            if self.tok.kind != "comma":
                return order
            self.take()


# -- JQL: fields and evaluation ---------------------------------------------------------------

_JQL_FIELDS = {
    "project": "project",
    "key": "key",
    "issuekey": "key",
    "id": "key",
    "issue": "key",
    "status": "status",
    "statuscategory": "statusCategory",
    "assignee": "assignee",
    "reporter": "reporter",
    "priority": "priority",
    "issuetype": "issuetype",
    "type": "issuetype",
    "labels": "labels",
    "fixversion": "fixVersion",
    "created": "created",
    "createddate": "created",
    "updated": "updated",
    "updateddate": "updated",
    "duedate": "duedate",
    "due": "duedate",
    "resolution": "resolution",
    "resolved": "resolved",
    "resolutiondate": "resolved",
    "summary": "summary",
    "description": "description",
    "text": "text",
    "comment": "comment",
}
_KINDS = {
    "project": "named",
    "status": "named",
    "statusCategory": "named",
    "issuetype": "named",
    "resolution": "named",
    "priority": "priority",
    "assignee": "user",
    "reporter": "user",
    "labels": "list",
    "fixVersion": "list",
    "key": "key",
    "created": "date",
    "updated": "date",
    "duedate": "date",
    "resolved": "date",
    "summary": "text",
    "description": "text",
    "text": "text",
    "comment": "text",
}
_EQUALITY = {"=", "!=", "in", "not in"}
_RANGE = {">", ">=", "<", "<="}
_EMPTINESS = {"is", "is not"}
_OPS = {
    "named": _EQUALITY | _EMPTINESS,
    "priority": _EQUALITY | _EMPTINESS | _RANGE,
    "user": _EQUALITY | _EMPTINESS,
    "list": _EQUALITY | _EMPTINESS,
    "key": _EQUALITY | _RANGE,
    "date": _EQUALITY | _EMPTINESS | _RANGE,
    "text": {"~", "!~"} | _EMPTINESS,
}
_UNSORTABLE = {"text", "comment", "description", "labels"}
_DATE_FUNCTIONS = {
    "now",
    "startofday",
    "endofday",
    "startofweek",
    "endofweek",
    "startofmonth",
    "endofmonth",
    "startofyear",
    "endofyear",
}
_KEY = re.compile(r"^([A-Za-z][A-Za-z0-9_]*)-(\d+)$")
_COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
}
_BAD_DATE = (
    "Date value '{value}' for field '{field}' is invalid. Valid formats include: "
    "'yyyy/MM/dd HH:mm', 'yyyy-MM-dd HH:mm', 'yyyy/MM/dd', 'yyyy-MM-dd', or a period format "
    "e.g. '-5d', '4w 2d'."
)


def _stem(word: str) -> str:
    for suffix, replacement in (("ies", "y"), ("ing", ""), ("ed", ""), ("es", ""), ("s", "")):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            if suffix == "es" and not word[:-2].endswith(("s", "x", "z", "ch", "sh")):
                continue
            word = word[: -len(suffix)] + replacement
            break
    return word[:-1] if word.endswith("e") and len(word) > 3 else word


def _text_matcher(query: str, name: str) -> Callable[[str], bool]:
    """Jira-like text search: every term (stemmed, ``*``/``?`` wildcards) or quoted phrase must
    occur; ``-term`` must not."""
    phrases = [" ".join(re.findall(r"\w+", p.lower())) for p in re.findall(r'"([^"]*)"', query)]
    rest = re.sub(r'"[^"]*"', " ", query)
    terms: list[tuple[bool, Callable[[list[str], set[str]], bool]]] = []
    for raw in re.findall(r"[-+]?[\w*?]+", rest):
        if raw in ("AND", "OR", "NOT", "&&", "||"):
            continue
        negate, word = raw.startswith("-"), raw.lstrip("+-").lower()
        if not word.strip("*?"):
            continue
        if "*" in word or "?" in word:
            pattern = re.compile(re.escape(word).replace(r"\*", r"\w*").replace(r"\?", r"\w"))
            terms.append((negate, lambda words, _, p=pattern: any(p.fullmatch(w) for w in words)))
        else:
            stem = _stem(word)
            terms.append((negate, lambda _, stems, s=stem: s in stems))
    phrases = [p for p in phrases if p]
    if not phrases and not terms:
        raise _JqlInvalid(f"The field '{name}' does not support searching for an empty string.")

    def match(text: str) -> bool:
        words = re.findall(r"\w+", text.lower())
        stems = {_stem(w) for w in words}
        padded = f" {' '.join(words)} "
        if any(f" {p} " not in padded for p in phrases):
            return False
        return all(hit(words, stems) != negate for negate, hit in terms)

    return match


# -- the state --------------------------------------------------------------------------------


class JiraState:
    """The seeded site and a record of every request it received."""

    def __init__(
        self,
        seed: dict[str, Any],
        *,
        deployment: str = "Server",
        token: str = "sandbox-pat",
        email: str = "bot@example.com",
        api_token: str = "sandbox-api-token",
    ) -> None:
        if deployment not in ("Server", "Cloud"):
            raise ValueError(f"deployment must be 'Server' or 'Cloud', got {deployment!r}")
        self.deployment = deployment
        self.cloud = deployment == "Cloud"
        self.token, self.email, self.api_token = token, email, api_token
        self.requests: list[tuple[str, str]] = []
        #: Every request as it arrived: method, raw path and query (not percent-decoded), body.
        self.received: list[tuple[str, str, bytes]] = []
        self.created: list[str] = []
        self.comments_added: list[tuple[str, str]] = []
        self.transitions_done: list[tuple[str, str]] = []
        self.assignments: list[tuple[str, str | None]] = []
        seed = seed or {}
        now = _now()

        self.users: dict[str, dict[str, Any]] = {}
        self.bot = self._add_user(seed.get("bot") or _DEFAULT_BOT)
        for spec in seed.get("users") or []:
            self._add_user(spec)

        self.statuses = [
            self._status_spec(s, i) for i, s in enumerate(seed.get("statuses") or _DEFAULT_STATUSES)
        ]
        transitions = seed.get("transitions")
        if transitions is None:  # the default workflow, as far as the seeded statuses go
            names = {s["name"].lower() for s in self.statuses}
            transitions = [
                t | {"from": [s for s in t["from"] if s.lower() in names]}
                for t in _DEFAULT_TRANSITIONS
                if t["to"].lower() in names and (any(s.lower() in names for s in t["from"]))
            ]
        self.transitions = [self._transition_spec(t, i) for i, t in enumerate(transitions)]
        self.priorities = [
            {"id": str(i + 1), "name": str(name)}
            for i, name in enumerate(seed.get("priorities") or _PRIORITIES)
        ]
        self.issue_types: dict[str, dict[str, Any]] = {}
        self.projects: dict[str, dict[str, Any]] = {}
        self.versions: dict[str, str] = {}
        for i, spec in enumerate(seed.get("projects") or []):
            self._add_project(spec, i)

        self.issues: dict[str, dict[str, Any]] = {}
        self._next_issue_id = 10001
        self._next_comment_id = 10001
        for spec in seed.get("issues") or []:
            self._add_seed_issue(spec, now)

    # -- seeding ---------------------------------------------------------------------------------

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

    def _status_named(self, name: Any, where: str) -> dict[str, Any]:
        for status in self.statuses:
            if status["name"].lower() == str(name).lower():
                return status
        raise ValueError(f"seed: jira {where}: unknown status {name!r}")

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

    # -- lookups ---------------------------------------------------------------------------------

    def writes(self) -> list[tuple[str, str]]:
        """(METHOD, path) of every request that is not a read (GET, HEAD, OPTIONS)."""
        return [(m, p) for m, p in self.requests if m not in ("GET", "HEAD", "OPTIONS")]

    def status_of(self, key: str) -> str:
        """The current status name of issue ``key``."""
        return self.issues[key.upper()]["status"]

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

    def status(self, name: str) -> dict[str, Any]:
        return next(s for s in self.statuses if s["name"] == name)

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

    def available_transitions(self, issue: dict[str, Any]) -> list[dict[str, Any]]:
        return [t for t in self.transitions if not t["from"] or issue["status"] in t["from"]]

    # -- JQL ---------------------------------------------------------------------------------

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


class _Api:
    """The request handlers over one JiraState."""

    def __init__(self, state: JiraState) -> None:
        self.state = state

    # -- helpers ---------------------------------------------------------------------------------

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

    # -- JSON shapes -----------------------------------------------------------------------------

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

    # -- server, fields, meta --------------------------------------------------------------------

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

    async def projects(self, request: web.Request) -> web.Response:
        ctx = self.ctx(request)
        types = "issuetypes" in request.query.get("expand", "").lower()
        return web.json_response(
            [self.project_json(ctx, p, types=types) for p in self.state.projects.values()]
        )

    async def project(self, request: web.Request) -> web.Response:
        ref = request.match_info["ref"]
        project = next(
            (p for p in self.state.projects.values() if ref.upper() in (p["key"], p["id"])), None
        )
        if project is None:
            raise _ApiError(404, [f"No project could be found with key '{ref}'."])
        return web.json_response(self.project_json(self.ctx(request), project, types=True))

    async def project_statuses(self, request: web.Request) -> web.Response:
        ref = request.match_info["ref"]
        project = next(
            (p for p in self.state.projects.values() if ref.upper() in (p["key"], p["id"])), None
        )
        if project is None:
            raise _ApiError(404, [f"No project could be found with key '{ref}'."])
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

    async def statuses(self, request: web.Request) -> web.Response:
        ctx = self.ctx(request)
        return web.json_response([self.status_json(ctx, s["name"]) for s in self.state.statuses])

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

    # -- search ----------------------------------------------------------------------------------

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

    # -- issues ----------------------------------------------------------------------------------

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

    # -- comments --------------------------------------------------------------------------------

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

    # -- transitions and assignment --------------------------------------------------------------

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


def _not_found(request: web.Request) -> web.Response:
    return web.json_response(
        {"message": f"null for uri: {request.url}", "status-code": 404}, status=404
    )


def _authorized(state: JiraState, header: str | None) -> bool:
    if not header or " " not in header:
        return False
    scheme, _, credentials = header.strip().partition(" ")
    credentials = credentials.strip()
    if state.cloud:
        if scheme.lower() != "basic":
            return False
        try:
            decoded = base64.b64decode(credentials, validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return False
        return hmac.compare_digest(decoded, f"{state.email}:{state.api_token}")
    return scheme.lower() == "bearer" and hmac.compare_digest(credentials, state.token)


JIRA_STATE_KEY = web.AppKey("jira_state", JiraState)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def build_jira_app(state: JiraState, *, middlewares: tuple[Any, ...] = ()) -> web.Application:
    """The Jira REST API over ``state``: requests are recorded first, then ``middlewares`` run,
    then authentication (Bearer PAT on Server, Basic email:api_token on Cloud)."""

    @web.middleware
    async def record(request: web.Request, handler: Handler) -> web.StreamResponse:
        state.requests.append((request.method, request.path))
        body = await request.read() if request.can_read_body else b""
        state.received.append((request.method, request.raw_path, body))
        return await handler(request)

    @web.middleware
    async def authenticate(request: web.Request, handler: Handler) -> web.StreamResponse:
        if not _authorized(state, request.headers.get("Authorization")):
            scheme = "Basic" if state.cloud else "Bearer"
            return web.json_response(
                {"errorMessages": [_NOT_AUTHENTICATED], "errors": {}},
                status=401,
                headers={"WWW-Authenticate": f'{scheme} realm="{SERVER_TITLE}"'},
            )
        try:
            return await handler(request)
        except _ApiError as exc:
            return web.json_response(exc.body, status=exc.status)

    api = _Api(state)
    app = web.Application(middlewares=[record, *middlewares, authenticate])
    app[JIRA_STATE_KEY] = state
    prefix = "/rest/api/{version:(?:2|3|latest)}"
    routes: list[tuple[str, str, Handler]] = [
        ("GET", "/serverInfo", api.server_info),
        ("GET", "/field", api.fields),
        ("GET", "/myself", api.myself),
        ("GET", "/user", api.user),
        ("GET", "/user/search", api.user_search),
        ("GET", "/project", api.projects),
        ("GET", "/project/{ref}", api.project),
        ("GET", "/project/{ref}/statuses", api.project_statuses),
        ("GET", "/issuetype", api.issue_types),
        ("GET", "/status", api.statuses),
        ("GET", "/priority", api.priorities),
        ("GET", "/resolution", api.resolutions),
        ("GET", "/search", api.search),
        ("POST", "/search", api.search),
        ("GET", "/search/jql", api.search_jql),
        ("POST", "/search/jql", api.search_jql),
        ("POST", "/issue", api.create_issue),
        ("GET", "/issue/{key}", api.get_issue),
        ("GET", "/issue/{key}/comment", api.comments),
        ("POST", "/issue/{key}/comment", api.post_comment),
        ("GET", "/issue/{key}/comment/{id}", api.comment),
        ("GET", "/issue/{key}/transitions", api.transitions),
        ("GET", "/issue/{key}/watchers", api.watchers),
        ("POST", "/issue/{key}/transitions", api.post_transition),
        ("PUT", "/issue/{key}/assignee", api.assign),
    ]
    for method, path, handler in routes:
        app.router.add_route(method, prefix + path, handler)

    async def unknown(request: web.Request) -> web.Response:
        return _not_found(request)

    app.router.add_route("*", "/rest/{tail:.*}", unknown)
    return app
