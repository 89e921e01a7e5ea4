"""Approvals in the ledger: writes staged with their exact payload, decided once, executed once.

A staged write is one `ledger_approvals` row (`pending`) and one outcome of kind `staged` on its
run, written together while the run is open, so the entry closes with its staged writes. A
decision is one conditional UPDATE (`claim`): the row moves from `pending` only while the payload
hash the decider saw is the row's, the request has not expired and nobody decided first; on
SQLite and PostgreSQL alike exactly one caller gets a row count of 1, whichever replica it runs
on, and only that caller executes the write (`approved` -> `executed` or `failed`). A replica that
dies between the two leaves the row `approved`: the write ran at most once.

What became of a staged write is its outcome's verdict, frozen (never read back by the
follow-up pass): an executed write becomes the outcome it made (a Jira comment, a Slack message),
`accepted` with the approver as evidence; a rejection is `rejected` with its reason; an expiry
is `ignored`, its evidence `approval:expired`.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, select, update

from meshagent.exceptions import LedgerError
from meshagent.ledger.records import STAGED, Outcome
from meshagent.ledger.schema import approvals, outcomes
from meshagent.ledger.types import utc

if TYPE_CHECKING:
    from meshagent.ledger.store import Ledger

__all__ = [
    "DECIDED",
    "STAGED",
    "STATUSES",
    "Approval",
    "canonical",
    "claim",
    "expire_due",
    "finish",
    "get",
    "listing",
    "of_run",
    "payload_hash",
    "set_asked",
    "stage",
]

STATUSES = ("pending", "approved", "rejected", "expired", "executed", "failed")
#: The statuses a decision leads to: nobody may decide again.
DECIDED = ("approved", "rejected", "expired", "executed", "failed")


def canonical(payload: Mapping[str, Any]) -> str:
    """The payload as stored and hashed: JSON with sorted keys, no spaces, unicode kept."""
    return json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def payload_hash(approval_id: str, action: str, payload: str | Mapping[str, Any]) -> str:
    """SHA-256 over the request's id, action and canonical payload: what a decision is bound to."""
    text = payload if isinstance(payload, str) else canonical(payload)
    return hashlib.sha256(f"{approval_id}\n{action}\n{text}".encode()).hexdigest()


@dataclass(frozen=True)
class Approval:
    """One staged write and what became of it."""

    id: str
    run_id: str
    agent: str
    action: str
    source: str  # deliver, tool
    payload_text: str
    payload_hash: str
    approvers: tuple[str, ...]
    asked: tuple[dict[str, str], ...]
    status: str
    created_at: datetime
    expires_at: datetime
    decided_by: str | None = None
    decided_at: datetime | None = None
    reason: str | None = None
    executed_at: datetime | None = None
    result: Any = None

    @property
    def payload(self) -> dict[str, Any]:
        return json.loads(self.payload_text)

    @property
    def intact(self) -> bool:
        """Whether the stored payload still hashes to the stored hash (nobody changed it)."""
        return payload_hash(self.id, self.action, self.payload_text) == self.payload_hash

    def expired(self, now: datetime) -> bool:
        return utc(now) >= utc(self.expires_at)

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "run_id": self.run_id,
            "agent": self.agent,
            "action": self.action,
            "source": self.source,
            "payload": self.payload,
            "payload_hash": self.payload_hash,
            "approvers": list(self.approvers),
            "asked": list(self.asked),
            "status": self.status,
            "created_at": self.created_at.isoformat(),
            "expires_at": self.expires_at.isoformat(),
            "decided_by": self.decided_by,
            "decided_at": self.decided_at.isoformat() if self.decided_at else None,
            "reason": self.reason,
            "executed_at": self.executed_at.isoformat() if self.executed_at else None,
            "result": self.result,
        }


