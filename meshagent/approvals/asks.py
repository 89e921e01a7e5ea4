"""Asking in Slack: the message that shows a staged write as it would land, with Approve and
Reject, sent to each approver (a DM) or to a channel; and the same message updated with the
decision and who made it.

The buttons' value is ``ID:HASH``: the request and the hash of the payload the message shows, so a
click decides exactly that payload (`meshagent.approvals.staged.decide` refuses another). The client
is slack_sdk's, with the bot token and API URL of the ``[slack]`` settings, as the connector's.
Approvers written as emails, @handles or user groups are resolved to Slack users here, and each user
id is linked to their email in the ledger's people table, so a decision from Slack and one from
``meshagent approvals`` (by email) are the same person's.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any

from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.web.async_client import AsyncWebClient

from meshagent.approvals.staged import describe, staged_of
from meshagent.ledger import approvals as store
from meshagent.ledger.approvals import Approval

__all__ = [
    "APPROVE",
    "REJECT",
    "REJECT_VIEW",
    "ask",
    "ask_staged",
    "asking_blocks",
    "client_for",
    "decided_blocks",
    "expire_pass",
    "serve_expiries",
    "update_asked",
]

log = logging.getLogger(__name__)

APPROVE = "meshagent_approval_approve"
REJECT = "meshagent_approval_reject"
REJECT_VIEW = "meshagent_approval_reject_reason"
REASON_BLOCK = "reason"
REASON_INPUT = "reason_text"
_SECTION = 2800  # Slack allows 3000 characters in a section's text


def client_for(env: Mapping[str, str], settings: Mapping[str, Any]) -> AsyncWebClient | None:
    """A Web API client with the bot token of ``env`` (``[slack]`` settings name the variables);
    None when no token is set."""
    token = env.get(settings.get("token_env", "SLACK_BOT_TOKEN"))
    if not token:
        return None
    base_url = env.get(settings.get("api_url_env", "SLACK_API_URL")) or "https://slack.com/api/"
    return AsyncWebClient(token=token, base_url=base_url)


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _cut(text: str, size: int = _SECTION) -> str:
    if len(text) <= size:
        return text
    return text[: size - 80] + "\n… (cut here: `meshagent approvals show` prints it whole)"


def _section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text}}


def _context(text: str) -> dict[str, Any]:
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": text}]}


def payload_blocks(approval: Approval) -> list[dict[str, Any]]:
    """The write as it would land: what it does, every field, and the exact payload (JSON)."""
    headline, fields = describe(approval.action, approval.payload)
    blocks = [_section(f"*{_escape(headline)}* (`{approval.action}`)")]
    for name, value in fields:
        shown = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
        quoted = "\n".join(f">{line}" for line in _escape(shown).splitlines() or [""])
        blocks.append(_section(_cut(f"*{name}*\n{quoted}")))
    exact = json.dumps(approval.payload, indent=1, sort_keys=True, ensure_ascii=False)
    blocks.append(_section(_cut(f"Exact payload:\n```{_escape(exact)}```")))
    return blocks


def _facts(approval: Approval, entry: Mapping[str, Any], cost: Decimal | None) -> str:
    who = str(entry.get("triggered_by") or entry.get("trigger_kind") or "?")
    by = f"<@{who}>" if _slack_id(who) else _escape(who)
    spent = "cost unknown" if cost is None else f"${cost:.4f}"
    return (
        f"agent *{_escape(approval.agent)}* (owner {_escape(str(entry.get('owner') or '?'))}) · "
        f"triggered by {by} · the run cost {spent} · run `{approval.run_id}` · "
        f"request `{approval.id}` · expires {approval.expires_at:%Y-%m-%d %H:%M} UTC"
    )


def asking_blocks(
    approval: Approval, entry: Mapping[str, Any], cost: Decimal | None
) -> list[dict[str, Any]]:
    """The request with Approve and Reject, bound to the payload's hash."""
    value = f"{approval.id}:{approval.payload_hash}"
    buttons = {
        "type": "actions",
        "block_id": f"meshagent_approval_{approval.id}",
        "elements": [
            {
                "type": "button",
                "action_id": APPROVE,
                "style": "primary",
                "text": {"type": "plain_text", "text": "Approve"},
                "value": value,
            },
            {
                "type": "button",
                "action_id": REJECT,
                "style": "danger",
                "text": {"type": "plain_text", "text": "Reject…"},
                "value": value,
            },
        ],
    }
    head = _section(":raised_hand: A write is waiting for your approval.")
    return [head, _context(_facts(approval, entry, cost)), *payload_blocks(approval), buttons]


