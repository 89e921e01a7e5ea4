"""Writes a person approves first: staged by a run, decided by an approver, executed once.

An agent with ``approve:`` runs as usual up to each write that needs approval; there the runtime
(a deliver action) or the tool loop (a write tool call, after its grant check) calls `stage`,
which records the exact payload in the ledger (`meshagent.ledger.approvals`) instead of making
the call. After the run's entry is closed, `meshagent.approvals.asks` asks the approvers in Slack.

`decide` is the one decision, for a Slack click and for ``meshagent approvals`` alike: the
request must exist, its stored payload must still hash to its hash (and to the hash the decider
was shown), the decider must be one of its approvers (a person resolved through the ledger's
people table), and it must be pending and unexpired. The ledger's conditional UPDATE lets one
decision through; an approval then executes the write with the grants of the agent file as it is
now, and the outcome is recorded as accepted by the approver (a rejection as rejected, with its
reason). A dry run stages nothing: its writes are planned as any dry run's are.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import weakref
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from meshagent.actions import Action, ActionArgs, ActionContext, ActionKind
from meshagent.exceptions import ConnectorError, GrantDenied, MeshAgentError, RunError
from meshagent.ledger import approvals as store
from meshagent.ledger.approvals import Approval
from meshagent.ledger.people import People, normalise
from meshagent.ledger.records import Outcome as Recorded

if TYPE_CHECKING:
    from meshagent.agentfile.spec import AgentSpec
    from meshagent.ledger.store import Ledger

__all__ = [
    "Decision",
    "approvers_of",
    "decide",
    "describe",
    "execute",
    "identities",
    "is_listed",
    "needs_approval",
    "shown",
    "stage",
    "staged_note",
    "staged_of",
]

log = logging.getLogger(__name__)

_GROUP_ID = re.compile(r"^S[A-Z0-9]{6,20}$")  # a Slack user group's id

#: The writes each run staged, kept with the run's state for as long as the run is referenced.
_STAGED: weakref.WeakKeyDictionary[Any, list[Approval]] = weakref.WeakKeyDictionary()

#: What a staged write will do, in words; the payload's fields follow it in full.
_HEADLINES = {
    "slack.post_message": "Post a message to {channel}",
    "slack.reply": "Reply in the thread {thread_ts} of {channel}",
    "slack.dm": "Send a direct message to {user}",
    "slack.add_reaction": "React with :{name}: to the message {ts} in {channel}",
    "jira.add_comment": "Comment on {key}",
    "jira.create_issue": "Create an issue in {project}",
    "jira.transition": "Move {key} through the transition '{transition}'",
    "jira.assign": "Assign {key} to {assignee}",
}


class _Blank(dict):  # type: ignore[type-arg]
    def __missing__(self, key: str) -> str:
        return "?"


def describe(action: str, payload: Mapping[str, Any]) -> tuple[str, list[tuple[str, Any]]]:
    """A staged write as it would land: a headline, and every field it sets (none left out)."""
    headline = _HEADLINES.get(action, action).format_map(_Blank(payload))
    fields = [(name, value) for name, value in payload.items() if value not in (None, "", [], {})]
    return headline, fields


def approvers_of(spec: AgentSpec) -> list[str]:
    """The approvers of ``spec``'s writes as stored with a request: ``owner`` is the owner."""
    assert spec.approve is not None
    found: list[str] = []
    for entry in spec.approve.by:
        name = spec.owner if entry == "owner" else entry
        if name not in found:
            found.append(name)
    return found


def needs_approval(spec: AgentSpec, action: Action, *, dry_run: bool) -> bool:
    """Whether a write of ``action`` by ``spec`` is staged rather than made now."""
    if spec.approve is None or dry_run or action.kind != ActionKind.WRITE:
        return False  # reads are never staged, whatever ``writes: all`` says
    return spec.approve.covers(action.name)


async def stage(run: Any, action: Action, args: ActionArgs, *, source: str) -> Approval:
    """Stage one write of ``run`` (a ``RunState``) with its exact arguments; the request is in
    the ledger on return."""
    spec = run.spec
    host = run.runtime
    now = host.now()
    approval = await asyncio.to_thread(
        store.stage,
        host.ledger,
        run_id=run.run_id,
        agent=spec.name,
        action=action.name,
        source=source,
        payload=args.model_dump(mode="json"),
        approvers=approvers_of(spec),
        expires_at=now + spec.approve.expiry,
        now=now,
    )
    _STAGED.setdefault(run, []).append(approval)
    return approval


