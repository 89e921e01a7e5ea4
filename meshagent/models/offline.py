"""Chat models MeshAgent builds from a model string, and the two it ships itself.

``offline`` is a deterministic extractive digester that never calls an LLM: it reads the context
an agent gathered (Jira issues, Slack messages, any JSON) and writes a compact digest, so agents
run with no provider account. ``scripted`` replays queued answers, tool calls, usage and errors
for tests. Any other ``provider:model`` string goes to LangChain's ``init_chat_model``.

Both local models report token usage from :func:`estimate_tokens` and mark it as estimated.
"""

from __future__ import annotations

import ast
import asyncio
import json
import math
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.messages import AIMessage, BaseMessage, SystemMessage, ToolMessage
from langchain_core.messages.ai import InputTokenDetails, OutputTokenDetails, UsageMetadata
from langchain_core.messages.tool import tool_call
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.runnables import Runnable
from langchain_core.tools import BaseTool
from langchain_core.utils.function_calling import convert_to_openai_tool
from pydantic import Field, PrivateAttr, field_validator

from meshagent.actions import closest
from meshagent.exceptions import ConfigError, RunError
from meshagent.providers import BUILTIN_MODELS, PROVIDERS

__all__ = [
    "OfflineChatModel",
    "ScriptedChatModel",
    "estimate_tokens",
    "provider_of",
    "resolve_model",
]

# --------------------------------------------------------------------------- token estimate

_TOKEN_RUNS = re.compile(
    r"(?P<letters>[A-Za-z]+)"
    r"|(?P<digits>[0-9]+)"
    r"|(?P<newline>[ \t\r\f\v]*\n\s*)"
    r"|(?P<space>\s+)"
    r"|(?P<wide>[^\x00-\x7f])"
    r"|(?P<punct>[\x21-\x2f\x3a-\x40\x5b-\x60\x7b-\x7e]+)"
)
_RUN_WIDTH = {"letters": 7, "digits": 3, "punct": 3}


def estimate_tokens(text: str) -> int:
    """Approximate BPE token count of ``text``; deterministic and within ~30% for English and JSON.

    The text is cut into runs, and each run costs:

    * a run of ASCII letters: one token per started 7 letters (``the`` 1, ``deployment`` 2);
    * a run of digits: one token per started 3 digits (``2024`` 2), as BPE tokenizers group them;
    * a run of ASCII punctuation: one token per started 3 characters (``":"`` 1, ``"},{"`` 2);
    * a run of whitespace holding a line break: 1 (other spaces join the next run: 0);
    * any other character (accented, CJK, emoji): 1 each.

    English prose comes to about 1.3 tokens per word and JSON to about 3 characters per token,
    as with the cl100k/o200k tokenizers.
    """
    total = 0
    for match in _TOKEN_RUNS.finditer(text):
        kind = match.lastgroup or "space"
        if kind == "space":
            continue
        if kind in _RUN_WIDTH:
            total += math.ceil(len(match.group()) / _RUN_WIDTH[kind])
        else:
            total += 1
    return total


def _text_of(content: str | list[Any]) -> str:
    """The text of a message content: a string, or the text parts of a list of blocks."""
    if isinstance(content, str):
        return content
    parts = []
    for block in content:
        if isinstance(block, str):
            parts.append(block)
        elif isinstance(block, dict) and isinstance(block.get("text"), str):
            parts.append(block["text"])
    return "\n".join(parts)


def _input_estimate(messages: Sequence[BaseMessage]) -> int:
    """Estimated input tokens of a call: every message's text and any tool calls it made."""
    total = 0
    for message in messages:
        total += estimate_tokens(_text_of(message.content))
        if isinstance(message, AIMessage):
            for call in message.tool_calls:
                total += estimate_tokens(call["name"]) + estimate_tokens(json.dumps(call["args"]))
    return total


def _output_estimate(message: AIMessage) -> int:
    """Estimated output tokens of an answer: its text and its tool calls."""
    return _input_estimate([message])


def _usage(input_tokens: int, output_tokens: int) -> UsageMetadata:
    return UsageMetadata(
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        total_tokens=input_tokens + output_tokens,
    )


# --------------------------------------------------------------------------- shared base


