"""The follow-up pass: each delivered outcome read back from its tool when it matures, judged.

The ledger says which outcomes are due (`verdicts.due`: a day after delivery, then a week);
this pass reads each one back, read-only, and stores the verdict `verdicts.judge_many` gives
the evidence:

- a Slack message (`slack.message`, ref `CHANNEL:TS`): its reactions of any kind and who made
  them (reactions.get), the replies in its thread and who wrote them (conversations.replies);
  `message_not_found` is the message deleted. Each Slack user seen is linked to their email
  (users.info, cached) in the ledger's people, so the owner's and triggerer's own reactions
  are left out whichever name they were recorded under; bots never count;
- a Jira issue the agent created (`jira.issue`, ref `KEY`): its status and resolution (Done
  against Won't Do, Duplicate), its transitions and comments by others (the changelog), or
  the issue deleted; a comment (`jira.comment`, ref `KEY#ID`): still there or deleted, and the
  comments others added after it.

Each pass makes at most `[followup] max_calls_per_pass` API calls (an outcome whose reads would
pass the limit waits for the next pass); slack_sdk's retry handlers honour Slack's Retry-After,
and the Jira connector retries a 429 after its Retry-After. Under `meshagent serve` the pass
runs every `[followup] interval_minutes`, by one replica at a time (`claim_pass`); `meshagent
ledger follow-up` runs one pass by hand.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from meshagent.ledger import people as people_mod
from meshagent.ledger import verdicts
from meshagent.ledger.records import FIRST_CHECK
from meshagent.ledger.verdicts import Due, Evidence

if TYPE_CHECKING:
    from meshagent.config import Config
    from meshagent.ledger.store import Ledger

__all__ = [
    "JIRA_KINDS",
    "SLACK_KINDS",
    "Checked",
    "Pass",
    "claim_pass",
    "follow_up",
    "run_pass",
    "serve_passes",
]

log = logging.getLogger(__name__)

SLACK_KINDS = ("slack.message",)
#: Read from the ledger itself: an answer shown only to its asker is judged by their vote.
VOTE_KINDS = ("slack.ephemeral",)
JIRA_KINDS = ("jira.issue", "jira.comment")


class _OutOfCalls(Exception):
    """The pass's call budget is spent: the outcome waits for the next pass."""


@dataclass
class Checked:
    """One outcome the pass read back: its evidence and verdict, or why it was not judged."""

    outcome: Due
    evidence: list[Evidence] = field(default_factory=list)
    verdict: str | None = None
    error: str | None = None


@dataclass
class Pass:
    """What a pass did: the outcomes checked, the calls made, those left for the next pass."""

    checked: list[Checked] = field(default_factory=list)
    calls: int = 0
    left: int = 0


class _Budget:
    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0

    def spend(self, calls: int = 1) -> None:
        if self.used + calls > self.limit:
            raise _OutOfCalls
        self.used += calls


def _when(ts: str | None) -> datetime | None:
    try:
        return datetime.fromtimestamp(float(ts or ""), UTC)
    except ValueError:
        return None


class _SlackReader:
    """Read-only Slack reads for the pass, on the connector's client (retries, Retry-After)."""

    def __init__(self, ledger: Ledger, client: Any, budget: _Budget) -> None:
        self.ledger = ledger
        self.client = client
        self.budget = budget
        self.bots: dict[str, bool] = {}
        self.bot_id: str | None = None

    async def _is_bot(self, user: str) -> bool:
        if user not in self.bots:
            self.budget.spend()
            found = (await self.client.users_info(user=user))["user"]
            self.bots[user] = bool(found.get("is_bot")) or user == "USLACKBOT"
            email = str(found.get("profile", {}).get("email") or "")
            if email:
                people_mod.link(self.ledger, user, email, source="slack")
        return self.bots[user]

    async def read(self, item: Due) -> list[Evidence]:
        from slack_sdk.errors import SlackApiError

        channel, _, ts = item.ref.partition(":")
        if self.bot_id is None:
            self.budget.spend()
            self.bot_id = str((await self.client.auth_test()).get("user_id") or "")
        self.budget.spend()
        try:
            found = await self.client.reactions_get(channel=channel, timestamp=ts, full=True)
        except SlackApiError as exc:
            code = exc.response.data.get("error") if isinstance(exc.response.data, dict) else None
            if code in ("message_not_found", "thread_not_found"):
                return [Evidence(None, "deleted")]
            raise
        message = found.get("message") or {}
        evidence: list[Evidence] = []
        for reaction in message.get("reactions", []):
            for user in reaction.get("users", []):
                bot = user == self.bot_id or await self._is_bot(user)
                evidence.append(Evidence(user, f"reaction:{reaction['name']}", None, bot))
        thread = message.get("thread_ts") or ts
        if message.get("reply_count") or thread != ts:
            self.budget.spend()
            replies = await self.client.conversations_replies(channel=channel, ts=thread, limit=200)
            for reply in replies.get("messages", []):
                if float(reply["ts"]) <= float(ts) or reply["ts"] == thread:
                    continue  # the message itself, its parent, or what came before it
                user = reply.get("user") or reply.get("bot_id") or ""
                bot = bool(reply.get("bot_id")) or user == self.bot_id
                if user and not bot:
                    bot = await self._is_bot(user)
                evidence.append(Evidence(user or None, "reply", _when(reply["ts"]), bot))
        return evidence


