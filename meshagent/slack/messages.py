"""Block Kit messages: run results with a compact footer and feedback buttons, and plain notes.

A result's last message carries the footer (tokens, cost, run id) and the "Useful" / "Not
useful" buttons; their value is the run id. Answers longer than one section are split on line
breaks; an answer longer than the messages allowed is cut, with a note saying so.
"""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal
from typing import Any

from meshagent.ledger.render import money
from meshagent.runtime.runner import RunResult

__all__ = [
    "FEEDBACK_BLOCK",
    "FEEDBACK_DOWN",
    "FEEDBACK_UP",
    "escape",
    "feedback_block",
    "footer",
    "note",
    "result_messages",
    "shows_answer",
    "split_text",
    "voted",
]

FEEDBACK_BLOCK = "meshagent_feedback"
FEEDBACK_UP = "meshagent_feedback_up"
FEEDBACK_DOWN = "meshagent_feedback_down"
SECTION_CHARS = 2900  # Slack allows 3000 characters in a section's text
SECTIONS_PER_MESSAGE = 10  # well under 50 blocks and 40,000 characters a message
SLACK_MESSAGE = "slack.message"


def escape(text: str) -> str:
    """Text safe in mrkdwn: &, < and > as Slack wants them escaped."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def note(text: str, *, blocks: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """An ephemeral message: shown to the person who asked, only."""
    message: dict[str, Any] = {"response_type": "ephemeral", "text": text}
    if blocks:
        message["blocks"] = blocks
    return message


def section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text}}


def context(text: str) -> dict[str, Any]:
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": text}]}


def tokens_text(input_tokens: int, output_tokens: int, estimated: bool = False) -> str:
    total = input_tokens + output_tokens
    return f"{'~' if estimated and total else ''}{total:,} tokens"


def cost_text(cost: Decimal | None) -> str:
    return "cost unknown" if cost is None else money(cost)


def footer(result: RunResult) -> str:
    """tokens · cost · run id, the line under every result."""
    usage = result.usage
    spent = tokens_text(usage.input_tokens, usage.output_tokens, usage.estimated)
    return f"{spent} · {cost_text(result.cost_usd)} · run `{result.run_id}`"


def feedback_block(run_id: str, chosen: int | None = None) -> dict[str, Any]:
    """The "Useful" / "Not useful" buttons; the chosen one is highlighted."""

    def button(action_id: str, label: str, vote: int) -> dict[str, Any]:
        element: dict[str, Any] = {
            "type": "button",
            "action_id": action_id,
            "text": {"type": "plain_text", "text": label, "emoji": True},
            "value": run_id,
        }
        if chosen == vote:
            element["style"] = "primary" if vote > 0 else "danger"
        return element

    return {
        "type": "actions",
        "block_id": FEEDBACK_BLOCK,
        "elements": [
            button(FEEDBACK_UP, ":thumbsup: Useful", 1),
            button(FEEDBACK_DOWN, ":thumbsdown: Not useful", -1),
        ],
    }


def voted(blocks: Iterable[dict[str, Any]], run_id: str, vote: int) -> list[dict[str, Any]]:
    """``blocks`` with the feedback buttons showing ``vote``, and a line saying it counted."""
    said = "useful" if vote > 0 else "not useful"
    thanks = context(f"You marked this {said}: thanks. Click the other button to change it.")
    kept = [
        b for b in blocks if b.get("block_id") not in (FEEDBACK_BLOCK, f"{FEEDBACK_BLOCK}_thanks")
    ]
    return [*kept, feedback_block(run_id, vote), {**thanks, "block_id": f"{FEEDBACK_BLOCK}_thanks"}]


def split_text(text: str, size: int = SECTION_CHARS) -> list[str]:
    """``text`` in pieces of at most ``size`` characters, broken at line ends where possible."""
    pieces: list[str] = []
    rest = text.strip()
    while len(rest) > size:
        cut = rest.rfind("\n", 0, size)
        if cut < size // 2:
            cut = rest.rfind(" ", 0, size)
        if cut < size // 2:
            cut = size
        pieces.append(rest[:cut].rstrip())
        rest = rest[cut:].lstrip("\n ")
    if rest:
        pieces.append(rest)
    return pieces


def _channel_of(reference: str) -> str:
    return reference.partition(":")[0]


def _outcome_lines(result: RunResult, channel_id: str) -> tuple[list[str], bool]:
    """One line per delivered outcome, and whether the answer is already visible in Slack."""
    lines, in_slack = [], False
    for outcome in result.outcomes:
        if outcome.planned:
            continue
        link = f"<{outcome.url}|view>" if outcome.url else escape(outcome.reference)
        if outcome.kind == SLACK_MESSAGE:
            in_slack = True
            where = _channel_of(outcome.reference)
            place = "in this channel" if where == channel_id else f"to <#{where}>"
            lines.append(f"Posted {place}: {link}")
        else:
            label = escape(outcome.reference)
            shown = f"<{outcome.url}|{label}>" if outcome.url else label
            lines.append(f"{escape(outcome.kind)}: {shown}")
    return lines, in_slack


def _headline(result: RunResult) -> str:
    name = f"*{escape(result.agent)}*"
    error = escape(result.error or "")
    if result.status == "ok":
        return f":white_check_mark: {name} finished."
    if result.status == "skipped_unchanged":
        return (
            f":zzz: {name} skipped: nothing changed since its last successful run (no model call)."
        )
    if result.status == "over_budget":
        return f":warning: {name} stopped at its budget: {error}"
    if result.status == "denied":
        return f":no_entry: {name} was refused: {error}"
    if result.status == "interrupted":
        return f":warning: {name} was interrupted: {error}"
    return f":x: {name} failed: {error}"


def result_messages(result: RunResult, *, channel_id: str, limit: int = 1) -> list[dict[str, Any]]:
    """The messages that report ``result`` to the person who ran it (at most ``limit``)."""
    limit = max(1, limit)
    head = [_headline(result)]
    lines, in_slack = _outcome_lines(result, channel_id)
    if result.refusals:
        count = len(result.refusals)
        head.append(f"{count} tool call{'s were' if count != 1 else ' was'} refused by its grants.")
    if result.staged:  # writes that wait for a person
        count = len(result.staged)
        ids = ", ".join(f"`{approval.id}`" for approval in result.staged)
        head.append(
            f"{count} write{'s wait' if count != 1 else ' waits'} for approval "
            f"(asked in Slack; or `meshagent approvals show ID`): {ids}"
        )
    head += lines
    pieces: list[str] = []
    if result.answer and result.status == "ok" and not in_slack:
        pieces = split_text(result.answer)
    room = SECTIONS_PER_MESSAGE * limit - 1  # the head takes one section
    if len(pieces) > room:
        pieces = pieces[: room - 1]
        pieces.append(f"_(cut here: see `/meshagent status {result.run_id}`)_")
    sections = [section("\n".join(head)), *(section(p) for p in pieces)]
    messages: list[dict[str, Any]] = []
    for start in range(0, len(sections), SECTIONS_PER_MESSAGE):
        messages.append({"blocks": sections[start : start + SECTIONS_PER_MESSAGE]})
    tail = messages[-1]["blocks"]
    for extra in result.notes:
        tail.append(context(escape(extra)))
    tail.append(context(footer(result)))
    if result.status == "ok":
        tail.append(feedback_block(result.run_id))
    first = _plain(head[0])
    for index, message in enumerate(messages):
        text = first if index == 0 else f"{result.agent} (continued)"
        if index == len(messages) - 1:
            text += f" ({_plain(footer(result))})"
        message.update(response_type="ephemeral", text=text)
    return messages


def shows_answer(result: RunResult) -> bool:
    """Whether `result_messages` shows the answer itself (to the person who asked, only): a
    run that answered and posted no Slack message, and was not a quiet result."""
    if result.status != "ok" or not result.answer:
        return False
    return not any(o.kind in (SLACK_MESSAGE, "quiet") and not o.planned for o in result.outcomes)


def _plain(text: str) -> str:
    return text.replace("*", "").replace("`", "")