def _tool_name(tool: Any) -> str:
    """The name a tool is called by, whatever form it was given in."""
    if isinstance(tool, BaseTool):
        return tool.name
    if isinstance(tool, dict):
        function = tool.get("function")
        if isinstance(function, dict) and "name" in function:
            return str(function["name"])
        return str(tool.get("name") or tool.get("type") or "?")
    return str(getattr(tool, "__name__", type(tool).__name__))


class _LocalChatModel(BaseChatModel):
    """What the offline and scripted models share: tool binding, token counts, trace params."""

    model_name: str = "local"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"model_name": self.model_name}

    def get_num_tokens(self, text: str) -> int:
        """Tokens in ``text`` by :func:`estimate_tokens` (no tokenizer is downloaded)."""
        return estimate_tokens(text)

    def _record_tools(self, names: list[str]) -> None:
        """Hook: remember the names of tools bound to this model."""

    def bind_tools(
        self,
        tools: Sequence[dict[str, Any] | type | Callable[..., Any] | BaseTool],
        *,
        tool_choice: str | None = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, AIMessage]:
        """Bind tools (as OpenAI tool schemas) so agent loops can run on this model."""
        self._record_tools([_tool_name(tool) for tool in tools])
        schemas = [
            tool if isinstance(tool, dict) else convert_to_openai_tool(tool) for tool in tools
        ]
        if tool_choice is not None:
            kwargs["tool_choice"] = tool_choice
        return self.bind(tools=schemas, **kwargs)


# --------------------------------------------------------------------------- offline digest

_HEADER = "_Digest by MeshAgent's offline model (no LLM was called)._"
_DEFAULT_LIMIT = 10
_MAX_LIMIT = 50
_LINE_CHARS = 100

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

