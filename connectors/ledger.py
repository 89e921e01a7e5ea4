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
    # The enums say the choices; a description says only what they do not.
    by: Literal["team", "agent", "tag", "model"] = Field(
        default="team", description="Grouping (tag: value tag)."
    )
    period: Literal["this-week", "last-week", "this-month"] = "last-week"
    flags: bool = Field(default=True, description="Include tokenmaxxing flag counts per rule.")


def _money(value: Decimal | None) -> str | None:
    return None if value is None else f"{value.quantize(Decimal('0.0001'))}"


async def _report(context: ActionContext, args: ReportArgs, grant: Any) -> ActionResult:
    from meshagent.ledger import reports
    from meshagent.ledger.flags import flag_report
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
    report, adoption = reports.report_with_adoption(
        ledger, by=args.by, period=period, privacy=config.privacy, value=config.value
    )
    rows = []
    for row in report.ranked():  # highest value per dollar first
        evidence = report.evidence_of(row)
        ranking = report.value_of(row)
        rows.append(
            {
                # The headline first: what people took up, what it cost, minutes evidenced
                # beside the agent files' claim; tokens and runs are detail.
                "group": row.group,
                "accepted_outcomes": evidence.accepted_outcomes,
                "cost_per_accepted_outcome_usd": _money(evidence.cost_per_accepted),
                "minutes_saved_evidenced": float(evidence.minutes_evidenced),
                "minutes_saved_claimed": float(evidence.minutes_claimed),
                # Evidenced minutes per dollar, weighted by how much evidence there is.
                "value_per_dollar": None if ranking is None else float(ranking),
                "cost_usd": _money(row.cost_usd),
                "cost_unknown_runs": row.runs_cost_unknown,
                "runs": row.runs,
                "runs_with_outcome": row.runs_with_outcome,
                "tokens": row.tokens,
                "feedback": f"+{row.feedback_pos}/-{row.feedback_neg}",
            }
        )
    data: dict[str, Any] = {
        "period": period.label,  # the dates, which the agent file's 'last-week' does not say
        "rows": rows,
        "value_per_dollar_means": reports.VALUE_PER_DOLLAR + " (rows are ranked by it)",
        "groups_folded_into_other": report.folded,
        "adoption": [
            {
                "week": week.week.label,
                "honest_adoption_people": week.people_honest,
                "people_with_an_outcome": week.people_with_outcome,
                "people_spending_tokens": week.people_with_usage,
            }
            for week in adoption
        ],
    }
    if args.flags:
        # Every flag is counted, none is shown: only the per-rule counts and dollars leave.
        counter = "meshagent:ledger.report"
        admins = config.privacy.model_copy(update={"admins": (counter,)})
        found = flag_report(
            ledger, period=period, settings=config.flags, viewer=counter, privacy=admins
        )
        counts: dict[str, int] = {}
        dollars: dict[str, Decimal] = {}
        for flag in found.flags:
            counts[flag.rule] = counts.get(flag.rule, 0) + len(flag.run_ids)
            dollars[flag.rule] = dollars.get(flag.rule, Decimal(0)) + flag.usd
        data["flagged_runs_by_rule"] = counts
        data["usd_at_stake_by_rule"] = {rule: _money(usd) for rule, usd in dollars.items()}
    return ActionResult(data=data)


connector = Connector(
    name="ledger",
    description="MeshAgent's own ledger: cost against value.",
    actions=(
        Action(
            name="ledger.report",
            kind=ActionKind.READ,
            description="The ledger report for a week or month: accepted outcomes, cost per "
            "accepted outcome, minutes evidenced and claimed, value per dollar (groups ranked by "
            "it), honest adoption; runs and tokens.",
            args=ReportArgs,
            grant=ActionGrant,
            handler=_report,
        ),
    ),
)