def _approval(row: Mapping[str, Any]) -> Approval:
    return Approval(
        id=row["id"],
        run_id=row["run_id"],
        agent=row["agent"],
        action=row["action"],
        source=row["source"],
        payload_text=row["payload"],
        payload_hash=row["payload_hash"],
        approvers=tuple(json.loads(row["approvers"] or "[]")),
        asked=tuple(json.loads(row["asked"] or "[]")),
        status=row["status"],
        created_at=utc(row["created_at"]),
        expires_at=utc(row["expires_at"]),
        decided_by=row["decided_by"],
        decided_at=utc(row["decided_at"]) if row["decided_at"] else None,
        reason=row["reason"],
        executed_at=utc(row["executed_at"]) if row["executed_at"] else None,
        result=json.loads(row["result"]) if row["result"] else None,
    )


def _ref(approval_id: str, action: str) -> str:
    return f"approval {approval_id}: {action}"


def stage(
    ledger: Ledger,
    *,
    run_id: str,
    agent: str,
    action: str,
    source: str,
    payload: Mapping[str, Any],
    approvers: Sequence[str],
    expires_at: datetime,
    now: datetime,
) -> Approval:
    """Record a write staged for approval, and its `staged` outcome on the (open) run."""
    approval_id = "ap" + secrets.token_hex(6)
    text = canonical(payload)
    row = {
        "id": approval_id,
        "run_id": run_id,
        "agent": agent,
        "action": action,
        "source": source,
        "payload": text,
        "payload_hash": payload_hash(approval_id, action, text),
        "approvers": json.dumps(list(approvers)),
        "asked": None,
        "status": "pending",
        "created_at": now,
        "expires_at": expires_at,
        "decided_by": None,
        "decided_at": None,
        "reason": None,
        "executed_at": None,
        "result": None,
    }
    staged = Outcome(STAGED, _ref(approval_id, action)).row(run_id, now)
    staged["next_check_at"] = None  # decided by a person, never read back

    def work(connection: Connection) -> None:
        connection.execute(approvals.insert().values(row))
        connection.execute(outcomes.insert().values(staged))

    ledger.transact(work, what="stage a write")
    return _approval(row)


def get(ledger: Ledger, approval_id: str) -> Approval | None:
    query = select(approvals).where(approvals.c.id == approval_id)
    found = ledger.read(lambda c: c.execute(query).mappings().first(), what="read an approval")
    return _approval(found) if found is not None else None


def of_run(ledger: Ledger, run_id: str) -> list[Approval]:
    """The writes a run staged, in the order it staged them."""
    query = (
        select(approvals)
        .where(approvals.c.run_id == run_id)
        .order_by(approvals.c.created_at, approvals.c.id)
    )
    found = ledger.read(lambda c: c.execute(query).mappings().all(), what="read approvals")
    return [_approval(row) for row in found]


def listing(
    ledger: Ledger, *, statuses: Iterable[str] | None = None, limit: int = 500
) -> list[Approval]:
    """Approvals, newest first, of the given statuses (all when None)."""
    query = select(approvals).order_by(approvals.c.created_at.desc(), approvals.c.id).limit(limit)
    if statuses is not None:
        query = query.where(approvals.c.status.in_(list(statuses)))
    found = ledger.read(lambda c: c.execute(query).mappings().all(), what="read approvals")
    return [_approval(row) for row in found]


def set_asked(ledger: Ledger, approval_id: str, asked: Sequence[Mapping[str, str]]) -> None:
    """Where the request was asked: the Slack messages (channel, ts) to update on a decision."""
    statement = (
        update(approvals)
        .where(approvals.c.id == approval_id)
        .values(asked=json.dumps([dict(a) for a in asked]))
    )
    ledger.transact(lambda c: c.execute(statement), what="record where an approval was asked")