def decided_line(approval: Approval) -> str:
    """The decision and who made it, in one line."""
    by = f"<@{approval.decided_by}>" if _slack_id(approval.decided_by) else approval.decided_by
    if approval.status == "executed":
        refs = ", ".join(o.get("ref", "") for o in (approval.result or {}).get("outcomes", []))
        return f":white_check_mark: Approved by {by}; done: {_escape(refs or 'written')}"
    if approval.status == "failed":
        error = (approval.result or {}).get("error", "")
        return f":warning: Approved by {by}, but the write failed: {_escape(error)}"
    if approval.status == "approved":
        return f":hourglass: Approved by {by}; being written"
    if approval.status == "rejected":
        reason = f": {_escape(approval.reason)}" if approval.reason else " (no reason given)"
        return f":x: Rejected by {by}{reason}"
    if approval.status == "expired":
        return f":hourglass_flowing_sand: Expired unanswered at {approval.expires_at:%H:%M} UTC"
    return f"Status: {approval.status}"


def decided_blocks(
    approval: Approval, entry: Mapping[str, Any], cost: Decimal | None
) -> list[dict[str, Any]]:
    """The request as it ends: the payload, and the decision instead of the buttons."""
    return [
        _section(decided_line(approval)),
        _context(_facts(approval, entry, cost)),
        *payload_blocks(approval),
    ]


def _slack_id(name: str | None) -> bool:
    return bool(name) and name[0] in "UW" and name[1:].isalnum() and name.isupper()  # type: ignore[index]


def _email(user: Mapping[str, Any]) -> str:
    return str((user.get("profile") or {}).get("email") or "").lower()


async def _users(client: AsyncWebClient, approvers: Sequence[str]) -> dict[str, set[str]]:
    """Slack user id -> the other names of each approver (email; the @handle the agent file
    used), user groups expanded; ones Slack does not know are left out, with a log line."""
    found: dict[str, set[str]] = {}
    listing: list[dict[str, Any]] | None = None
    groups: dict[str, list[str]] | None = None
    for entry in approvers:
        try:
            if _slack_id(entry):
                user = (await client.users_info(user=entry))["user"]
                found.setdefault(user["id"], set()).add(_email(user))
                continue
            if "@" in entry.lstrip("@"):
                user = (await client.users_lookupByEmail(email=entry))["user"]
                found.setdefault(user["id"], set()).add(entry.lower())
                continue
            handle = entry.lstrip("@").lower()
            if groups is None:
                answer = await client.usergroups_list(include_users=True)
                groups = {}
                for group in answer.get("usergroups") or []:
                    members = list(group.get("users") or [])
                    groups[str(group.get("id"))] = members
                    groups[str(group.get("handle") or "").lower()] = members
            members = groups.get(entry if entry.startswith("S") else handle)
            if members is not None:  # a user group: each member, by id and email
                for member in members:
                    user = (await client.users_info(user=member))["user"]
                    found.setdefault(member, set()).add(_email(user))
                continue
            if listing is None:
                listing = (await client.users_list(limit=1000)).get("members") or []
            for user in listing:
                if str(user.get("name", "")).lower() == handle:
                    found.setdefault(user["id"], set()).update({_email(user), entry})
        except (SlackApiError, SlackClientError, OSError, KeyError) as exc:
            log.warning("approvals: could not find the Slack user %s: %s", entry, exc)
    return {user: {name for name in names if name} for user, names in found.items()}