_DONE = {
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
_ACTIVE = {"in progress", "in review", "review", "code review", "testing", "in qa", "qa"}
_WAITING = {"to do", "todo", "open", "backlog", "selected for development", "new", "reopened"}
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
_URGENT_WORD = re.compile(
    r"\b(?:incidents?|outages?|errors?|fail(?:s|ed|ing|ures?)?|blocked|blockers?|urgent|"
    r"sev ?[0-3]|p[01]|rollback|rolled back|broken|crash(?:es|ed|ing)?|down(?:time)?)\b",
    re.IGNORECASE,
)
_JSON_START = re.compile(r"(?m)(?:^|[:=])[ \t]*([\[{])")
# A context section's heading (or a tool's name, dotted) naming a search of issues or messages.
_JIRA_SEARCH = re.compile(r"(?m)^## jira\.search\b")
_SLACK_READ = re.compile(r"(?m)^## slack\.(?:history|thread)\b")


def _limit_from(instructions: str) -> int | None:
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


def _clip(text: str, limit: int = _LINE_CHARS) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def _plural(count: int, word: str, plural: str | None = None) -> str:
    return f"{count} {word if count == 1 else plural or word + 's'}"


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
class _Issue:
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
        return f"- {self.key} {_clip(self.summary, 80)} ({', '.join(parts)})"


def _issue_from(data: Mapping[str, Any]) -> _Issue:
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
    return _Issue(
        key=str(data["key"]),
        summary=_name(get("summary", "title")),
        status=status,
        assignee=_name(get("assignee")),
        priority=_name(get("priority")),
        due=_date(get("duedate", "due", "due_date")),
        updated=str(get("updated") or ""),
        labels=tuple(str(label) for label in labels) if isinstance(labels, list) else (),
        done=status.lower() in _DONE or category == "done",
    )


@dataclass(frozen=True)
class _Message:
    user: str
    text: str
    ts: float | None
    channel: str

    @property
    def urgent(self) -> bool:
        return bool(_URGENT_WORD.search(self.text))

    def line(self) -> str:
        when = ""
        if self.ts is not None:
            when = ", " + datetime.fromtimestamp(self.ts, UTC).strftime("%m-%d %H:%M")
        return f"- {self.user}{when}: {_clip(self.text)}"


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
class _Found:
    """Everything recognised in the context."""

    issues: dict[str, _Issue] = field(default_factory=dict)
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


def _parse_values(text: str) -> tuple[list[Any], list[str]]:
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


def _render_groups(groups: list[tuple[str, str, list[str]]], limit: int) -> list[str]:
    """Headed groups of lines, at most ``limit`` lines in all, saying how many were left out."""
    out: list[str] = []
    budget = limit
    hidden: list[tuple[str, int]] = []
    for heading, label, lines in groups:
        if not lines:
            continue
        if budget <= 0:
            hidden.append((label, len(lines)))
            continue
        shown = lines[:budget]
        budget -= len(shown)
        out.append(f"*{heading}*")
        out.extend(shown)
        if len(lines) > len(shown):
            out.append(f"… and {len(lines) - len(shown)} more")
    if hidden:
        detail = ", ".join(f"{count} {label}" for label, count in hidden)
        out.append(f"… and {sum(count for _, count in hidden)} more ({detail})")
    return out


def _status_rank(status: str) -> tuple[int, str]:
    lowered = status.lower()
    if lowered in _ACTIVE:
        return (0, lowered)
    if lowered in _WAITING:
        return (1, lowered)
    if lowered in _DONE:
        return (3, lowered)
    return (2, lowered)


def _jira_section(found: _Found, today: date, limit: int) -> list[str]:
    issues = list(found.issues.values())
    if not issues:
        return ["No Jira issues matched."]
    blocked = sorted(
        (issue for issue in issues if issue.blocked),
        key=lambda issue: (issue.rank, issue.due or date.max, issue.order),
    )
    overdue = sorted(
        (issue for issue in issues if not issue.blocked and issue.overdue(today)),
        key=lambda issue: (issue.due, issue.rank, issue.order),
    )
    listed = {issue.key for issue in blocked + overdue}
    by_status: dict[str, list[_Issue]] = {}
    for issue in issues:
        if issue.key not in listed:
            by_status.setdefault(issue.status or "No status", []).append(issue)
    groups = [
        ("Blockers", "blocked", [issue.line(today) for issue in blocked]),
        ("Overdue", "overdue", [issue.line(today) for issue in overdue]),
    ]
    for status in sorted(by_status, key=_status_rank):
        members = sorted(by_status[status], key=lambda issue: issue.order)
        members.sort(key=lambda issue: issue.updated, reverse=True)
        members.sort(key=lambda issue: issue.rank)
        groups.append((status, status.lower(), [issue.line(today) for issue in members]))
    counts = ", ".join(f"{len(lines)} {label}" for _, label, lines in groups if lines)
    of = ""
    if len(found.issue_sources) == 1:
        total, fetched = found.issue_sources[0]
        if total is not None and total > fetched:
            of = f" (of {total} matching)"
    return [f"{_plural(len(issues), 'issue')}{of}: {counts}", *_render_groups(groups, limit)]


def _slack_section(found: _Found, limit: int) -> list[str]:
    messages = list(found.messages.values())
    if not messages:
        return ["No Slack messages."]
    newest = sorted(messages, key=lambda message: -(message.ts or 0.0))
    authors = Counter(message.user for message in messages)
    ranked = sorted(authors.items(), key=lambda item: (-item[1], item[0]))
    people = ", ".join(f"{user} {count}" for user, count in ranked[:5])
    if len(ranked) > 5:
        people += f", +{len(ranked) - 5} others"
    channels = sorted({message.channel for message in messages if message.channel})
    where = ""
    if channels:
        where = " in " + ", ".join(c if c.startswith("#") else f"#{c}" for c in channels)
    head = (
        f"{_plural(len(messages), 'Slack message')}{where} from "
        f"{_plural(len(ranked), 'person', 'people')}: {people}"
    )
    groups = [
        ("Needs attention", "need attention", [m.line() for m in newest if m.urgent]),
        ("Recent", "other", [m.line() for m in newest if not m.urgent]),
    ]
    return [head, *_render_groups(groups, limit)]


def _describe(value: Any) -> str:
    if isinstance(value, list):
        if not value:
            return "empty list"
        first = json.dumps(value[0], default=str, ensure_ascii=False, separators=(",", ":"))
        return f"{_plural(len(value), 'item')}, first: {_clip(first, 80)}"
    return _clip(json.dumps(value, default=str, ensure_ascii=False, separators=(",", ":")), 80)


def _record_line(record: Mapping[str, Any]) -> str:
    """One flat record as ``first value: key value, key value`` (a table row in words)."""
    items = [(k, v) for k, v in record.items() if v not in (None, "", [], {})]
    if not items:
        return "(empty)"
    (_, title), rest = items[0], items[1:]
    parts = [f"{k.replace('_', ' ')} {_scalar(v)}" for k, v in rest]
    return _clip(f"{_scalar(title)}: {', '.join(parts)}" if parts else _scalar(title), 160)


def _scalar(value: Any) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k.replace('_', ' ')} {_scalar(v)}" for k, v in value.items())
    if isinstance(value, list):
        return "; ".join(_scalar(v) for v in value)
    return str(value)


