"""Tokenmaxxing flags: explainable rules, each with its threshold and a reason in plain words.

Every flag names the runs behind it. Thresholds come from `flags.*` in meshagent.toml; pass that
object (or a FlagSettings) as `settings`.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, func, select

from meshagent.config import FlagSettings, PrivacySettings
from meshagent.ledger.periods import Period
from meshagent.ledger.privacy import PrivacyLike, is_admin
from meshagent.ledger.records import PLANNED
from meshagent.ledger.schema import entries, feedback, outcomes, spent_tokens

if TYPE_CHECKING:
    from meshagent.ledger.store import Ledger

__all__ = ["Flag", "flags"]

ScheduleCheck = Callable[[str, datetime], bool]


@dataclass(frozen=True)
class Flag:
    rule: str
    subject: str  # the agent, or the owner for bursts
    reason: str
    run_ids: tuple[str, ...]


@dataclass
class _Run:
    run_id: str
    agent: str
    owner: str
    started_at: datetime
    status: str
    trigger_kind: str
    scheduled_for: datetime | None
    input_hash: str | None
    tokens: int
    outcomes: int = 0
    pos: int = 0
    neg: int = 0


def _load(connection: Connection, since: datetime, until: datetime) -> list[_Run]:
    tokens = spent_tokens(entries)
    window = (entries.c.started_at >= since, entries.c.started_at < until)
    query = select(
        entries.c.run_id,
        entries.c.agent,
        entries.c.owner,
        entries.c.started_at,
        entries.c.status,
        entries.c.trigger_kind,
        entries.c.scheduled_for,
        entries.c.input_hash,
        tokens,
    ).where(entries.c.status != "running", *window)
    runs = {row[0]: _Run(*row[:2], row[2] or "", *row[3:]) for row in connection.execute(query)}
    ids = select(entries.c.run_id).where(*window)
    for run_id, count in connection.execute(
        select(outcomes.c.run_id, func.count())
        .where(outcomes.c.run_id.in_(ids), outcomes.c.kind != PLANNED)
        .group_by(outcomes.c.run_id)
    ):
        if run_id in runs:
            runs[run_id].outcomes = count
    for run_id, vote, count in connection.execute(
        select(feedback.c.run_id, feedback.c.vote, func.count())
        .where(feedback.c.run_id.in_(ids))
        .group_by(feedback.c.run_id, feedback.c.vote)
    ):
        if run_id in runs:
            setattr(runs[run_id], "pos" if vote == 1 else "neg", count)
    return sorted(runs.values(), key=lambda run: (run.started_at, run.run_id))


def flags(
    ledger: Ledger,
    *,
    period: Period,
    settings: Any = None,
    viewer: str | None = None,
    privacy: PrivacyLike | None = None,
    schedule_check: ScheduleCheck | None = None,
) -> list[Flag]:
    """The flags raised by runs in `period`; a non-admin viewer sees only flags on their runs."""
    s = settings or FlagSettings()
    since = period.start_time - timedelta(days=max(s.burst_window_days, 30))
    runs = ledger.read(lambda c: _load(c, since, period.end_time), what="read runs for flags")
    by_agent: dict[str, list[_Run]] = defaultdict(list)
    for run in runs:
        by_agent[run.agent].append(run)
    found: list[Flag] = []
    for agent, history in sorted(by_agent.items()):
        recent = [run for run in history if run.started_at >= period.start_time]
        found += _agent_flags(agent, history, recent, s, schedule_check)
    found += _bursts(runs, period, s)
    if not is_admin(viewer, privacy or PrivacySettings()):
        mine = {run.run_id for run in runs if viewer is not None and run.owner == viewer}
        found = [
            Flag(f.rule, f.subject, f.reason, tuple(r for r in f.run_ids if r in mine))
            for f in found
        ]
        found = [flag for flag in found if flag.run_ids]
    return found


def _agent_flags(
    agent: str,
    history: list[_Run],
    recent: list[_Run],
    s: Any,
    schedule_check: ScheduleCheck | None,
) -> list[Flag]:
    result = []

    def flag(rule: str, runs: list[_Run], reason: str, minimum: int = 1) -> None:
        if len(runs) >= minimum:
            result.append(Flag(rule, agent, reason, tuple(run.run_id for run in runs)))

    spent = [run for run in recent if run.tokens and run.status != "skipped_unchanged"]
    empty = [run for run in spent if not run.outcomes]
    flag(
        "no_outcome",
        empty,
        f"{agent}: {len(empty)} runs spent tokens and produced no outcome "
        f"(flagged from {s.no_outcome_min_runs})",
        s.no_outcome_min_runs,
    )
    previous: dict[int, _Run] = {id(b): a for a, b in zip(history, history[1:], strict=False)}
    reruns = [
        run
        for run in spent
        if run.input_hash and id(run) in previous and previous[id(run)].input_hash == run.input_hash
    ]
    flag(
        "unchanged_rerun",
        reruns,
        f"{agent}: {len(reruns)} runs spent tokens on the same input "
        f"as the run before (flagged from {s.unchanged_rerun_min})",
        s.unchanged_rerun_min,
    )
    disliked = [
        run
        for run in recent
        if run.pos + run.neg >= s.negative_feedback_min_votes and run.neg > run.pos
    ]
    flag(
        "negative_feedback",
        disliked,
        f"{agent}: {len(disliked)} runs drew mostly negative "
        f"feedback (at least {s.negative_feedback_min_votes} votes each)",
    )
    outliers = []
    for index, run in enumerate(history):
        before = [r.tokens for r in history[max(0, index - s.token_outlier_window) : index]]
        if run in recent and len(before) >= 3:
            median = statistics.median(before)
            if median and run.tokens > s.token_outlier_factor * median:
                outliers.append(run)
    flag(
        "token_outlier",
        outliers,
        f"{agent}: {len(outliers)} runs used over "
        f"{s.token_outlier_factor:g}x the agent's median tokens of its last "
        f"{s.token_outlier_window} runs",
    )
    delivered = [run for run in history if run.outcomes][-s.no_reaction_runs :]
    if len(delivered) == s.no_reaction_runs and not any(r.pos or r.neg for r in delivered):
        flag(
            "no_reaction",
            delivered,
            f"{agent}: its last {s.no_reaction_runs} delivered outputs drew no reaction",
        )
    tolerance = timedelta(minutes=s.off_schedule_tolerance_minutes)
    off = [
        run
        for run in spent
        if run.trigger_kind == "schedule"
        and (
            run.scheduled_for is None
            or abs(run.started_at - run.scheduled_for) > tolerance
            or (schedule_check is not None and not schedule_check(agent, run.scheduled_for))
        )
    ]
    flag(
        "off_schedule",
        off,
        f"{agent}: {len(off)} scheduled runs spent outside the agent's "
        f"declared schedule (tolerance {s.off_schedule_tolerance_minutes} min)",
    )
    return result


def _bursts(runs: list[_Run], period: Period, s: Any) -> list[Flag]:
    daily: dict[str, dict[Any, list[_Run]]] = defaultdict(lambda: defaultdict(list))
    for run in runs:
        daily[run.owner][run.started_at.date()].append(run)
    result = []
    for owner, days in sorted(daily.items()):
        for day in sorted(d for d in days if period.start <= d < period.end):
            window = [day - timedelta(days=n) for n in range(1, s.burst_window_days + 1)]
            average = sum(r.tokens for d in window for r in days.get(d, [])) / len(window)
            today = sum(run.tokens for run in days[day])
            if average and today > s.burst_factor * average:
                reason = (
                    f"{owner}: {today:,} tokens on {day}, over {s.burst_factor:g}x their "
                    f"{s.burst_window_days}-day average of {average:,.0f}"
                )
                result.append(Flag("burst", owner, reason, tuple(r.run_id for r in days[day])))
    return result