def staged_of(run: Any) -> list[Approval]:
    """The writes ``run`` staged, in order."""
    return list(_STAGED.get(run, ()))


def staged_note(approval: Approval) -> str:
    """What the model is told of a write tool call that was staged."""
    return (
        f"Staged for approval (request {approval.id}): a person will approve or reject this "
        f"{approval.action} call; it has not been made. Do not retry it."
    )


def is_listed(
    approval: Approval,
    names: Iterable[str],
    people: People,
    *,
    groups: Mapping[str, set[str]] | None = None,
) -> bool:
    """Whether a person known by ``names`` (a Slack id, an email, a handle, a login) may decide
    ``approval``: one of its approvers under any of their identities, or in one of its groups."""
    known = {n for n in names if n and n.strip()}
    lowered = {n.lower() for n in known}
    for entry in approval.approvers:
        if entry.lower() in lowered:
            return True
        group_id = _GROUP_ID.match(entry) is not None
        if groups is not None and (entry.startswith("@") or group_id):
            members = groups.get(entry if group_id else entry.lower(), set())
            if known & members:
                return True
        if group_id:
            continue  # a user group, not a person
        if any(people.same(entry, name) for name in known):
            return True
    return False


@dataclass(frozen=True)
class Decision:
    """What a decision did: ``code`` is executed, failed, rejected, not_found, changed,
    not_approver, decided or expired; ``message`` says it to the decider."""

    code: str
    message: str
    approval: Approval | None = None

    @property
    def done(self) -> bool:
        """Whether this decision moved the request (its messages are to be updated)."""
        return self.code in ("executed", "failed", "rejected")


def _settled(approval: Approval) -> str:
    by = f" by {approval.decided_by}" if approval.decided_by else ""
    if approval.status == "expired":
        return f"request {approval.id} expired at {approval.expires_at:%Y-%m-%d %H:%M} UTC"
    return f"request {approval.id} was already decided: {approval.status}{by}"


async def decide(
    host: Any,
    approval_id: str,
    *,
    decision: str,
    who: str,
    listed: Callable[[Approval], Awaitable[bool]],
    find_spec: Callable[[str], AgentSpec | None],
    seen_hash: str | None = None,
    reason: str | None = None,
) -> Decision:
    """Approve or reject a request as ``who`` (``listed`` says whether they may); an approval
    executes the write. ``host`` is the runtime (its ledger, registry, env, clock)."""
    ledger: Ledger = host.ledger
    found = await asyncio.to_thread(store.get, ledger, approval_id)
    if found is None:
        return Decision("not_found", f"no approval request {approval_id!r} in the ledger")
    if not found.intact or (seen_hash is not None and seen_hash != found.payload_hash):
        log.warning("approval %s: the payload decided on is not the one staged", approval_id)
        return Decision(
            "changed",
            f"request {approval_id}'s payload is not the one shown to you: nothing was done",
            found,
        )
    if not await listed(found):
        who_may = ", ".join(found.approvers)
        return Decision(
            "not_approver",
            f"you ({who}) may not decide request {approval_id}: its approvers are {who_may}",
            found,
        )
    now = host.now()
    if found.status != "pending":
        code = "expired" if found.status == "expired" else "decided"
        return Decision(code, _settled(found), found)
    if found.expired(now):
        await asyncio.to_thread(store.expire_due, ledger, now=now)
        expired = await asyncio.to_thread(store.get, ledger, approval_id) or found
        return Decision("expired", _settled(expired), expired)
    claimed = await asyncio.to_thread(
        store.claim,
        ledger,
        approval_id,
        decision=decision,
        by=who,
        seen_hash=found.payload_hash,
        now=now,
        reason=reason,
    )
    current = await asyncio.to_thread(store.get, ledger, approval_id)
    assert current is not None
    if not claimed:
        code = "expired" if current.status == "expired" or current.expired(now) else "decided"
        return Decision(code, _settled(current), current)
    if decision == "rejected":
        await asyncio.to_thread(store.finish, ledger, current, status="rejected", now=now)
        said = f": {reason}" if reason else ""
        final = await asyncio.to_thread(store.get, ledger, approval_id)
        return Decision("rejected", f"rejected request {approval_id}{said}", final)
    status, result, made = await execute(host, current, find_spec(current.agent))
    await asyncio.to_thread(
        store.finish, ledger, current, status=status, now=host.now(), result=result, made=made
    )
    final = await asyncio.to_thread(store.get, ledger, approval_id)
    if status == "executed":
        refs = ", ".join(o.ref for o in made) or "done"
        return Decision("executed", f"approved request {approval_id}: {refs}", final)
    return Decision(
        "failed", f"approved request {approval_id}, but the write failed: {result['error']}", final
    )


