"""The ledger's figures in Slack: `/meshagent report [team] [day|week|month]` and
`/meshagent flags`.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from meshagent.exceptions import LedgerError
from meshagent.ledger import render, reports
from meshagent.ledger.flags import Flag, flag_report
from meshagent.ledger.periods import Period
from meshagent.ledger.privacy import OTHER
from meshagent.ledger.schema import daily
from meshagent.slack.command_base import _MAX_LINES, MAIN_COMMAND, Command, CommandsBase
from meshagent.slack.messages import (
    cost_text,
    escape,
    note,
    section,
)
from meshagent.slack.respond import Reply

PERIODS = ("day", "week", "month")


class ReportCommands(CommandsBase):
    """The ledger report and the tokenmaxxing flags."""

    # -- report -----------------------------------------------------------------------------------

    def _team_agents(self, team: str, period: Period) -> set[str]:
        query = (
            select(daily.c.agent)
            .where(daily.c.team == team, daily.c.day >= period.start, daily.c.day < period.end)
            .distinct()
        )
        found = self.ledger.read(lambda c: c.execute(query).scalars().all(), what="read a team")
        return set(found)

    async def _report(self, cmd: Command, reply: Reply, args: str) -> None:
        words = args.split()
        name = next((w for w in words if w.lower() in PERIODS), "week").lower()
        rest = [w for w in words if w.lower() not in PERIODS]
        if len(rest) > 1:
            await reply.send(note(f"Usage: `{MAIN_COMMAND} report [team] [day|week|month]`"))
            return
        team = rest[0] if rest else None
        period = Period.named(name)
        viewer = await self._viewer(cmd.caller)
        try:
            report, weeks = await asyncio.to_thread(
                reports.report_with_adoption,
                self.ledger,
                by="agent" if team else "team",
                period=period,
                viewer=viewer,
                privacy=self.config.privacy,
                value=self.config.value,
            )
            mine = await asyncio.to_thread(self._team_agents, team, period) if team else None
            adoption = None if team else weeks
        except LedgerError as exc:
            await reply.send(note(f":x: {escape(str(exc))}"))
            return
        title = f"*Ledger report* by {'agent for team ' + escape(team) if team else 'team'}, "
        title += f"{period.label}"
        if report.withheld:
            await reply.send(
                note(
                    f"{title}\nWithheld: too few people ran agents in this period to report "
                    "without singling anyone out."
                )
            )
            return
        rows = report.ranked()
        if mine is not None:
            rows = [row for row in rows if row.group in mine]
            if not rows:
                size = self.config.privacy.min_group_size
                why = f"Team {escape(team or '')} has no runs you may see in this period" + (
                    f": teams of fewer than {size} people are counted only in '{OTHER}'."
                    if mine
                    else "."
                )
                await reply.send(note(f"{title}\n{why}"))
                return
        if not rows:
            await reply.send(note(f"{title}\nNo runs recorded in this period."))
            return
        text = f"{title}\n```\n{_report_table(report, rows)}\n```"
        text += (
            "\n_accepted: fires and requests whose outcome someone else took up; min evidenced:"
            " minutes credited for them, beside the agent files' claim; value/$: "
            f"{reports.VALUE_PER_DOLLAR}, groups ranked by it._"
        )
        honest = render.adoption_text(adoption) if adoption else ""
        if honest:
            text += f"\n{escape(honest)}"
        if report.folded:
            text += f"\n_{report.folded} small groups are counted in '{OTHER}' to protect privacy._"
        await reply.send(note("Ledger report", blocks=[section(text)]))

    # -- flags ------------------------------------------------------------------------------------

    async def _flags(self, cmd: Command, reply: Reply) -> None:
        """Every flag for an admin; anyone else the flags on runs they own or triggered (any
        of their identities: the app links a Slack id to its email), and whose they are."""
        admin = await self.admin_name(cmd.caller)
        if admin is None:  # flags on runs owned by their email are theirs too
            await self.directory.link(self.ledger, cmd.user_id)
        privacy: Any = self.config.privacy
        if admin is not None:
            privacy = _Privacy(privacy.min_group_size, (*privacy.admins, admin))
        found = await asyncio.to_thread(
            flag_report,
            self.ledger,
            period=Period.named("week"),
            settings=self.config.flags,
            viewer=admin or cmd.user_id,
            privacy=privacy,
            value=self.config.value,
        )
        if not found.flags:
            passed = "every rule passed" if found.everyone else "none on runs you own or triggered"
            await reply.send(
                note(f"No tokenmaxxing flags this week: {passed} ({escape(found.scope)}).")
            )
            return
        lines = [_flag_line(flag) for flag in found.flags[:_MAX_LINES]]
        if len(found.flags) > _MAX_LINES:
            lines.append(f"…and {len(found.flags) - _MAX_LINES} more: `meshagent ledger flags`")
        text = f"*Tokenmaxxing flags this week* ({escape(found.scope)})\n" + "\n".join(lines)
        await reply.send(note("Tokenmaxxing flags", blocks=[section(text)]))


def _flag_line(flag: Flag) -> str:
    """One flag: dollars, rule, agent, owner, people, reason, innocent explanation and fix."""
    who = escape(render.flag_people(flag))
    return (
        f"• *{render.money(flag.usd)}* *{escape(flag.rule)}* {escape(flag.subject)} "
        f"(owner {escape(flag.owner or '-')}; by {who}; {len(flag.run_ids)} runs): "
        f"{escape(flag.reason)}\n    _Innocent:_ {escape(flag.innocent or '-')} "
        f"_Fix:_ {escape(flag.fix or '-')}"
    )


@dataclass(frozen=True)
class _Privacy:
    min_group_size: int
    admins: tuple[str, ...]


def _row_cost(row: reports.ReportRow) -> str:
    text = cost_text(row.cost_usd)
    if row.cost_usd is not None and row.runs_cost_unknown:
        text += f" +{row.runs_cost_unknown}?"
    return text


def _report_table(report: reports.Report, rows: list[reports.ReportRow]) -> str:
    """The headline first (accepted outcomes, cost per accepted outcome, minutes claimed and
    evidenced, value per dollar, by which `rows` are ranked), then cost, runs and tokens."""
    headers = ["group", "accepted", "$/accepted", "min claimed", "min evidenced", "value/$"]
    headers += ["cost", "runs", "tokens"]
    body = []
    for row in rows[:_MAX_LINES]:
        evidence = report.evidence_of(row)
        per = evidence.cost_per_accepted
        body.append(
            [
                row.group[:24],
                f"{evidence.accepted_outcomes:,}",
                render.money(per) if per is not None else "-",
                render.minutes(evidence.minutes_claimed),
                render.minutes(evidence.minutes_evidenced),
                render.per_dollar(report.value_of(row)),
                _row_cost(row),
                f"{row.runs:,}",
                f"{row.tokens:,}",
            ]
        )
    widths = [max(len(r[i]) for r in [headers, *body]) for i in range(len(headers))]
    lines = []
    for cells in [headers, *body]:
        padded = [
            cell.ljust(widths[i]) if i == 0 else cell.rjust(widths[i])
            for i, cell in enumerate(cells)
        ]
        lines.append("  ".join(padded).rstrip())
    if len(rows) > _MAX_LINES:
        lines.append(f"…and {len(rows) - _MAX_LINES} more groups")
    return "\n".join(lines)
