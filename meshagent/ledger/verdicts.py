"""Verdicts: what became of an outcome, read back from the tool after the fact, with evidence.

Every delivered outcome starts `pending`, due for its first check a day after it was recorded
(`records.FIRST_CHECK`) and final a week after (`records.FINAL_CHECK`); plans (dry runs) and
declared quiet results are never due. The follow-up pass (Slack: reactions, thread replies, the
message deleted; Jira: the comment still there, the issue's status and resolution, transitions
and comments by others) works like this:

    for item in verdicts.due(ledger, now=now, limit=200):        # oldest first
        found = read_back(item)                                  # [Evidence(who, what, when)]
        verdicts.judge_outcome(ledger, item, found, checked_at=now, people=directory)

`judge` is the one rule, a pure function: engagement (a reaction of any kind, a reply, a comment,
a transition, a Useful vote) counts only from people other than the agent's owner and the run's
triggerer, and never from a bot; a deletion, a resolution such as Won't Do or Duplicate, or a
majority of thumbs-down counts from anyone but a bot. Then:

- rejected: a strong negative (deleted; resolved Won't Do, Duplicate, Declined, Cannot
  Reproduce; issue deleted), or more negative than positive signals;
- accepted: any counted engagement;
- ignored: none, once the outcome is final; pending before.

Evidence `what` values the rule knows: `reaction:NAME` (`reaction:-1`, `reaction:thumbsdown`,
`reaction:x` are negative), `reply`, `vote:+1`, `vote:-1`, `deleted`, `jira.comment`,
`jira.transition:STATUS`, `jira.status:STATUS`, `jira.resolution:NAME`, `jira.deleted`; any
other `what` is engagement. The stored evidence keeps every item with `counted` and, when not
counted, `why` (owner, triggerer, bot), so a reader sees what was left out.

`set_verdict` stores a verdict as given (for a pass with its own rule); `judge_outcome` and
`judge_many` apply `judge` and store the result. Verdicts live in `ledger_outcomes`, never in
the chained entry columns: `ledger verify` is unaffected by them.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, bindparam, select, update

from meshagent.exceptions import LedgerError
from meshagent.ledger.records import FINAL_CHECK, PLANNED, QUIET, STAGED
from meshagent.ledger.schema import entries, outcomes
from meshagent.ledger.types import utc

if TYPE_CHECKING:
    from meshagent.ledger.access import LedgerAccess
    from meshagent.ledger.people import People

__all__ = [
    "VERDICTS",
    "Due",
    "Evidence",
    "Judgement",
    "due",
    "judge",
    "judge_many",
    "judge_outcome",
    "outcome_ids",
    "set_verdict",
    "set_verdicts",
]

VERDICTS = ("accepted", "rejected", "ignored", "pending")
_STRONG_NEGATIVE_RESOLUTIONS = (
    "won't do",
    "wont do",
    "won't fix",
    "duplicate",
    "declined",
    "cannot reproduce",
    "rejected",
    "invalid",
)
_NEGATIVE_REACTIONS = ("-1", "thumbsdown", "x", "no_entry", "no_entry_sign")


@dataclass(frozen=True)
class Evidence:
    """One thing read back about an outcome: who did what, when. `who` is any identity (a
    Slack id, an email, a login); None for a fact of the tool itself (the issue is gone)."""

    who: str | None
    what: str
    when: datetime | None = None
    bot: bool = False

    def as_dict(self, *, counted: bool, why: str | None = None) -> dict[str, Any]:
        item: dict[str, Any] = {
            "who": self.who,
            "what": self.what,
            "when": utc(self.when).isoformat() if self.when else None,
            "counted": counted,
        }
        if self.bot:
            item["bot"] = True
        if why:
            item["why"] = why
        return item

    @classmethod
    def of(cls, item: Evidence | Mapping[str, Any]) -> Evidence:
        if isinstance(item, Evidence):
            return item
        when = item.get("when")
        if isinstance(when, str):
            when = datetime.fromisoformat(when)
        return cls(item.get("who"), str(item["what"]), when, bool(item.get("bot", False)))


@dataclass(frozen=True)
class Judgement:
    """The verdict and the evidence it rests on, every item marked counted or not."""

    verdict: str
    evidence: tuple[dict[str, Any], ...] = field(default_factory=tuple)


def signal(what: str) -> int:
    """+1 engagement, -1 a negative signal, -2 a strong negative (the outcome is gone or
    refused outright)."""
    kind, _, name = what.partition(":")
    name = name.strip().lower()
    if kind in ("deleted", "jira.deleted"):
        return -2
    if kind == "jira.resolution" and name in _STRONG_NEGATIVE_RESOLUTIONS:
        return -2
    if kind == "reaction" and name in _NEGATIVE_REACTIONS:
        return -1
    if kind == "vote" and name in ("-1", "down"):
        return -1
    return 1


def judge(
    evidence: Iterable[Evidence | Mapping[str, Any]],
    *,
    excluded: Callable[[str], bool],
    final: bool,
) -> Judgement:
    """The verdict the evidence supports (see the module docstring); `excluded(who)` says
    whether `who` is the owner or the triggerer (any of their identities)."""
    kept: list[dict[str, Any]] = []
    score_pos = score_neg = 0
    strong = False
    for item in map(Evidence.of, evidence):
        value = signal(item.what)
        why = None
        if item.bot:
            why = "bot"
        elif value > 0 and item.who is not None and excluded(item.who):
            why = "owner or triggerer"
        if why is None:
            if value == -2:
                strong = True
            elif value < 0:
                score_neg += 1
            else:
                score_pos += 1
        kept.append(item.as_dict(counted=why is None, why=why))
    if strong or score_neg > score_pos:
        verdict = "rejected"
    elif score_pos:
        verdict = "accepted"
    else:
        verdict = "ignored" if final else "pending"
    return Judgement(verdict, tuple(kept))


@dataclass(frozen=True)
class Due:
    """An outcome due for a check, with what the follow-up pass needs to read it back."""

    id: int
    run_id: str
    kind: str
    ref: str
    url: str | None
    created_at: datetime
    checked_at: datetime | None
    next_check_at: datetime
    agent: str
    owner: str | None
    triggered_by: str | None
    audience: str | None


_DUE_COLUMNS = (
    outcomes.c.id,
    outcomes.c.run_id,
    outcomes.c.kind,
    outcomes.c.ref,
    outcomes.c.url,
    outcomes.c.created_at,
    outcomes.c.checked_at,
    outcomes.c.next_check_at,
    entries.c.agent,
    entries.c.owner,
    entries.c.triggered_by,
    outcomes.c.audience,
)


def due(
    ledger: LedgerAccess, *, now: datetime, limit: int = 100, kinds: Sequence[str] | None = None
) -> list[Due]:
    """Outcomes whose next check is at or before `now`, the longest waiting first."""
    query = (
        select(*_DUE_COLUMNS)
        .join(entries, entries.c.run_id == outcomes.c.run_id)
        .where(
            outcomes.c.verdict.in_(("pending", "accepted")),
            outcomes.c.next_check_at.is_not(None),
            outcomes.c.next_check_at <= now,
        )
        .order_by(outcomes.c.next_check_at, outcomes.c.id)
        .limit(limit)
    )
    if kinds is not None:
        query = query.where(outcomes.c.kind.in_(list(kinds)))
    found = ledger.read(lambda c: c.execute(query).all(), what="read outcomes due")
    return [Due(*row) for row in found]


def outcome_ids(ledger: LedgerAccess, run_ids: Sequence[str]) -> dict[str, list[int]]:
    """The ids of the delivered outcomes (no plans, no quiet results, no writes staged for
    approval: their approver judges them) of `run_ids`."""
    result: dict[str, list[int]] = {run_id: [] for run_id in run_ids}

    def read(connection: Connection) -> None:
        for at in range(0, len(run_ids), 500):
            query = (
                select(outcomes.c.run_id, outcomes.c.id)
                .where(
                    outcomes.c.run_id.in_(list(run_ids[at : at + 500])),
                    outcomes.c.kind.not_in((PLANNED, QUIET, STAGED)),
                )
                .order_by(outcomes.c.id)
            )
            for run_id, outcome_id in connection.execute(query):
                result[run_id].append(int(outcome_id))

    ledger.read(read, what="read outcome ids")
    return result


def _check_verdict(verdict: str) -> str:
    if verdict not in VERDICTS:
        raise LedgerError(f"verdict {verdict!r} is not one of {', '.join(VERDICTS)}")
    return verdict


_SET = (
    update(outcomes)
    .where(outcomes.c.id == bindparam("outcome_id"))
    .values(
        verdict=bindparam("set_verdict"),
        evidence=bindparam("set_evidence"),
        checked_at=bindparam("set_checked_at"),
        next_check_at=bindparam("set_next_check_at"),
    )
)
_CREATED = select(outcomes.c.id, outcomes.c.created_at)


def set_verdicts(
    ledger: LedgerAccess,
    items: Sequence[Mapping[str, Any]],
    *,
    final_check: timedelta = FINAL_CHECK,
) -> None:
    """Store many verdicts in one transaction: each item has outcome_id, verdict, evidence
    (dicts or Evidence), checked_at and optionally next_check_at (default: the final check,
    `final_check` (a week) after the outcome was recorded, unless that is past; then none)."""
    rows = []
    for item in items:
        evidence = [
            e.as_dict(counted=True) if isinstance(e, Evidence) else dict(e)
            for e in item.get("evidence", ())
        ]
        rows.append(
            {
                "outcome_id": int(item["outcome_id"]),
                "verdict": _check_verdict(item["verdict"]),
                "evidence": json.dumps(evidence, default=str),
                "checked_at": item.get("checked_at"),
                "next_check_at": item.get("next_check_at"),
                "_default_next": "next_check_at" not in item,
            }
        )
    if not rows:
        return

    def work(connection: Connection) -> None:
        need = [row["outcome_id"] for row in rows if row["_default_next"]]
        created: dict[int, datetime] = {}
        for at in range(0, len(need), 500):
            query = _CREATED.where(outcomes.c.id.in_(need[at : at + 500]))
            created.update({int(i): c for i, c in connection.execute(query)})
        params = []
        for row in rows:
            row = dict(row)
            if row.pop("_default_next"):
                made = created.get(row["outcome_id"])
                if made is None:
                    raise LedgerError(f"outcome {row['outcome_id']} is not in the ledger")
                final = utc(made) + final_check
                checked = row["checked_at"]
                row["next_check_at"] = final if checked is None or utc(checked) < final else None
            params.append({f"set_{k}" if k != "outcome_id" else k: v for k, v in row.items()})
        connection.execute(_SET, params)

    ledger.transact(work, what="record verdicts")


def set_verdict(
    ledger: LedgerAccess,
    outcome_id: int,
    verdict: str,
    evidence: Iterable[Evidence | Mapping[str, Any]] = (),
    checked_at: datetime | None = None,
    *,
    next_check_at: datetime | None = None,
) -> None:
    """Store `verdict` for one outcome with its evidence (who, what, when) as given."""
    item: dict[str, Any] = {
        "outcome_id": outcome_id,
        "verdict": verdict,
        "evidence": list(evidence),
        "checked_at": checked_at,
    }
    if next_check_at is not None:
        item["next_check_at"] = next_check_at
    set_verdicts(ledger, [item])


_Who = tuple[str | None, str | None, Any, str | None]  # owner, triggerer, created_at, audience


def _who(ledger: LedgerAccess, ids: Sequence[int]) -> dict[int, _Who]:
    def read(connection: Connection) -> dict[int, _Who]:
        found = {}
        for at in range(0, len(ids), 500):
            query = (
                select(
                    outcomes.c.id,
                    entries.c.owner,
                    entries.c.triggered_by,
                    outcomes.c.created_at,
                    outcomes.c.audience,
                )
                .join(entries, entries.c.run_id == outcomes.c.run_id)
                .where(outcomes.c.id.in_(list(ids[at : at + 500])))
            )
            found.update({int(i): (o, t, c, a) for i, o, t, c, a in connection.execute(query)})
        return found

    return ledger.read(read, what="read outcomes to judge")


def judge_many(
    ledger: LedgerAccess,
    found: Mapping[int, Iterable[Evidence | Mapping[str, Any]]],
    *,
    checked_at: datetime,
    people: People | None = None,
    final_check: timedelta = FINAL_CHECK,
) -> dict[int, Judgement]:
    """Judge each outcome id's evidence with `judge` and store the verdicts in one transaction.

    The owner and triggerer are the run's, resolved to people with `people` (default: the
    ledger's identity table), so that a Slack id and an email of the owner are both left out.
    An answer shown only to the person who asked (audience "ephemeral") is theirs to judge
    when they are not the owner: nobody else can see it. An outcome is final (ignored rather
    than pending without engagement) `final_check` after it was recorded.
    """
    from meshagent.ledger.people import directory

    people = people if people is not None else directory(ledger)
    ids = [int(i) for i in found]
    who = _who(ledger, ids)
    result: dict[int, Judgement] = {}
    items = []
    for outcome_id in ids:
        if outcome_id not in who:
            raise LedgerError(f"outcome {outcome_id} is not in the ledger")
        owner, triggerer, created, audience = who[outcome_id]
        if audience == "ephemeral" and not people.same(triggerer, owner):
            triggerer = None  # an answer for the asker alone: theirs is the only say on it

        def excluded(name: str, owner: str | None = owner, triggerer: str | None = triggerer):
            return people.same(name, owner) or people.same(name, triggerer)

        final = utc(checked_at) >= utc(created) + final_check
        judgement = judge(found[outcome_id], excluded=excluded, final=final)
        result[outcome_id] = judgement
        items.append(
            {
                "outcome_id": outcome_id,
                "verdict": judgement.verdict,
                "evidence": list(judgement.evidence),
                "checked_at": checked_at,
            }
        )
    set_verdicts(ledger, items, final_check=final_check)
    return result


def judge_outcome(
    ledger: LedgerAccess,
    outcome: Due | int,
    evidence: Iterable[Evidence | Mapping[str, Any]],
    *,
    checked_at: datetime,
    people: People | None = None,
) -> Judgement:
    """`judge_many` for one outcome (a `Due` from `due`, or its id)."""
    outcome_id = outcome.id if isinstance(outcome, Due) else int(outcome)
    found = judge_many(ledger, {outcome_id: list(evidence)}, checked_at=checked_at, people=people)
    return found[outcome_id]