def _flat_records(value: Any) -> bool:
    return (
        isinstance(value, list)
        and bool(value)
        and all(isinstance(v, dict) for v in value)
        and all(not isinstance(x, dict | list) for v in value for x in v.values())
    )


def _other_section(entries: list[tuple[str, Any]], limit: int) -> list[str]:
    names = [key for key, _ in entries if key]
    head = f"Other context: {', '.join(names)}" if names else "Other context:"
    lines = []
    for key, value in entries:
        label = f"{key.replace('_', ' ')}" if key else ""
        if _flat_records(value):  # a table (report rows): one line per row, every column
            lines.append(f"*{label}*" if label else "*items*")
            lines += [f"- {_record_line(record)}" for record in value]
        elif (
            isinstance(value, dict)
            and value
            and all(not isinstance(v, dict | list) for v in value.values())
        ):
            lines.append(f"- {label}: {_scalar(value)}" if label else f"- {_scalar(value)}")
        else:
            lines.append(f"- {label}: {_describe(value)}" if label else f"- {_describe(value)}")
    shown = lines[:limit]
    if len(lines) > limit:
        shown.append(f"… and {len(lines) - limit} more")
    return [_clip(head), *shown]


def _text_section(notes: list[str], limit: int) -> list[str]:
    lines = [line.strip() for note in notes for line in note.splitlines() if line.strip()]
    if not lines:
        return ["No context was provided, so there is nothing to digest."]
    ordered = [line for line in lines if _URGENT_WORD.search(line)]
    ordered += [line for line in lines if not _URGENT_WORD.search(line)]
    shown = [f"- {_clip(line)}" for line in ordered[:limit]]
    if len(lines) > limit:
        shown.append(f"… and {len(lines) - limit} more lines")
    return [f"Context: {_plural(len(lines), 'line')} of text", *shown]


def _digest(messages: Sequence[BaseMessage], *, today: date | None = None) -> str:
    """The offline model's answer: an extractive digest of the context under the instructions."""
    today = today or date.today()
    instructions = "\n".join(
        _text_of(message.content) for message in messages if isinstance(message, SystemMessage)
    )
    found = _Found()
    asked: list[str] = []
    for message in messages:
        if isinstance(message, SystemMessage | AIMessage):
            continue
        text = _text_of(message.content)
        values, notes = _parse_values(text)
        # Searches give bare lists: the heading (or the tool's name) says an empty one was one.
        source = "\n".join([text, f"## {getattr(message, 'name', None) or ''}".replace("_", ".")])
        found.jira_seen |= _JIRA_SEARCH.search(source) is not None
        found.slack_seen |= _SLACK_READ.search(source) is not None
        for value in values:
            found.add(value)
        found.notes.extend(notes)
        if not isinstance(message, ToolMessage):
            asked.extend(notes)
    limit = _limit_from(instructions or "\n".join(asked)) or _DEFAULT_LIMIT
    sections: list[list[str]] = []
    if found.issues or found.jira_seen:
        sections.append(_jira_section(found, today, limit))
    if found.messages or found.slack_seen:
        sections.append(_slack_section(found, limit))
    other = found.other
    if found.recognised:
        other = [(key, value) for key, value in other if isinstance(value, dict | list) and value]
    if other:
        sections.append(_other_section(other, limit))
    if not sections:
        sections.append(_text_section(found.notes, limit))
    return "\n\n".join("\n".join(lines) for lines in [[_HEADER, *sections[0]], *sections[1:]])


class OfflineChatModel(_LocalChatModel):
    """A deterministic, network-free model that answers with an extractive digest of the context.

    Blocked issues come first, then overdue ones, then the rest by status; Slack messages about
    incidents or errors come first. A number of lines in the instructions ("at most 5", "top 3",
    "five-line") caps the items listed per section (default 10). It never calls tools.
    """

    model_name: str = "offline"
    today: date | None = None
    """The date overdue is judged against; today when unset."""

    @property
    def _llm_type(self) -> str:
        return "meshagent-offline"

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        answer = _digest(messages, today=self.today)
        message = AIMessage(
            content=answer,
            usage_metadata=_usage(_input_estimate(messages), estimate_tokens(answer)),
            response_metadata={"model_name": "offline", "token_usage_estimated": True},
        )
        return ChatResult(generations=[ChatGeneration(message=message)])

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        return self._generate(messages, stop, **kwargs)


