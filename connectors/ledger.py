"""The `ledger` connector: the ledger's own report as context, so an agent can post the weekly
value report. Team-level only: small teams are folded into "other", no row names a person, and
flags are counted per rule, never listed by owner.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, Literal

from pydantic import Field

from meshagent.actions import (
    Action,
    ActionArgs,
    ActionContext,
    ActionGrant,
    ActionKind,
    ActionResult,
    Connector,
)
from meshagent.exceptions import ConnectorError

__all__ = ["connector"]


class ReportArgs(ActionArgs):
    by: Literal["team", "agent", "tag", "model"] = Field(
        default="team", description="Group by team, agent, value tag or model."
    )
    period: Literal["this-week", "last-week", "this-month"] = Field(
        default="last-week", description="The week or month to report."
    )
    flags: bool = Field(default=True, description="Include tokenmaxxing flag counts per rule.")


def _money(value: Decimal | None) -> str | None:
    return None if value is None else f"{value.quantize(Decimal('0.0001'))}"


async def _report(context: ActionContext, args: ReportArgs, grant: Any) -> ActionResult:
    from meshagent.ledger import reports
    from meshagent.ledger.flags import flags as find_flags
    from meshagent.ledger.periods import Period

    ledger = context.services.get("ledger")
    config = context.services.get("config")
    if ledger is None or config is None:
        raise ConnectorError("ledger.report", "", "runs only inside the MeshAgent runtime")
    now = context.services.get("now", lambda: datetime.now(UTC))()
    today = now.date()
    period = {
        "this-week": Period.week(today),
        "last-week": Period.week(today - timedelta(days=7)),
        "this-month": Period.month(today),
    }[args.period]
    report = reports.summary(ledger, by=args.by, period=period, privacy=config.privacy)
    rows = [
        {
            "group": row.group,
            "runs": row.runs,
            "runs_with_outcome": row.runs_with_outcome,
            "tokens": row.tokens,
            "cost_usd": _money(row.cost_usd),
            "cost_unknown_runs": row.runs_cost_unknown,
            "minutes_saved": float(row.minutes_saved),
            "minutes_per_dollar": None
            if row.minutes_per_dollar is None
            else float(row.minutes_per_dollar),
            "feedback": f"+{row.feedback_pos}/-{row.feedback_neg}",
        }
        for row in report.rows
    ]
    adoption = reports.adoption(ledger, period=period, privacy=config.privacy)
    data: dict[str, Any] = {
        "period": period.label,
        "by": args.by,
        "rows": rows,
        "groups_folded_into_other": report.folded,
        "adoption": [
            {
                "week": week.week.label,
                "people_with_an_outcome": week.people_with_outcome,
                "people_spending_tokens": week.people_with_usage,
            }
            for week in adoption
        ],
    }
    if args.flags:
        # Every flag is counted, none is shown: only the per-rule counts leave this action.
        counter = "meshagent:ledger.report"
        admins = config.privacy.model_copy(update={"admins": (counter,)})
        found = find_flags(
            ledger, period=period, settings=config.flags, viewer=counter, privacy=admins
        )
        counts: dict[str, int] = {}
        for flag in found:
            counts[flag.rule] = counts.get(flag.rule, 0) + len(flag.run_ids)
        data["flagged_runs_by_rule"] = counts
    return ActionResult(data=data)


connector = Connector(
    name="ledger",
    description="MeshAgent's own ledger: cost against value.",
    actions=(
        Action(
            name="ledger.report",
            kind=ActionKind.READ,
            description="The ledger report for a week or month: runs, outcomes, cost, value.",
            args=ReportArgs,
            grant=ActionGrant,
            handler=_report,
        ),
    ),
)