class _VoteReader:
    """The Useful / Not useful votes on the outcome's run, from the ledger (no API call)."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger

    async def read(self, item: Due) -> list[Evidence]:
        from sqlalchemy import select

        from meshagent.ledger.schema import feedback

        query = select(feedback.c.person, feedback.c.vote, feedback.c.created_at).where(
            feedback.c.run_id == item.run_id
        )
        found = self.ledger.read(lambda c: c.execute(query).all(), what="read votes")
        return [
            Evidence(person, "vote:+1" if vote > 0 else "vote:-1", at) for person, vote, at in found
        ]


def _slack_client(config: Config, env: Mapping[str, str]) -> Any | None:
    from connectors.slack_client import make_client, token_missing
    from meshagent.actions import ActionContext

    context = ActionContext(env=env, settings=config.slack.model_dump())
    if token_missing(context) is not None:
        return None
    return make_client(context, "follow-up")


async def follow_up(
    ledger: Ledger,
    config: Config,
    *,
    env: Mapping[str, str],
    now: datetime | None = None,
    max_calls: int | None = None,
    slack_client: Any | None = None,
    jira_context: Any | None = None,
) -> Pass:
    """One pass: read back each outcome due at `now`, judge it, store the verdict."""
    now = now or datetime.now(UTC)
    limit = max_calls if max_calls is not None else config.followup.max_calls_per_pass
    budget = _Budget(limit)
    result = Pass()
    client = slack_client if slack_client is not None else _slack_client(config, env)
    readers: dict[str, Any] = {}
    if client is not None:
        slack_reader = _SlackReader(ledger, client, budget)
        readers.update({kind: slack_reader for kind in SLACK_KINDS})
    readers.update({kind: _VoteReader(ledger) for kind in VOTE_KINDS})
    jira_reader = _jira_reader(config, env, budget, jira_context)
    if jira_reader is not None:
        readers.update({kind: jira_reader for kind in JIRA_KINDS})
    first, final = _checks(config)
    due = _due(ledger, now, first, max(limit, 1), sorted(readers))
    found: dict[int, list[Evidence]] = {}
    for at, item in enumerate(due):
        checked = Checked(item)
        try:
            checked.evidence = await readers[item.kind].read(item)
        except _OutOfCalls:
            result.left = len(due) - at
            break
        except Exception as exc:  # noqa: BLE001 - one unreadable outcome never stops the pass
            checked.error = _reason(exc)
            log.warning("follow-up of outcome %s (%s) failed: %s", item.id, item.ref, checked.error)
        else:
            found[item.id] = checked.evidence
        result.checked.append(checked)
    if found:
        judged = verdicts.judge_many(
            ledger,
            found,
            checked_at=now,
            people=people_mod.directory(ledger, aliases=_aliases(config)),
            final_check=final,
        )
        for checked in result.checked:
            if checked.outcome.id in judged:
                checked.verdict = judged[checked.outcome.id].verdict
    result.calls = budget.used
    return result


def _checks(config: Config) -> tuple[timedelta, timedelta]:
    settings = config.followup
    first = timedelta(hours=settings.first_check_hours)
    final = max(first, timedelta(hours=settings.final_check_hours))
    return first, final


def _due(
    ledger: Ledger, now: datetime, first: timedelta, limit: int, kinds: list[str]
) -> list[Due]:
    """The outcomes due at `now`: never checked and `first` old, or past their next check.

    The ledger schedules an outcome's first check `records.FIRST_CHECK` (a day) after it was
    recorded; the setting moves that check by its difference (a shorter one asks the ledger
    that much ahead)."""
    zero = timedelta(0)
    ahead = max(zero, FIRST_CHECK - first)
    found = verdicts.due(ledger, now=now + ahead, limit=limit, kinds=kinds)
    return [
        item
        for item in found
        if item.next_check_at + (first - FIRST_CHECK if item.checked_at is None else zero) <= now
    ]


def _aliases(config: Config) -> Mapping[str, Any]:
    return dict(config.people.aliases)


def _reason(exc: Exception) -> str:
    response = getattr(exc, "response", None)
    data = getattr(response, "data", None)
    if isinstance(data, dict) and data.get("error"):
        return str(data["error"])
    return str(exc) or type(exc).__name__


def _jira_reader(
    config: Config, env: Mapping[str, str], budget: _Budget, context: Any | None
) -> Any | None:
    from connectors.jira_site import credentials_missing, site_of
    from meshagent.actions import ActionContext

    context = context or ActionContext(env=env, settings=config.jira.model_dump())
    if credentials_missing(context) is not None:
        return None
    return _JiraReader(site_of(context, "follow-up"), budget)


_NEGATIVE_STATUSES = ("won't do", "wont do", "declined", "rejected", "cancelled", "canceled")


class _JiraReader:
    """Read-only Jira reads for the pass, through the connector's retries (429, Retry-After)."""

    def __init__(self, site: Any, budget: _Budget) -> None:
        self.site = site
        self.budget = budget
        self.own: set[str] | None = None  # the names of the account the agents write as

    async def _evidence(self, who: str | None, what: str, when: datetime | None) -> Evidence:
        if self.own is None:
            me = await self._get("myself", lambda c: c.myself())
            self.own = {str(me.get(n) or "") for n in ("emailAddress", "name", "accountId")}
            self.own.discard("")
        return Evidence(who, what, when, bot=who is not None and who in self.own)

    async def _get(self, target: str, work: Any) -> Any:
        from connectors.jira_site import call

        self.budget.spend()
        return await call("follow-up", target, self.site, work)

    async def read(self, item: Due) -> list[Evidence]:
        from meshagent.exceptions import ConnectorError

        key, _, comment_id = item.ref.partition("#")
        try:
            issue = await self._get(
                key, lambda c: c.issue(key, fields="status,resolution", expand="changelog")
            )
        except ConnectorError as exc:
            if "404" in str(exc.code):
                return [Evidence(None, "jira.deleted" if not comment_id else "deleted")]
            raise
        evidence: list[Evidence] = []
        since = item.created_at
        if comment_id:
            comments = await self._get(key, lambda c: c.comments(key))
            ids = {str(getattr(c, "id", "")) for c in comments}
            if comment_id not in ids:
                return [Evidence(None, "deleted")]
            for comment in comments:
                when = _jira_time(getattr(comment, "created", None))
                if str(comment.id) != comment_id and (when is None or when > since):
                    who = _jira_who(comment.author)
                    evidence.append(await self._evidence(who, "jira.comment", when))
            return evidence
        fields = issue.fields
        resolution = getattr(getattr(fields, "resolution", None), "name", None)
        if resolution:
            evidence.append(Evidence(None, f"jira.resolution:{resolution}"))
        status = getattr(getattr(fields, "status", None), "name", None)
        if status and status.lower() in _NEGATIVE_STATUSES and not resolution:
            evidence.append(Evidence(None, f"jira.resolution:{status}"))
        for history in getattr(getattr(issue, "changelog", None), "histories", []) or []:
            when = _jira_time(getattr(history, "created", None))
            who = _jira_who(getattr(history, "author", None))
            for change in getattr(history, "items", []):
                if getattr(change, "field", "") == "status":
                    what = f"jira.transition:{change.toString}"
                    evidence.append(await self._evidence(who, what, when))
        comments = await self._get(key, lambda c: c.comments(key))
        for comment in comments:
            when = _jira_time(getattr(comment, "created", None))
            if when is None or when > since:
                who = _jira_who(comment.author)
                evidence.append(await self._evidence(who, "jira.comment", when))
        return evidence


