"""What the offline model recognises in the context: Jira issues, Slack messages, other values."""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

from meshagent.models.base import clip

_MAX_LIMIT = 50


# fmt: off
_NUMBER_NAMES = (
    "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
    "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen",
    "nineteen", "twenty",
)
# fmt: on
_NUMBER_WORDS = {word: number for number, word in enumerate(_NUMBER_NAMES, start=1)}
_NUMBER = r"(\d{1,3}|" + "|".join(_NUMBER_WORDS) + r")"
_NOT_ITEMS = r"(?!\s*(?:words?|characters?|chars|tokens?|minutes?|hours?|days?|weeks?|%))"
_LIMIT_HINTS = [
    re.compile(pattern, re.IGNORECASE)
    for pattern in (
        r"\b" + _NUMBER + r"[- ]line(?!s?\s+(?:per|for each|each|about)\b)",
        r"\b(?:at most|no more than|up to|maximum of|max(?:imum)?|top|limit(?: it)?(?: to)?)\s+"
        + _NUMBER
        + r"\b"
        + _NOT_ITEMS,
        r"\b" + _NUMBER + r"\s+(?:items|bullets?|bullet points|points|lines|issues|messages)\b",
    )
]

DONE = {
    "done",
    "closed",
    "resolved",
    "complete",
    "completed",
    "released",
    "fixed",
    "cancelled",
    "canceled",
    "won't do",
    "wont do",
}
ACTIVE = {"in progress", "in review", "review", "code review", "testing", "in qa", "qa"}
WAITING = {"to do", "todo", "open", "backlog", "selected for development", "new", "reopened"}
_PRIORITY_RANK = {
    "blocker": 0,
    "highest": 1,
    "critical": 1,
    "high": 2,
    "medium": 3,
    "low": 4,
    "lowest": 5,
}
_NOTABLE_PRIORITY = {"blocker", "highest", "critical", "high"}
_BLOCKED_WORD = re.compile(r"\bblock(?:ed|er|ers|ing)\b", re.IGNORECASE)
URGENT_WORD = re.compile(
    r"\b(?:incidents?|outages?|errors?|fail(?:s|ed|ing|ures?)?|blocked|blockers?|urgent|"
    r"sev ?[0-3]|p[01]|rollback|rolled back|broken|crash(?:es|ed|ing)?|down(?:time)?)\b",
    re.IGNORECASE,
)
_JSON_START = re.compile(r"(?m)(?:^|[:=])[ \t]*([\[{])")
# A context section's heading (or a tool's name, dotted) naming a search of issues or messages.
JIRA_SEARCH = re.compile(r"(?m)^## jira\.search\b")
SLACK_READ = re.compile(r"(?m)^## slack\.(?:history|thread)\b")


def limit_from(instructions: str) -> int | None:
    """The number of items the instructions ask for ("five-line", "at most 5", "top 3")."""
    found: list[tuple[int, int]] = []
    for pattern in _LIMIT_HINTS:
        match = pattern.search(instructions)
        if match:
            word = match.group(1).lower()
            number = int(word) if word.isdigit() else _NUMBER_WORDS[word]
            found.append((match.start(), number))
    if not found:
        return None
    return max(1, min(_MAX_LIMIT, min(found)[1]))


def _name(value: Any) -> str:
    """A display string for a Jira field that may be a string or an object."""
    if isinstance(value, dict):
        for key in ("displayName", "name", "value", "emailAddress", "key"):
            if isinstance(value.get(key), str):
                return value[key]
        return ""
    return "" if value is None else str(value)


def _date(value: Any) -> date | None:
    if not isinstance(value, str) or len(value) < 10:
        return None
    try:
        return date.fromisoformat(value[:10])
    except ValueError:
        return None


@dataclass(frozen=True)
class Issue:
    key: str
    summary: str
    status: str
    assignee: str
    priority: str
    due: date | None
    updated: str
    labels: tuple[str, ...]
    done: bool

    @property
    def blocked(self) -> bool:
        return not self.done and (
            "block" in self.status.lower()
            or any(_BLOCKED_WORD.search(label.replace("-", " ")) for label in self.labels)
            or self.priority.lower() == "blocker"
            or bool(_BLOCKED_WORD.search(self.summary))
        )

    def overdue(self, today: date) -> bool:
        return not self.done and self.due is not None and self.due < today

    @property
    def rank(self) -> int:
        return _PRIORITY_RANK.get(self.priority.lower(), 3)

    @property
    def order(self) -> tuple[str, int, str]:
        match = re.fullmatch(r"(.*?)-(\d+)", self.key)
        return (match.group(1), int(match.group(2)), "") if match else (self.key, 0, self.key)

    def line(self, today: date) -> str:
        parts = [self.assignee or "unassigned", self.status or "no status"]
        if self.priority.lower() in _NOTABLE_PRIORITY:
            parts.append(self.priority)
        if self.due is not None:
            late = (today - self.due).days if self.overdue(today) else 0
            parts.append(f"due {self.due.isoformat()}" + (f", {late}d late" if late else ""))
        return f"- {self.key} {clip(self.summary, 80)} ({', '.join(parts)})"