async def ask(
    host: Any, approvals: Sequence[Approval], *, ask_in: str, cost: Decimal | None
) -> list[str]:
    """Ask for each request in Slack (a DM to each approver, or ``ask_in``, a channel) and record
    where; returns notes for the person who ran it (nothing asked when Slack is not set up)."""
    if not approvals:
        return []
    from meshagent.ledger.people import link

    client = client_for(host.env, host.connector_settings.get("slack", {}))
    if client is None:
        return ["Slack is not set up (no bot token): nobody was asked in Slack."]
    ledger = host.ledger
    entry = await asyncio.to_thread(ledger.entry, approvals[0].run_id) or {}
    notes: list[str] = []
    users = await _users(client, approvals[0].approvers)
    for user_id, names in users.items():  # one person in Slack, by email and by handle
        if names:
            await asyncio.to_thread(link, ledger, user_id, *names, source="slack")
    for approval in approvals:
        blocks = asking_blocks(approval, entry, cost)
        text = f"{approval.agent} asks to {describe(approval.action, approval.payload)[0]}"
        asked: list[dict[str, str]] = []
        places = list(users) if ask_in == "dm" else [ask_in]
        for place in places:
            try:
                channel = place
                if ask_in == "dm":
                    channel = (await client.conversations_open(users=place))["channel"]["id"]
                sent = await client.chat_postMessage(channel=channel, text=text, blocks=blocks)
                asked.append({"channel": sent["channel"], "ts": sent["ts"]})
            except (SlackApiError, SlackClientError, OSError) as exc:
                notes.append(f"could not ask in Slack ({place}): {exc}")
        if asked:
            await asyncio.to_thread(store.set_asked, ledger, approval.id, asked)
    if ask_in == "dm" and not users:
        notes.append("no approver was found in Slack: nobody was asked there.")
    return notes


async def update_asked(host: Any, approval: Approval) -> int:
    """Show the decision in every message that asked for ``approval``; how many were updated."""
    if not approval.asked:
        return 0
    client = client_for(host.env, host.connector_settings.get("slack", {}))
    if client is None:
        return 0
    entry = await asyncio.to_thread(host.ledger.entry, approval.run_id) or {}
    cost = entry.get("cost_usd")
    blocks = decided_blocks(approval, entry, cost)
    text = decided_line(approval)
    updated = 0
    for place in approval.asked:
        try:
            await client.chat_update(
                channel=place["channel"], ts=place["ts"], text=text, blocks=blocks
            )
            updated += 1
        except (SlackApiError, SlackClientError, OSError) as exc:
            log.warning("approvals: could not update the request %s: %s", approval.id, exc)
    return updated


async def ask_staged(host: Any, run: Any, result: Any) -> None:
    """After the run's entry is closed: put its staged writes on ``result`` and ask for them in
    Slack (with what the run cost), noting on ``result`` how to decide them."""
    staged = staged_of(run)
    if not staged:
        return
    spec = run.spec
    try:
        result.notes.extend(await ask(host, staged, ask_in=spec.approve.ask, cost=result.cost_usd))
    except Exception as exc:  # noqa: BLE001 - the requests stand; the CLI can decide them
        log.warning("run %s: could not ask for approval in Slack: %s", run.run_id, exc)
        result.notes.append(f"could not ask in Slack: {type(exc).__name__}: {exc}")
    result.staged = [await asyncio.to_thread(store.get, host.ledger, a.id) or a for a in staged]


async def expire_pass(host: Any, *, now: Any = None) -> list[Approval]:
    """Expire the requests unanswered by ``now`` (default: the host's clock) and show it in
    their messages; returns those this replica expired (each is expired by exactly one)."""
    now = now or host.now()
    expired = await asyncio.to_thread(store.expire_due, host.ledger, now=now)
    for approval in expired:
        fresh = await asyncio.to_thread(store.get, host.ledger, approval.id)
        await update_asked(host, fresh or approval)
    return expired


#: How often `meshagent serve` looks for expired requests.
EXPIRY_PASS_SECONDS = 60.0


async def serve_expiries(host: Any, *, every: float = EXPIRY_PASS_SECONDS) -> None:
    """Under `meshagent serve`: an expiry pass every ``every`` seconds, until cancelled."""
    while True:
        try:
            expired = await expire_pass(host)
            if expired:
                log.info("approvals: %d requests expired", len(expired))
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - the next pass tries again
            log.exception("approvals: the expiry pass failed")
        await asyncio.sleep(every)
