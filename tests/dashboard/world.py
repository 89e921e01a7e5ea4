"""A small company in a ledger: teams of 6, 5, 2, 2 and 1 people, over three weeks.

Team tiny has one person (solo), teams pair and duo two each: for anyone but an admin they are
only ever counted in "other" (five people together). Agent `ask` answers a slash command for
many people, so it has enough people behind it to be shown by name; `noisy` spends tokens
without outcomes and is flagged; `mystery` runs a model without a known price.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from meshagent.config import Config, FlagSettings, PrivacySettings
from meshagent.ledger import Cost, Ledger, Outcome, RunRecord, Usage
from meshagent.ledger.periods import Period
from meshagent.ledger.records import Event

MONDAY = datetime(2025, 3, 3, 9, 0, tzinfo=UTC)  # the week the pages show by default
TODAY = date(2025, 3, 5)
WEEK = Period.week(TODAY)
ADMIN = "root@example.com"
TEAMS = {
    "big": [f"big{i}@example.com" for i in range(6)],
    "mid": [f"mid{i}@example.com" for i in range(5)],
    "pair": ["pair0@example.com", "pair1@example.com"],
    "duo": ["duo0@example.com", "duo1@example.com"],
    "tiny": ["solo@example.com"],
}
TAGS = {
    "big": "toil-reduction",
    "mid": "customer-support",
    "pair": "planning",
    "duo": "experiment",
    "tiny": "planning",
}
FIRES = {"big0-bot": 30.0, "noisy": 30.0, "solo-bot": 4.0, "mystery": 8.0}
SLACK = "https://example.slack.com/archives/C0ABC/p1741000000000100"
JIRA = "https://example.atlassian.net/browse/OPS-7"


def config(url: str, **privacy: Any) -> Config:
    """Settings with admins and a minimum group of five people."""
    settings = {"admins": (ADMIN,), "min_group_size": 5, **privacy}
    return Config(
        ledger_url=url,
        privacy=PrivacySettings(**settings),
        # A company this small never reaches the defaults' volumes and dollars: thresholds low
        # enough that `noisy` is flagged, and every bot's claims (claimed_value), for paging.
        flags=FlagSettings(
            no_outcome_min_runs=3, min_usd=0, claimed_minutes_min=1, claimed_factor=0.5
        ),
    )


def cost(total: str) -> Cost:
    half = Decimal(total) / 2
    return Cost(Decimal(total) - half, Decimal(0), half, source="test-prices", version="1")


def run(agent: str, owner: str, team: str, at: datetime, **overrides: Any) -> RunRecord:
    """A finished scheduled run with one Slack outcome, 15 minutes saved when it delivers."""
    values: dict[str, Any] = {
        "agent": agent,
        "owner": owner,
        "team": team,
        "value_tag": TAGS[team],
        "minutes_saved": 15,
        "status": "ok",
        "started_at": at,
        "finished_at": at + timedelta(seconds=4),
        "trigger_kind": "schedule",
        "scheduled_for": at,
        "provider": "openai",
        "model_requested": "openai:gpt-4.1-mini",
        "model_answered": "gpt-4.1-mini",
        "usage": Usage(input_tokens=1000, output_tokens=200, model_calls=1, tool_calls=1),
        "cost": cost("0.0120"),
        "input_hash": f"{agent}-{at.isoformat()}",
        "outcomes": (Outcome("slack.message", f"C0ABC:{at.timestamp()}", SLACK),),
    }
    values.update(overrides)
    return RunRecord(**values)


def fill(ledger: Ledger) -> dict[str, str]:
    """Write the company's runs; returns the run ids the tests look at, by name."""
    records: list[RunRecord] = []
    for weeks_ago in (2, 1, 0):
        start = MONDAY - timedelta(weeks=weeks_ago)
        for team, people in TEAMS.items():
            if weeks_ago == 1 and team != "big":
                continue  # last week only three people of team big ran anything
            for index, person in enumerate(people):
                if weeks_ago == 1 and index >= 3:
                    continue
                at = start + timedelta(hours=index, minutes=weeks_ago)
                price = "0.0042" if person.startswith("solo") else f"0.0{index + 1}00"
                records.append(
                    run(f"{person.split('@')[0]}-bot", person, team, at, cost=cost(price))
                )
    for index, person in enumerate(TEAMS["big"] + TEAMS["mid"][:2]):
        at = MONDAY + timedelta(days=1, minutes=index)
        records.append(
            run(
                "ask",
                TEAMS["big"][0],
                "big",
                at,
                trigger_kind="slash",
                triggered_by=person,
                scheduled_for=None,
                cost=cost("0.0020"),
                minutes_saved=0,  # claims nothing: no claimed_value flag on others' runs
            )
        )
    for index in range(3):
        at = MONDAY + timedelta(days=1, hours=3, minutes=index)
        records.append(run("noisy", TEAMS["big"][2], "big", at, outcomes=(), minutes_saved=5))
    for index in range(2):
        at = MONDAY + timedelta(days=1, hours=5, minutes=index)
        records.append(run("mystery", TEAMS["big"][1], "big", at, cost=None))
    ids = ledger.write_records(records)
    by_agent: dict[str, list[str]] = {}
    for record, run_id in zip(records, ids, strict=True):
        by_agent.setdefault(record.agent, []).append(run_id)
    detailed = ledger.write_records(
        [
            run(
                "big0-bot",
                TEAMS["big"][0],
                "big",
                MONDAY + timedelta(days=2),
                outcomes=(
                    Outcome("slack.message", "C0ABC:1741000000.000100", SLACK, "public", 42, True),
                    Outcome(
                        "jira.issue",
                        "OPS-7",
                        JIRA,
                        "jira",
                        3,
                        True,
                        {"project": "OPS", "watchers": ["carol", "dave"]},
                    ),
                    Outcome("jira.issue", "OPS-8", "javascript:alert(1)"),
                ),
            )
        ]
    )[0]
    at = MONDAY + timedelta(days=2, seconds=1)
    ledger.add_events(
        detailed,
        [
            Event("tool_call", "jira.search", "3 issues", at),
            Event("tool_refused", "slack.delete_message", "not in the agent's tools", at),
            Event("tool_failed", "jira.create_issue", "HTTP 502", at),
        ],
    )
    ledger.add_feedback(detailed, TEAMS["big"][3], 1, comment="useful <b>really</b>", at=at)
    # The follow-up pass read the Slack message back: a reader's reaction, the owner's reply.
    from meshagent.ledger import verdicts

    slack_outcome = verdicts.outcome_ids(ledger, [detailed])[detailed][0]
    verdicts.judge_many(
        ledger,
        {
            slack_outcome: [
                verdicts.Evidence(TEAMS["big"][3], "reaction:tada", at + timedelta(hours=2)),
                verdicts.Evidence(TEAMS["big"][0], "reply", at + timedelta(hours=3)),
            ]
        },
        checked_at=at + timedelta(days=1),
    )
    ledger.add_feedback(detailed, TEAMS["mid"][1], -1, at=at)
    return {
        "detailed": detailed,
        "ask_by_mid1": by_agent["ask"][7],
        "solo": by_agent["solo-bot"][-1],
        "noisy": by_agent["noisy"][0],
    }