# --------------------------------------------------------------------------- scripted model

_RESPONSE_KEYS = {"content", "tool_calls", "usage"}
_USAGE_KEYS = {"input_tokens", "output_tokens", "cache_read", "cache_creation", "reasoning"}


def _check_usage(usage: Any) -> None:
    """Refuse a usage dict with unknown keys, bad numbers or cache beyond the input it is in."""
    if not isinstance(usage, Mapping):
        raise ValueError(f"usage must be a dict with keys {sorted(_USAGE_KEYS)}")
    unknown = set(usage) - _USAGE_KEYS
    if unknown:
        raise ValueError(f"unknown usage keys {sorted(unknown)}; known: {sorted(_USAGE_KEYS)}")
    for key, value in usage.items():
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise ValueError(f"usage {key} must be a non-negative int, got {value!r}")
    cached = usage.get("cache_read", 0) + usage.get("cache_creation", 0)
    if "input_tokens" in usage and usage["input_tokens"] < cached:
        raise ValueError(
            "usage input_tokens includes cache_read and cache_creation, "
            f"so it cannot be below their sum {cached}"
        )
    if "output_tokens" in usage and usage["output_tokens"] < usage.get("reasoning", 0):
        raise ValueError("usage output_tokens includes reasoning, so it cannot be below it")


def _check_response(index: int, item: Any) -> None:
    if isinstance(item, str | AIMessage | BaseException):
        return
    if not isinstance(item, dict):
        raise ValueError(
            f"response {index}: expected str, AIMessage, dict or exception, got {type(item)}"
        )
    unknown = set(item) - _RESPONSE_KEYS
    if unknown:
        raise ValueError(f"response {index}: unknown keys {sorted(unknown)}")
    for call in item.get("tool_calls") or []:
        if not isinstance(call, dict) or not isinstance(call.get("name"), str):
            raise ValueError(f"response {index}: each tool call needs a 'name'")
    if "usage" in item:
        _check_usage(item["usage"])


def _usage_from(
    usage: Mapping[str, int], input_estimate: int, output_estimate: int
) -> UsageMetadata:
    """UsageMetadata from a scripted usage dict; input_tokens includes cache reads and writes."""
    cached = usage.get("cache_read", 0) + usage.get("cache_creation", 0)
    input_tokens = usage.get("input_tokens", max(input_estimate, cached))
    output_tokens = usage.get("output_tokens", max(output_estimate, usage.get("reasoning", 0)))
    metadata = _usage(input_tokens, output_tokens)
    input_details = InputTokenDetails()
    for key in ("cache_read", "cache_creation"):
        if key in usage:
            input_details[key] = usage[key]  # type: ignore[literal-required]
    if input_details:
        metadata["input_token_details"] = input_details
    if "reasoning" in usage:
        metadata["output_token_details"] = OutputTokenDetails(reasoning=usage["reasoning"])
    return metadata