async def execute(
    host: Any, approval: Approval, spec: AgentSpec | None
) -> tuple[str, dict[str, Any], list[Any]]:
    """Make an approved write, its grant checked again against the agent file as it is now:
    (executed or failed, the result to record, the ledger outcomes it made)."""
    try:
        action, args, grant = _granted(host, approval, spec)
        entry = await asyncio.to_thread(host.ledger.entry, approval.run_id) or {}
        services = {
            "ledger": host.ledger,
            "config": getattr(host, "config", None),
            "now": host.now,
            "owner": spec.owner if spec is not None else entry.get("owner"),
            "triggered_by": entry.get("triggered_by"),
        }
        if getattr(host, "clients", None) is not None:  # the connectors' kept clients
            services["clients"] = host.clients
        context = ActionContext(
            dry_run=False,
            env=host.env,
            services=services,
            connector_settings=host.connector_settings,
        )
        result = await action(context, args, grant)
    except (GrantDenied, ConnectorError, RunError, MeshAgentError) as exc:
        return "failed", {"error": str(exc)}, []
    except Exception as exc:  # noqa: BLE001 - a client library's error fails the write
        return "failed", {"error": f"{type(exc).__name__}: {exc}"}, []
    made = [Recorded.of(o) for o in result.outcomes]
    shown = [{"kind": o.kind, "ref": o.ref, "url": o.url} for o in made]
    return "executed", {"outcomes": shown}, made


def _granted(host: Any, approval: Approval, spec: AgentSpec | None) -> tuple[Action, Any, Any]:
    """The action, its parsed arguments and the grant it runs under now; GrantDenied when the
    agent file no longer allows it."""
    if spec is None:
        raise GrantDenied(approval.action, f"agent {approval.agent} is not loaded any more")
    if not spec.enabled:
        raise GrantDenied(approval.action, f"agent {spec.name} is disabled")
    action = host.registry.get(approval.action)
    args = action.parse(approval.payload)
    if approval.source == "tool":
        grants = [
            action.grant.model_validate(u.params) for u in spec.tools if u.action == action.name
        ]
        if not grants:
            raise GrantDenied(action.name, f"{action.name} is no longer granted to {spec.name}")
        refusal: GrantDenied | None = None
        for grant in grants:  # any of the agent's grants of the action may cover the call
            try:
                action.check(args, grant)
            except GrantDenied as exc:
                refusal = refusal or exc
                continue
            return action, args, grant
        assert refusal is not None
        raise refusal
    if action.name not in [use.action for use in spec.deliver]:
        raise GrantDenied(
            action.name, f"{action.name} is no longer a deliver action of {spec.name}"
        )
    return action, args, None


def identities(names: Iterable[str]) -> set[str]:
    """``names`` and their normalised forms (a handle's login, an email lowercased)."""
    found = set()
    for name in names:
        if name and name.strip():
            found |= {name, normalise(name).value}
    return found


def shown(approval: Approval) -> dict[str, Any]:
    """A staged write for a page or an API answer: what it does, its exact payload, and what
    became of it (who decided, when, why)."""
    headline, _ = describe(approval.action, approval.payload)
    return {
        "id": approval.id,
        "action": approval.action,
        "source": approval.source,
        "headline": headline,
        "payload": approval.payload,
        "payload_json": json.dumps(approval.payload, indent=2, sort_keys=True, ensure_ascii=False),
        "status": approval.status,
        "approvers": list(approval.approvers),
        "created_at": approval.created_at,
        "expires_at": approval.expires_at,
        "decided_by": approval.decided_by,
        "decided_at": approval.decided_at,
        "reason": approval.reason,
        "executed_at": approval.executed_at,
        "result": approval.result,
    }
