"""One person's view of the ledger in Slack: `/meshagent status RUN_ID` and `/meshagent me`."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import func, or_, select

from meshagent.ledger.people import directory
from meshagent.ledger.periods import Period
from meshagent.ledger.schema import DAILY_SUMS, daily, entries
from meshagent.ledger.schema import feedback as feedback_table
from meshagent.ledger.value import credits
from meshagent.slack.access import Caller, LookupFailed
from meshagent.slack.command_base import _MAX_LINES, Command, CommandsBase
from meshagent.slack.messages import (
    cost_text,
    escape,
    note,
    section,
    tokens_text,
)
from meshagent.slack.respond import Reply


class LedgerCommands(CommandsBase):
    """A run's status, and the person's own week."""

    # -- status ---------------------------------------------------------------------------------

    def _entry(self, ref: str) -> tuple[dict[str, Any] | None, str | None]:
        ref = ref.strip().strip("`")
        found = self.ledger.entry(ref)
        if found is not None:
            return found, None
        if len(ref) < 6 or not re.fullmatch(r"[0-9a-fA-F-]+", ref):
            return None, None
        query = select(entries.c.run_id).where(entries.c.run_id.like(f"{ref}%")).limit(2)
        ids = self.ledger.read(lambda c: c.execute(query).scalars().all(), what="find a run")
        if len(ids) > 1:
            return None, f"`{escape(ref)}` matches several runs: give more of the run id."
        return (self.ledger.entry(ids[0]), None) if ids else (None, None)

    def _annotations(self, run_id: str) -> tuple[list[Any], dict[int, int]]:
        votes_query = (
            select(feedback_table.c.vote, func.count())
            .where(feedback_table.c.run_id == run_id)
            .group_by(feedback_table.c.vote)
        )
        votes = dict(self.ledger.read(lambda c: c.execute(votes_query).all(), what="read votes"))
        return self.ledger.outcomes(run_id), votes

    async def _status(self, cmd: Command, reply: Reply, ref: str) -> None:
        entry, problem = await asyncio.to_thread(self._entry, ref)
        missing = f"No run `{escape(ref)}` that you may see."
        if problem:
            await reply.send(note(problem))
            return
        if entry is None or not await self._may_see(cmd.caller, entry):
            await reply.send(note(missing))
            return
        outcomes, votes = await asyncio.to_thread(self._annotations, entry["run_id"])
        await reply.send(
            note(f"run {entry['run_id']}", blocks=[section(_status_text(entry, outcomes, votes))])
        )

    async def _may_see(self, caller: Caller, entry: Mapping[str, Any]) -> bool:
        if entry.get("triggered_by") == caller.user_id:
            return True
        if await self.admin_name(caller) is not None:
            return True
        owner = str(entry.get("owner") or "").lower()
        if not owner:
            return False
        try:
            return owner in (await self.directory.person(caller.user_id)).names()
        except LookupFailed:
            return False

    # -- me ---------------------------------------------------------------------------------------

    def _my_week(self, user_id: str, period: Period) -> list[tuple[str, dict[str, Any]]]:
        """Per agent, the week's runs that are the person's (they asked for them, or own the
        agent when nobody asked), under any of their identities, with the accepted outcomes
        and minutes evidenced credited to them beside the minutes claimed."""
        people = directory(self.ledger)
        names = sorted(people.names(user_id))
        sums = [func.sum(daily.c[name]).label(name) for name in DAILY_SUMS]
        query = (
            select(daily.c.agent, *sums)
            .where(
                or_(daily.c.person.in_(names), func.lower(daily.c.person).in_(names)),
                daily.c.day >= period.start,
                daily.c.day < period.end,
            )
            .group_by(daily.c.agent)
            .order_by(daily.c.agent)
        )
        found = self.ledger.read(lambda c: c.execute(query).all(), what="read my runs")
        rows = [(row[0], dict(zip(DAILY_SUMS, row[1:], strict=True))) for row in found]
        me = people.key(user_id)
        for credit in credits(self.ledger, period, value=self.config.value, people=people):
            if credit.person == me:
                sums = next((s for agent, s in rows if agent == credit.agent), None)
                if sums is not None:
                    sums["accepted"] = sums.get("accepted", 0) + 1
                    sums["evidenced"] = sums.get("evidenced", Decimal(0)) + credit.minutes
        return rows

    async def _me(self, cmd: Command, reply: Reply) -> None:
        period = Period.week(datetime.now(UTC).date())
        await self.directory.link(self.ledger, cmd.user_id)  # their email's runs are theirs too
        rows = await asyncio.to_thread(self._my_week, cmd.user_id, period)
        title = f"*Your runs this week* ({period.label}; only you see this)"
        if not rows:
            await reply.send(note(f"{title}\nNo finished runs yet this week."))
            return
        lines = [f"• {escape(agent)}: {_sums_text(sums)}" for agent, sums in rows[:_MAX_LINES]]
        total: dict[str, Any] = {}
        for _, sums in rows:
            for key, value in sums.items():
                total[key] = total.get(key, 0) + (value or 0)
        text = "\n".join([title, *lines, f"*Total*: {_sums_text(total)}"])
        await reply.send(note("Your runs this week", blocks=[section(text)]))


def _sums_text(sums: Mapping[str, Any]) -> str:
    runs = int(sums.get("runs") or 0)
    with_outcome = int(sums.get("runs_with_outcome") or 0)
    spent = tokens_text(int(sums.get("input_tokens") or 0), int(sums.get("output_tokens") or 0))
    unknown = int(sums.get("runs_cost_unknown") or 0)
    cost = None if runs and unknown == runs else Decimal(sums.get("cost_usd") or 0)
    money = cost_text(cost) + (f" (+{unknown} unknown)" if cost is not None and unknown else "")
    minutes = Decimal(sums.get("minutes_saved") or 0)
    evidenced = Decimal(sums.get("evidenced") or 0)
    votes = f":thumbsup: {int(sums.get('feedback_pos') or 0)} "
    votes += f":thumbsdown: {int(sums.get('feedback_neg') or 0)}"
    return (
        f"{runs} run{'s' if runs != 1 else ''}, {with_outcome} with an outcome · "
        f"{int(sums.get('accepted') or 0)} accepted · {evidenced.normalize():f} min evidenced of "
        f"{minutes.normalize():f} claimed · {spent} · {money} · {votes}"
    )


def _status_text(entry: Mapping[str, Any], outcomes: list[Any], votes: dict[int, int]) -> str:
    started = entry.get("started_at")
    finished = entry.get("finished_at")
    lines = [
        f"*{escape(entry['agent'])}*: {escape(entry['status'])} "
        f"({escape(entry['trigger_kind'])}"
        + (f" by <@{entry['triggered_by']}>" if entry.get("triggered_by") else "")
        + ")",
        f"run `{entry['run_id']}`",
    ]
    if started is not None:
        when = f"started {started:%Y-%m-%d %H:%M:%S} UTC"
        if finished is not None:
            when += f", took {(finished - started).total_seconds():.1f}s"
        lines.append(when)
    spent = tokens_text(
        int(entry.get("input_tokens") or 0),
        int(entry.get("output_tokens") or 0),
        bool(entry.get("usage_estimated")),
    )
    calls = int(entry.get("model_calls") or 0)
    lines.append(
        f"{spent} · {cost_text(entry.get('cost_usd'))} · {calls} model call"
        f"{'s' if calls != 1 else ''}"
    )
    for outcome in outcomes[:10]:
        ref = escape(outcome.ref)
        lines.append(
            f"{escape(outcome.kind)}: " + (f"<{outcome.url}|{ref}>" if outcome.url else ref)
        )
    lines.append(f":thumbsup: {votes.get(1, 0)} :thumbsdown: {votes.get(-1, 0)}")
    if entry.get("error"):
        lines.append(f"error: {escape(str(entry['error'])[:500])}")
    return "\n".join(lines)