def _jira_who(author: Any) -> str | None:
    for name in ("emailAddress", "name", "accountId", "displayName"):
        value = getattr(author, name, None)
        if value:
            return str(value)
    return None


def _jira_time(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%f%z")
    except ValueError:
        try:
            return datetime.fromisoformat(text)
        except ValueError:
            return None


def run_pass(
    ledger: Ledger,
    config: Config,
    *,
    env: Mapping[str, str],
    now: datetime | None = None,
    max_calls: int | None = None,
) -> Pass:
    """`follow_up` from synchronous code (the CLI)."""
    return asyncio.run(follow_up(ledger, config, env=env, now=now, max_calls=max_calls))


def interval(config: Config) -> timedelta:
    """How often `meshagent serve` runs a pass."""
    return timedelta(minutes=config.followup.interval_minutes)


def claim_pass(ledger: Ledger, slot: datetime, every: timedelta, *, now: datetime) -> bool:
    """Whether this replica runs the pass of `slot` (the start of an interval): one key per
    slot in the ledger's nonces, so of N replicas exactly one makes the pass's calls."""
    from meshagent.ledger import nonces

    key = f"followup:{slot.astimezone(UTC).isoformat()}"
    return bool(nonces.claim(ledger, {key: slot + 2 * every}, now=now))


async def serve_passes(ledger: Ledger, config: Config, env: Mapping[str, str]) -> None:
    """Under `meshagent serve`: a pass every `[followup] interval_minutes`, at the start of
    each interval, run by whichever replica claims it; runs until cancelled."""
    every = interval(config)
    step = every.total_seconds()
    while True:
        now = datetime.now(UTC)
        slot = datetime.fromtimestamp(now.timestamp() // step * step, UTC)
        try:
            if await asyncio.to_thread(claim_pass, ledger, slot, every, now=now):
                done = await asyncio.to_thread(run_pass, ledger, config, env=env)
                log.info(
                    "follow-up: %d outcomes checked, %d API calls, %d left",
                    len(done.checked),
                    done.calls,
                    done.left,
                )
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - the next pass tries again
            log.exception("follow-up pass failed")
        await asyncio.sleep(max(1.0, (slot + every - datetime.now(UTC)).total_seconds()))
