"""Approve and Reject clicks: an approver's decision on a staged write, from a signed
``block_actions`` payload (Reject asks for an optional reason in a modal, ``view_submission``).

The HTTP route has checked the request's signature and refused a replayed one before Bolt sees
it; a click is also claimed once across the fleet as a nonce of its own (request, button, user,
action time), so a click replayed over Socket Mode, or to a replica that forgot it, does nothing.
Who clicked is a Slack user id, linked to their email in the ledger's people table; whether they
may decide is `meshagent.approvals.staged.is_listed` over every name Slack and the ledger know them
by. Someone not listed gets an ephemeral refusal; a click on an expired, decided or changed request
does nothing but say so to that person. A decision updates every message that asked.
"""

from __future__ import annotations

import asyncio
import logging
import re
from datetime import UTC, datetime, timedelta
from typing import Any

from slack_sdk.errors import SlackApiError, SlackClientError

from meshagent.approvals.asks import (
    APPROVE,
    REASON_BLOCK,
    REASON_INPUT,
    REJECT,
    REJECT_VIEW,
    update_asked,
)
from meshagent.approvals.staged import Decision, decide, identities, is_listed
from meshagent.ledger import approvals as store
from meshagent.ledger.approvals import Approval
from meshagent.ledger.nonces import nonce_key
from meshagent.ledger.people import directory

__all__ = ["ApprovalClicks"]

log = logging.getLogger(__name__)

_VALUE = re.compile(r"^(ap[0-9a-f]{12}):([0-9a-f]{64})$")
_USER = re.compile(r"^[UW][A-Z0-9]{6,20}$")
#: How long a click is remembered: longer than any request may wait (30 days).
_CLICK_MEMORY = timedelta(days=31)


