"""Tokenmaxxing flags: evidence, not accusations.

Each flag names the agent (`subject`), its owner, the people who triggered the runs, the person
it is about (`accountable`: the owner, or the looper of a teammate's slash agent), the dollars
at stake in the period, the evidence, the innocent explanation and the fix; flags come ranked by
dollars times the strength of their evidence. `kind` is "waste" (tokenmaxxing) or "reliability"
(failures, reported apart: a failing agent is broken, not gaming). Thresholds are `[flags]` in
meshagent.toml (`FlagSettings`); the value settings (`[value]`) say what a request is.

Rules (`meshagent.ledger.flagrules`, made of the families in `flagspend` and `flagpeople`), per
agent over the period (a week, usually). A waste flag needs `min_usd` at stake, or a habit
whatever it costs: its pattern in `habit_runs` runs over the `history_days` up to the period's
end, half of them before the period (unless said otherwise):

- burst: a day's spend (of the agent, or of one person's runs of it) over `burst_factor` x the
  agent's median day with runs in the `history_days` before, by at least `burst_min_usd`; an
  agent younger than `burst_window_days` or with fewer than 5 days with runs is left alone, so
  is a burst with an accepted outcome, one asked for by `burst_breadth_people` people, and one
  of requests by people other than the owner, each about something else and answered (the
  person on call during an incident; one person repeating themselves is a slash_loop);
- no_outcome: `no_outcome_min_runs` ok runs that spent tokens and produced nothing, at least
  `no_outcome_share` of such runs; dry runs (plans), failures and declared quiet results are
  not counted (failures are the `failing` reliability flag);
- unread: `no_reaction_runs` delivered outputs in `history_days`, checked by the follow-up pass,
  none engaged with by anyone but the owner and triggerer; or `audience_of_one_runs` outputs in
  the period nobody but the owner could see (a private channel of one, a DM to oneself);
- unchanged_rerun: `unchanged_rerun_min` ok runs on the same input as the agent's run before,
  itself ok and asked by the same person (a retry after a failure is not a re-run);
- token_outlier: tokens per run over `token_outlier_factor` x the median of agents with the same
  value tag and over `token_outlier_own_factor` x the agent's own past;
- self_vote: `self_vote_min` Useful votes by a run's own owner or triggerer (any of their
  identities), one in the period at least, the rest in the `history_days` before; whatever
  they cost;
- negative_feedback: rejected outcomes and others' thumbs-down outnumber acceptances, from
  `negative_feedback_min_votes`; whatever they cost;
- claimed_value: minutes claimed over `claimed_minutes_min` and `claimed_factor` x what the fires
  and distinct requests support (minutes_saved once each, at most `[value] weekly_cap_minutes`);
- split_task: `split_min_runs` runs by one person each within `[value] request_gap_minutes` of
  the last: one task split into many runs;
- slash_loop: one person running a slash agent `loop_runs_per_day` times in a day (the looper is
  named, not the owner);
- off_schedule: `off_schedule_min_runs` scheduled runs away from their fire time;
- failing (reliability): `failure_min_runs` failed, over-budget or interrupted runs making
  `failure_share` of the agent's runs.

A viewer who is not an admin sees the flags on runs they own or triggered (any of their
identities), with only those runs; `flag_report` says whose flags it shows. Everything is
aggregated in SQL (`meshagent.ledger.flagdata`): a week over a million entries reads a few
thousand rows.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, select

from meshagent.config import FlagSettings, PrivacySettings, ValueSettings
from meshagent.ledger.flagbase import RULES, Flag, ScheduleCheck
from meshagent.ledger.flagrules import Rules
from meshagent.ledger.periods import Period
from meshagent.ledger.privacy import PrivacyLike
from meshagent.ledger.schema import entries

if TYPE_CHECKING:
    from meshagent.ledger.people import People
    from meshagent.ledger.store import Ledger

__all__ = ["RULES", "Flag", "FlagReport", "flag_report", "flags", "runs_of"]


@dataclass(frozen=True)
class FlagReport:
    """The flags a viewer may see, and in words whose they are."""

    flags: tuple[Flag, ...]
    viewer: str | None
    everyone: bool  # an admin: every flag; else only flags on the viewer's own runs
    scope: str


def flags(ledger: Ledger, **options: Any) -> list[Flag]:
    """The flags raised in `period`, ranked; a non-admin viewer sees only flags on their runs.

    Takes `flag_report`'s keyword arguments.
    """
    return list(flag_report(ledger, **options).flags)


def flag_report(
    ledger: Ledger,
    *,
    period: Period,
    settings: Any = None,
    viewer: str | None = None,
    privacy: PrivacyLike | None = None,
    schedule_check: ScheduleCheck | None = None,
    value: ValueSettings | None = None,
    people: People | None = None,
) -> FlagReport:
    """`flags`, with whose flags they are (`FlagReport.scope`)."""
    from meshagent.ledger.people import directory

    s = settings or FlagSettings()
    value = value or ValueSettings()
    privacy = privacy or PrivacySettings()
    people = people if people is not None else directory(ledger)
    found = ledger.read(
        lambda c: Rules(c, period, s, value, people, schedule_check).run(), what="read flags"
    )
    found.sort(key=lambda f: (f.kind != "waste", -f.score, -f.usd, f.subject, f.rule))
    admin = viewer is not None and any(people.same(viewer, a) for a in privacy.admins)
    if admin:
        return FlagReport(tuple(found), viewer, True, f"every flag (admin: {viewer})")
    if viewer is None:
        return FlagReport((), None, False, "no flags: nobody is viewing (give a viewer)")
    mine = _own_runs(ledger, found, viewer, people)
    kept = []
    for flag in found:
        runs = tuple(r for r in flag.run_ids if r in mine)
        if runs:
            kept.append(flag if len(runs) == len(flag.run_ids) else replace(flag, run_ids=runs))
    who = people.key(viewer)
    return FlagReport(tuple(kept), viewer, False, f"flags on runs owned or triggered by {who}")


def _own_runs(ledger: Ledger, found: list[Flag], viewer: str, people: People) -> set[str]:
    return runs_of(ledger, viewer, sorted({r for flag in found for r in flag.run_ids}), people)


def runs_of(ledger: Ledger, viewer: str, ids: list[str], people: People) -> set[str]:
    """Those of `ids` owned or triggered by `viewer` (any of their identities)."""

    def read(connection: Connection) -> set[str]:
        mine = set()
        for at in range(0, len(ids), 500):
            query = select(entries.c.run_id, entries.c.owner, entries.c.triggered_by).where(
                entries.c.run_id.in_(ids[at : at + 500])
            )
            for run_id, owner, triggered_by in connection.execute(query):
                if people.same(viewer, owner) or people.same(viewer, triggered_by):
                    mine.add(run_id)
        return mine

    return ledger.read(read, what="read the viewer's runs")
