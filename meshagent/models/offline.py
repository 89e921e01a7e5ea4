"""The offline model: a deterministic extractive digest of the context, with no LLM called."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from datetime import date
from functools import partial
from typing import Any

from langchain_core.messages import (
    AIMessage,
    BaseMessage,
    HumanMessage,
    SystemMessage,
    ToolMessage,
)
from langchain_core.outputs import ChatGeneration, ChatResult

from meshagent.models.base import (
    LocalChatModel,
    clip,
    estimate_tokens,
    input_estimate,
    plural,
    text_of,
    token_usage,
)
from meshagent.models.context import (
    ACTIVE,
    DONE,
    JIRA_SEARCH,
    SLACK_READ,
    URGENT_WORD,
    WAITING,
    Found,
    Issue,
    limit_from,
    parse_values,
)

__all__ = ["OfflineChatModel"]

_HEADER = "_Digest by MeshAgent's offline model (no LLM was called)._"
_DEFAULT_LIMIT = 10


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
    if lowered in ACTIVE:
        return (0, lowered)
    if lowered in WAITING:
        return (1, lowered)
    if lowered in DONE:
        return (3, lowered)
    return (2, lowered)


def _jira_section(found: Found, today: date, limit: int) -> list[str]:
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
    by_status: dict[str, list[Issue]] = {}
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
    return [f"{plural(len(issues), 'issue')}{of}: {counts}", *_render_groups(groups, limit)]


def _slack_section(found: Found, limit: int) -> list[str]:
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
        f"{plural(len(messages), 'Slack message')}{where} from "
        f"{plural(len(ranked), 'person', 'people')}: {people}"
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
        return f"{plural(len(value), 'item')}, first: {clip(first, 80)}"
    return clip(json.dumps(value, default=str, ensure_ascii=False, separators=(",", ":")), 80)


def _record_line(record: Mapping[str, Any]) -> str:
    """One flat record as ``first value: key value, key value`` (a table row in words)."""
    items = [(k, v) for k, v in record.items() if v not in (None, "", [], {})]
    if not items:
        return "(empty)"
    (_, title), rest = items[0], items[1:]
    parts = [f"{k.replace('_', ' ')} {_scalar(v)}" for k, v in rest]
    return clip(f"{_scalar(title)}: {', '.join(parts)}" if parts else _scalar(title), 160)


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
    return [clip(head), *shown]


def _text_section(notes: list[str], limit: int) -> list[str]:
    lines = [line.strip() for note in notes for line in note.splitlines() if line.strip()]
    if not lines:
        return ["No context was provided, so there is nothing to digest."]
    ordered = [line for line in lines if URGENT_WORD.search(line)]
    ordered += [line for line in lines if not URGENT_WORD.search(line)]
    shown = [f"- {clip(line)}" for line in ordered[:limit]]
    if len(lines) > limit:
        shown.append(f"… and {len(lines) - limit} more lines")
    return [f"Context: {plural(len(lines), 'line')} of text", *shown]


def _digest(messages: Sequence[BaseMessage], *, today: date | None = None) -> str:
    """The offline model's answer: an extractive digest of the context under the instructions."""
    today = today or date.today()
    instructions = "\n".join(
        text_of(message.content) for message in messages if isinstance(message, SystemMessage)
    )
    if not instructions and messages and isinstance(messages[0], HumanMessage):
        # No context: the runtime sends the instructions alone, as the user turn.
        instructions, messages = text_of(messages[0].content), messages[1:]
    found = Found()
    asked: list[str] = []
    for message in messages:
        if isinstance(message, SystemMessage | AIMessage):
            continue
        text = text_of(message.content)
        values, notes = parse_values(text)
        # Searches give bare lists: the heading (or the tool's name) says an empty one was one.
        source = "\n".join([text, f"## {getattr(message, 'name', None) or ''}".replace("_", ".")])
        found.jira_seen |= JIRA_SEARCH.search(source) is not None
        found.slack_seen |= SLACK_READ.search(source) is not None
        for value in values:
            found.add(value)
        found.notes.extend(notes)
        if not isinstance(message, ToolMessage):
            asked.extend(notes)
    limit = limit_from(instructions or "\n".join(asked)) or _DEFAULT_LIMIT
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


class OfflineChatModel(LocalChatModel):
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

    def _respond(self, messages: list[BaseMessage]) -> tuple[float, Callable[[], ChatResult]]:
        return 0.0, partial(self._digest_result, messages)

    def _digest_result(self, messages: list[BaseMessage]) -> ChatResult:
        answer = _digest(messages, today=self.today)
        message = AIMessage(
            content=answer,
            usage_metadata=token_usage(input_estimate(messages), estimate_tokens(answer)),
            response_metadata={"model_name": "offline", "token_usage_estimated": True},
        )
        return ChatResult(generations=[ChatGeneration(message=message)])