class ScriptedChatModel(_LocalChatModel):
    """A test model that replays queued responses in order, one per call.

    Each response is a str (the answer), an AIMessage (used as is), a dict with ``content``,
    ``tool_calls`` (``name``, ``args``, ``id``) and ``usage`` (``input_tokens`` including
    ``cache_read`` and ``cache_creation``, ``output_tokens`` including ``reasoning``), or an
    exception to raise. Usage not given is estimated. Calls are recorded in ``calls``.
    """

    __test__ = False  # a test double, not a test class

    responses: list[Any] = Field(default_factory=list)
    latency: float = Field(default=0.0, ge=0.0)
    """Seconds each call takes."""
    model_name: str = "scripted"

    _lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)
    _next: int = PrivateAttr(default=0)
    _calls: list[list[BaseMessage]] = PrivateAttr(default_factory=list)
    _bound_tools: list[str] = PrivateAttr(default_factory=list)

    @field_validator("responses")
    @classmethod
    def _check_responses(cls, value: list[Any]) -> list[Any]:
        for index, item in enumerate(value):
            _check_response(index, item)
        return value

    @property
    def _llm_type(self) -> str:
        return "meshagent-scripted"

    @property
    def calls(self) -> list[list[BaseMessage]]:
        """The messages of every call made so far, in order."""
        with self._lock:
            return [list(messages) for messages in self._calls]

    @property
    def bound_tools(self) -> list[str]:
        """Names of the tools last bound with ``bind_tools``."""
        return list(self._bound_tools)

    @property
    def remaining(self) -> int:
        """How many queued responses are left."""
        with self._lock:
            return len(self.responses) - self._next

    def _record_tools(self, names: list[str]) -> None:
        self._bound_tools = names

    def _take(self, messages: list[BaseMessage]) -> tuple[int, Any]:
        """Record the call and pop the next response, atomically across threads and tasks."""
        with self._lock:
            self._calls.append(list(messages))
            index = self._next
            if index >= len(self.responses):
                raise RunError(
                    f"ScriptedChatModel {self.model_name!r} has no response left for call "
                    f"{len(self._calls)}: all {_plural(len(self.responses), 'queued response')} "
                    "were used"
                )
            self._next += 1
            return index, self.responses[index]

    def _answer(self, index: int, item: Any, messages: list[BaseMessage]) -> ChatResult:
        if isinstance(item, BaseException):
            raise item
        estimated = False
        if isinstance(item, AIMessage):
            message = item.model_copy(deep=True)
        else:
            spec = {"content": item} if isinstance(item, str) else item
            calls = [
                tool_call(
                    name=call["name"],
                    args=dict(call.get("args") or {}),
                    id=call.get("id") or f"scripted-{index}-{number}",
                )
                for number, call in enumerate(spec.get("tool_calls") or [])
            ]
            message = AIMessage(content=spec.get("content") or "", tool_calls=calls)
            if "usage" in spec:
                message.usage_metadata = _usage_from(
                    spec["usage"], _input_estimate(messages), _output_estimate(message)
                )
                estimated = not {"input_tokens", "output_tokens"} <= set(spec["usage"])
        if message.usage_metadata is None:
            message.usage_metadata = _usage(_input_estimate(messages), _output_estimate(message))
            estimated = True
        metadata = {"model_name": self.model_name, **message.response_metadata}
        if estimated:
            metadata["token_usage_estimated"] = True
        message.response_metadata = metadata
        return ChatResult(generations=[ChatGeneration(message=message)])

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        index, item = self._take(messages)
        if self.latency:
            time.sleep(self.latency)
        return self._answer(index, item, messages)

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        index, item = self._take(messages)
        if self.latency:
            await asyncio.sleep(self.latency)
        return self._answer(index, item, messages)


# --------------------------------------------------------------------------- resolution


def provider_of(model: str) -> str:
    """The provider part of a model string: ``openai`` for ``openai:gpt-4.1``, or the builtin."""
    if model in BUILTIN_MODELS:
        return model
    provider, sep, name = model.partition(":")
    if not sep or not provider or not name:
        raise ConfigError(
            f"{model!r} is not a model string: use 'provider:model' "
            f"(e.g. openai:gpt-4.1-mini) or one of {', '.join(BUILTIN_MODELS)}"
        )
    return provider


def _suggest(provider: str, known: Iterable[str]) -> str | None:
    known = list(known)
    normal = provider.lower().replace("-", "_")
    if normal in known:
        return normal
    return closest(normal, known)


def resolve_model(
    model: str, *, responses: list[Any] | None = None, **options: Any
) -> BaseChatModel:
    """The chat model a model string names; ``responses`` feed the ``scripted`` model.

    ``options`` go to the provider's chat model (``api_key=...``, ``max_retries=0``).
    """
    provider = provider_of(model)
    if model == "offline":
        return OfflineChatModel()
    if model == "scripted":
        return ScriptedChatModel(responses=list(responses or []))
    if provider in BUILTIN_MODELS:
        raise ConfigError(f"{provider!r} is a built-in model and takes no name: use {provider!r}")
    if provider not in PROVIDERS:
        hint = _suggest(provider, [*PROVIDERS, *BUILTIN_MODELS])
        suggestion = f"; did you mean {hint!r}?" if hint else ""
        raise ConfigError(
            f"unknown model provider {provider!r} in {model!r}{suggestion} "
            f"(known: {', '.join(sorted(PROVIDERS))})"
        )
    from langchain.chat_models import init_chat_model

    try:
        return init_chat_model(model.partition(":")[2], model_provider=provider, **options)
    except ImportError as error:
        raise ConfigError(
            f"model {model!r} needs the {provider} provider package: {PROVIDERS[provider].install}"
        ) from error