class ApprovalClicks:
    """The listeners of the Approve and Reject buttons and of the reason modal."""

    def __init__(self, app: Any) -> None:
        self.app = app  # the SlackApp: its Bolt app, runtime, directory, nonces, agents

    def register(self, bolt: Any) -> None:
        @bolt.action(APPROVE)
        async def on_approve(ack: Any, body: dict[str, Any]) -> None:
            await ack()
            self.app._spawn(self.click(body, "approved"), "approval")

        @bolt.action(REJECT)
        async def on_reject(ack: Any, body: dict[str, Any]) -> None:
            await ack()
            self.app._spawn(self.click(body, "rejected"), "approval")

        @bolt.view(REJECT_VIEW)
        async def on_reason(ack: Any, body: dict[str, Any]) -> None:
            await ack()  # closes the modal
            self.app._spawn(self.reasoned(body), "approval")

    # -- clicks -------------------------------------------------------------------------------

    async def click(self, body: dict[str, Any], decision: str) -> None:
        action = (body.get("actions") or [{}])[0]
        parsed = _VALUE.match(str(action.get("value") or ""))
        user = str((body.get("user") or {}).get("id") or "")
        if parsed is None or not _USER.match(user):
            log.warning("approval: a click with a malformed value or user was ignored")
            return
        approval_id, seen = parsed.groups()
        stamp = str(action.get("action_ts") or "")
        key = f"{approval_id}|{seen}|{action.get('action_id')}|{user}|{stamp}"
        if not await self._first(nonce_key("slack-approval-click", key)):
            return
        channel = _channel_of(body)
        if decision == "rejected" and body.get("trigger_id"):
            found = await asyncio.to_thread(store.get, self.app.ledger, approval_id)
            if found is not None and not await self._listed(found, user):
                await self._decide(approval_id, decision, user, seen, None, channel)
                return  # refused, with its reason, by the decision itself
            pending = found is not None and found.status == "pending"
            if pending and await self._ask_reason(body, approval_id, seen, channel):
                return
        await self._decide(approval_id, decision, user, seen, None, channel)

    async def reasoned(self, body: dict[str, Any]) -> None:
        view = body.get("view") or {}
        meta = str(view.get("private_metadata") or "")
        value, _, channel = meta.partition("|")
        parsed = _VALUE.match(value)
        user = str((body.get("user") or {}).get("id") or "")
        if parsed is None or not _USER.match(user):
            log.warning("approval: a reason with a malformed request or user was ignored")
            return
        if not await self._first(nonce_key("slack-approval-view", f"{view.get('id')}|{user}")):
            return
        values = ((view.get("state") or {}).get("values") or {}).get(REASON_BLOCK) or {}
        reason = str((values.get(REASON_INPUT) or {}).get("value") or "").strip()[:2000]
        approval_id, seen = parsed.groups()
        await self._decide(approval_id, "rejected", user, seen, reason or None, channel)

    # -- steps ---------------------------------------------------------------------------------

    async def _first(self, key: str) -> bool:
        """Claim a click's nonce; False (and counted) when it was seen before."""
        now = datetime.now(UTC)
        claimed = await self.app.nonces.claim({key: now + _CLICK_MEMORY}, now=now)
        if key not in claimed:
            self.app.stats["approval_replays"] += 1
            log.warning("approval: a click already seen was ignored")
            return False
        return True

    async def _listed(self, approval: Approval, user: str) -> bool:
        app = self.app
        await app.directory.link(app.ledger, user)
        names = {user}
        try:
            person = await app.directory.person(user)
            # The username and the email, never the display name: anyone may set theirs to
            # an approver's handle.
            names |= {n for n in (person.email, person.name, f"@{person.name}") if n != "@"}
        except Exception as exc:  # noqa: BLE001 - the ledger's links may still know them
            log.info("approval: could not look %s up in Slack: %s", user, exc)
        groups = None
        if any(a.startswith(("@", "S")) for a in approval.approvers):
            try:
                groups = await app.directory.groups()
            except Exception as exc:  # noqa: BLE001 - never granted on an error
                log.info("approval: could not read user groups: %s", exc)
        people = await asyncio.to_thread(directory, app.ledger, aliases=app.config.people.aliases)
        return is_listed(approval, identities(names), people, groups=groups)

    async def _decide(
        self,
        approval_id: str,
        decision: str,
        user: str,
        seen: str,
        reason: str | None,
        channel: str,
    ) -> Decision:
        app = self.app

        async def listed(approval: Approval) -> bool:
            return await self._listed(approval, user)

        def find_spec(name: str) -> Any:
            return next((spec for spec in app.agents() if spec.name == name), None)

        result = await decide(
            app.runtime,
            approval_id,
            decision=decision,
            who=user,
            listed=listed,
            find_spec=find_spec,
            seen_hash=seen,
            reason=reason,
        )
        app.stats[f"approval_{result.code}"] += 1
        if result.approval is not None and (result.done or result.code == "expired"):
            await update_asked(app.runtime, result.approval)
        if not result.done:
            await self._tell(channel, user, f":no_entry: {result.message}")
        return result

    async def _ask_reason(self, body: dict[str, Any], approval_id: str, seen: str, channel: str):
        """Open the modal that asks why (optional); False when Slack would not open it."""
        view = {
            "type": "modal",
            "callback_id": REJECT_VIEW,
            "private_metadata": f"{approval_id}:{seen}|{channel}",
            "title": {"type": "plain_text", "text": "Reject the write"},
            "submit": {"type": "plain_text", "text": "Reject"},
            "close": {"type": "plain_text", "text": "Cancel"},
            "blocks": [
                {
                    "type": "input",
                    "block_id": REASON_BLOCK,
                    "optional": True,
                    "label": {"type": "plain_text", "text": "Why? (optional)"},
                    "element": {
                        "type": "plain_text_input",
                        "action_id": REASON_INPUT,
                        "multiline": True,
                        "max_length": 2000,
                    },
                }
            ],
        }
        try:
            await self.app.bolt.client.views_open(trigger_id=body["trigger_id"], view=view)
        except (SlackApiError, SlackClientError, OSError) as exc:
            log.info("approval: could not open the reason modal (%s): rejecting without", exc)
            return False
        return True

    async def _tell(self, channel: str, user: str, text: str) -> None:
        """An ephemeral note to ``user`` where they clicked."""
        if not channel:
            return
        try:
            await self.app.bolt.client.chat_postEphemeral(channel=channel, user=user, text=text)
        except (SlackApiError, SlackClientError, OSError) as exc:
            log.info("approval: could not tell %s: %s", user, exc)


def _channel_of(body: dict[str, Any]) -> str:
    channel = str((body.get("channel") or {}).get("id") or "")
    if not channel:
        channel = str((body.get("container") or {}).get("channel_id") or "")
    return channel if re.fullmatch(r"[CGD][A-Z0-9]{6,20}", channel) else ""