def claim(
    ledger: Ledger,
    approval_id: str,
    *,
    decision: str,
    by: str,
    seen_hash: str,
    now: datetime,
    reason: str | None = None,
) -> bool:
    """Decide a pending request: True for the one caller whose UPDATE moved it.

    False when it was decided already, has expired by `now`, or `seen_hash` is not the payload
    hash of the row (the decider saw another payload).
    """
    if decision not in ("approved", "rejected"):
        raise LedgerError(f"a decision is approved or rejected, not {decision!r}")
    statement = (
        update(approvals)
        .where(
            approvals.c.id == approval_id,
            approvals.c.status == "pending",
            approvals.c.payload_hash == seen_hash,
            approvals.c.expires_at > now,
        )
        .values(
            status=decision,
            decided_by=by[:200],
            decided_at=now,
            reason=(reason or None) and reason[:2000],
        )
    )
    moved = ledger.transact(lambda c: c.execute(statement).rowcount, what="decide an approval")
    return moved == 1


def finish(
    ledger: Ledger,
    approval: Approval,
    *,
    status: str,
    now: datetime,
    result: Any = None,
    made: Sequence[Outcome] = (),
) -> None:
    """Record what became of a decided request, and its outcome's verdict with the evidence.

    `approved` -> `executed` (its `made` outcomes replace the staged one, accepted by the
    approver) or `failed`; `rejected` keeps the status, the outcome rejected with the reason;
    `expired` makes the outcome ignored.
    """
    if status not in ("executed", "failed", "rejected", "expired"):
        raise LedgerError(f"an approval cannot finish as {status!r}")
    who = approval.decided_by
    evidence: dict[str, Any] = {
        "who": who if status != "expired" else None,
        "what": {
            "executed": "approval:approved",
            "failed": "approval:approved",
            "rejected": "approval:rejected",
            "expired": "approval:expired",
        }[status],
        "when": (approval.decided_at or now).isoformat(),
        "counted": True,
    }
    if approval.reason:
        evidence["reason"] = approval.reason
    verdict = {"executed": "accepted", "rejected": "rejected", "expired": "ignored"}.get(status)
    staged_ref = _ref(approval.id, approval.action)

    def work(connection: Connection) -> None:
        values: dict[str, Any] = {"status": status}
        if status in ("executed", "failed"):
            values |= {"executed_at": now, "result": json.dumps(result, default=str)}
        connection.execute(
            update(approvals)
            .where(approvals.c.id == approval.id, approvals.c.status == approval.status)
            .values(**values)
        )
        mine = (
            (outcomes.c.run_id == approval.run_id)
            & (outcomes.c.kind == STAGED)
            & (outcomes.c.ref == staged_ref)
        )
        judged = {
            "evidence": json.dumps([evidence]),
            "checked_at": now,
            "next_check_at": None,
        }
        if verdict is None:  # failed: a reliability matter, the outcome stays pending
            connection.execute(update(outcomes).where(mine).values(**judged))
            return
        judged["verdict"] = verdict
        first, *rest = list(made) or [None]
        if first is None:
            connection.execute(update(outcomes).where(mine).values(**judged))
        else:
            real = first.row(approval.run_id, now)
            real.pop("run_id"), real.pop("created_at")
            connection.execute(update(outcomes).where(mine).values(**real | judged))
        for extra in rest:
            connection.execute(outcomes.insert().values(extra.row(approval.run_id, now) | judged))

    ledger.transact(work, what="record an approval's outcome")


def expire_due(ledger: Ledger, *, now: datetime, limit: int = 200) -> list[Approval]:
    """Expire the pending requests whose time is up; returns those this caller expired (each
    is expired by one caller, whichever replica runs the pass)."""
    query = (
        select(approvals.c.id)
        .where(approvals.c.status == "pending", approvals.c.expires_at <= now)
        .order_by(approvals.c.expires_at)
        .limit(limit)
    )
    due = ledger.read(lambda c: c.execute(query).scalars().all(), what="read expired approvals")
    expired = []
    for approval_id in due:
        statement = (
            update(approvals)
            .where(
                approvals.c.id == approval_id,
                approvals.c.status == "pending",
                approvals.c.expires_at <= now,
            )
            .values(status="expired", decided_at=now)
        )
        moved = ledger.transact(lambda c, s=statement: c.execute(s).rowcount, what="expire")
        if moved == 1:
            found = get(ledger, approval_id)
            if found is not None:
                finish(ledger, found, status="expired", now=now)
                expired.append(found)
    return expired