def _issue_from(data: Mapping[str, Any]) -> Issue:
    fields = data.get("fields") if isinstance(data.get("fields"), dict) else {}

    def get(*names: str) -> Any:
        for name in names:
            if data.get(name) is not None:
                return data[name]
            if fields.get(name) is not None:
                return fields[name]
        return None

    status_value = get("status")
    status = _name(status_value)
    category = ""
    if isinstance(status_value, dict) and isinstance(status_value.get("statusCategory"), dict):
        category = _name(status_value["statusCategory"].get("key"))
    labels = get("labels")
    return Issue(
        key=str(data["key"]),
        summary=_name(get("summary", "title")),
        status=status,
        assignee=_name(get("assignee")),
        priority=_name(get("priority")),
        due=_date(get("duedate", "due", "due_date")),
        updated=str(get("updated") or ""),
        labels=tuple(str(label) for label in labels) if isinstance(labels, list) else (),
        done=status.lower() in DONE or category == "done",
    )


@dataclass(frozen=True)
class _Message:
    user: str
    text: str
    ts: float | None
    channel: str

    @property
    def urgent(self) -> bool:
        return bool(URGENT_WORD.search(self.text))

    def line(self) -> str:
        when = ""
        if self.ts is not None:
            when = ", " + datetime.fromtimestamp(self.ts, UTC).strftime("%m-%d %H:%M")
        return f"- {self.user}{when}: {clip(self.text)}"


def _message_from(data: Mapping[str, Any], channel: str) -> _Message:
    user = ""
    for key in ("user_name", "username", "real_name", "name", "user", "bot_id"):
        if isinstance(data.get(key), str) and data[key]:
            user = data[key]
            break
    try:
        ts = float(data["ts"]) if data.get("ts") is not None else None
    except (TypeError, ValueError):
        ts = None
    own_channel = data.get("channel")
    return _Message(
        user=user or "unknown",
        text=data["text"],
        ts=ts,
        channel=own_channel if isinstance(own_channel, str) else channel,
    )


def _is_issue(value: Mapping[str, Any]) -> bool:
    return isinstance(value.get("key"), str) and (
        "summary" in value or isinstance(value.get("fields"), dict)
    )


def _is_message(value: Mapping[str, Any]) -> bool:
    return isinstance(value.get("text"), str) and any(
        key in value for key in ("ts", "user", "username", "user_name", "bot_id")
    )


def _is_item(value: Mapping[str, Any]) -> bool:
    return _is_issue(value) or _is_message(value)


def _holds(value: Mapping[str, Any], key: str, test: Callable[[Mapping[str, Any]], bool]) -> bool:
    """Whether ``value[key]`` is a list of such items, or empty (a search that found nothing)."""
    items = value.get(key)
    return isinstance(items, list) and all(isinstance(item, dict) and test(item) for item in items)


def _is_container(value: Mapping[str, Any]) -> bool:
    return _holds(value, "issues", _is_issue) or _holds(value, "messages", _is_message)


@dataclass
class Found:
    """Everything recognised in the context."""

    issues: dict[str, Issue] = field(default_factory=dict)
    issue_sources: list[tuple[int | None, int]] = field(default_factory=list)
    messages: dict[tuple[Any, ...], _Message] = field(default_factory=dict)
    jira_seen: bool = False
    slack_seen: bool = False
    other: list[tuple[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def walk(self, value: Any, channel: str = "") -> bool:
        """Collect issues and messages under ``value``; True when it held any (or their lists)."""
        if isinstance(value, dict):
            if _is_issue(value):
                issue = _issue_from(value)
                self.issues.setdefault(issue.key, issue)
                return True
            if _is_message(value):
                message = _message_from(value, channel)
                self.messages.setdefault((message.ts, message.user, message.text), message)
                return True
            for key in ("channel_name", "channel"):
                if isinstance(value.get(key), str):
                    channel = value[key]
                    break
            hit = False
            if _holds(value, "issues", _is_issue):
                self.jira_seen = hit = True
                total = next(
                    (value[k] for k in ("total", "count") if isinstance(value.get(k), int)), None
                )
                self.issue_sources.append((total, len(value["issues"])))
            if _holds(value, "messages", _is_message):
                self.slack_seen = hit = True
            for child in value.values():
                if isinstance(child, dict | list):
                    hit = self.walk(child, channel) or hit
            return hit
        if isinstance(value, list):
            hit = False
            for child in value:
                hit = self.walk(child, channel) or hit
            return hit
        return False

    def add(self, value: Any) -> None:
        """Add one parsed value; keep what was not recognised for the 'other' listing."""
        if isinstance(value, dict) and not _is_item(value) and not _is_container(value):
            channel = value.get("channel") if isinstance(value.get("channel"), str) else ""
            for key, child in value.items():
                if not self.walk(child, channel):
                    self.other.append((str(key), child))
        elif not self.walk(value):
            self.other.append(("", value))

    @property
    def recognised(self) -> bool:
        return bool(self.issues or self.messages or self.jira_seen or self.slack_seen)


def parse_values(text: str) -> tuple[list[Any], list[str]]:
    """JSON (or Python literal) values found in ``text``, and the text around them."""
    stripped = text.strip()
    if stripped[:1] in ("{", "["):
        for parse in (json.loads, ast.literal_eval):
            try:
                value = parse(stripped)
            except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
                continue
            if isinstance(value, dict | list):
                return [value], []
    decoder = json.JSONDecoder()
    values: list[Any] = []
    notes: list[str] = []
    position = 0
    for match in _JSON_START.finditer(text):
        start = match.start(1)
        if start < position:
            continue
        try:
            value, end = decoder.raw_decode(text, start)
        except ValueError:
            continue
        notes.append(text[position:start])
        values.append(value)
        position = end
    notes.append(text[position:])
    return values, [note for note in notes if note.strip()]
