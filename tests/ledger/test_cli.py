"""`meshagent ledger ...` through Typer's runner: tables, JSON, CSV, verify's exit code."""

from __future__ import annotations

import csv
import io
import json
from decimal import Decimal

import pytest
from sqlalchemy import update
from typer.testing import CliRunner

from meshagent.cli.ledger import app
from meshagent.ledger.render import money
from meshagent.ledger.schema import entries
from meshagent.ledger.store import Ledger

from .helpers import T0, cost, record

WEEK = ["--from", "2025-03-03", "--to", "2025-03-09"]


@pytest.fixture
def url(sqlite_url):
    with Ledger.open(sqlite_url) as ledger:
        ledger.write_records(
            [record(owner=f"p{i}", cost=cost("1234.5")) for i in range(5)]
            + [record(owner="p0", cost=None, started_at=T0.replace(hour=10))]
        )
    return sqlite_url


def _run(url, *args, env=None):
    return CliRunner().invoke(app, ["--ledger-url", url, *args], env=env)


@pytest.mark.parametrize(
    "value, text",
    [
        (None, "unknown"),
        (Decimal(0), "$0.00"),
        (Decimal("0.00421"), "$0.0042"),
        (Decimal("1234567.891"), "$1,234,567.89"),
        (Decimal("-0.5"), "-$0.50"),
    ],
)
def test_money_is_dollars_and_cents_and_unknown_is_not_zero(value, text):
    assert money(value) == text


def test_report_table_shows_grouped_money_and_unknown_cost(url):
    result = _run(url, "report", "--by", "team", *WEEK)
    assert result.exit_code == 0, result.output
    assert "payments" in result.output and "$6,172.50 + 1 unknown" in result.output
    assert "withheld" not in result.output


def test_report_json_and_csv(url):
    document = json.loads(_run(url, "report", "--format", "json", *WEEK).output)
    (row,) = document["rows"]
    assert (row["group"], row["runs"], row["cost_usd"]) == ("payments", 6, "6172.5000000000")
    table = list(csv.DictReader(io.StringIO(_run(url, "report", "--format", "csv", *WEEK).output)))
    assert table[0]["runs_cost_unknown"] == "1"


def test_report_reads_the_url_from_the_environment(url):
    result = CliRunner().invoke(app, ["report", *WEEK], env={"MESHAGENT_LEDGER_URL": url})
    assert result.exit_code == 0 and "payments" in result.output


def test_verify_exits_1_naming_the_changed_entry(url):
    assert _run(url, "verify").output == "chain intact: 6 entries verified\n"
    with Ledger.open(url) as ledger, ledger.engine.begin() as connection:
        connection.execute(update(entries).where(entries.c.seq == 2).values(cost_usd=0))
    result = _run(url, "verify")
    assert result.exit_code == 1 and "entry #2 (run " in result.output


def test_export_csv_and_jsonl(url):
    lines = _run(url, "export", "--format", "jsonl").output.splitlines()
    assert len(lines) == 6 and json.loads(lines[-1])["cost_usd"] is None
    rows = list(csv.DictReader(io.StringIO(_run(url, "export", "--format", "csv").output)))
    assert rows[0]["cost_usd"] == "1234.5000000000" and rows[-1]["cost_usd"] == ""


def test_flags_and_migrate(url):
    hidden = _run(url, "flags", *WEEK).output
    assert (
        "no flags: nobody is viewing (give a viewer); admins listed under [privacy] admins"
        in " ".join(hidden.split())
    )
    assert _run(url, "migrate").output.startswith("ledger schema at 0007")


def test_an_unreachable_ledger_is_a_one_line_error(tmp_path):
    result = _run("postgresql+psycopg://u:pw@127.0.0.1:1/x", "report")
    assert result.exit_code == 2
    assert "cannot open the ledger at postgresql+psycopg://u:***@127.0.0.1:1/x" in result.output


def _looped(url):
    from datetime import timedelta

    from meshagent.config import PrivacySettings

    with Ledger.open(url) as ledger:
        ledger.write_records(
            [
                record(
                    agent="helper",
                    owner="alice",
                    trigger_kind="slash",
                    triggered_by="bob",
                    started_at=T0 + timedelta(minutes=15 * i),
                    input_hash=f"h{i}",
                    cost=cost("0.10"),
                )
                for i in range(30)
            ]
        )
    return {"privacy": PrivacySettings(admins=("root",))}


def test_flags_name_agent_owner_looper_dollars_evidence_and_fix(url):
    obj = _looped(url)
    result = CliRunner().invoke(
        app, ["--ledger-url", url, "--viewer", "root", "flags", *WEEK], obj=obj
    )
    text = " ".join(result.output.split())
    assert result.exit_code == 0, result.output
    assert "every flag (admin: root)" in text
    assert "slash_loop" in text and "helper" in text and "owner alice" in text
    assert "looper bob" in text and "$3.00" in text
    assert "innocent:" in text and "fix:" in text


def test_flags_say_whose_flags_they_show(url):
    obj = _looped(url)
    bob = CliRunner().invoke(app, ["--ledger-url", url, "--viewer", "bob", "flags", *WEEK], obj=obj)
    assert "flags on runs owned or triggered by bob" in " ".join(bob.output.split())
    carol = CliRunner().invoke(
        app, ["--ledger-url", url, "--viewer", "carol", "flags", *WEEK], obj=obj
    )
    text = " ".join(carol.output.split())
    assert "no flags on runs owned or triggered by carol" in text and "slash_loop" not in text


def _accepted_url(sqlite_url):
    from datetime import timedelta

    from meshagent.config import PrivacySettings
    from meshagent.ledger import verdicts
    from meshagent.ledger.verdicts import Evidence

    with Ledger.open(sqlite_url) as ledger:
        ids = ledger.write_records(
            [
                record(
                    owner=f"p{i}",
                    agent=f"a{i}",
                    started_at=T0 + timedelta(hours=i),
                    scheduled_for=T0 + timedelta(hours=i),
                    input_hash=f"h{i}",
                    cost=cost("2.00"),
                    minutes_saved=30,
                )
                for i in range(6)
            ]
        )
        found = verdicts.outcome_ids(ledger, ids[:3])
        verdicts.judge_many(
            ledger,
            {o: [Evidence("reader", "reply")] for run_id in ids[:3] for o in found[run_id]},
            checked_at=T0 + timedelta(days=2),
        )
    return {"privacy": PrivacySettings(admins=("root",))}


def test_report_leads_with_accepted_outcomes_claimed_and_evidenced_minutes(sqlite_url):
    obj = _accepted_url(sqlite_url)
    args = ["--ledger-url", sqlite_url, "--viewer", "root", "report", *WEEK]
    result = CliRunner().invoke(app, [*args, "--format", "json"], obj=obj)
    (row,) = json.loads(result.output)["rows"]
    assert list(row)[:5] == [
        "group",
        "accepted_outcomes",
        "cost_per_accepted",
        "minutes_claimed",
        "minutes_evidenced",
    ]
    assert row["accepted_outcomes"] == 3 and row["cost_per_accepted"] == "4.0000"
    assert (row["minutes_claimed"], row["minutes_evidenced"]) == ("180.00", "90.00")
    (week,) = json.loads(result.output)["honest_adoption"]
    assert (week["people_honest"], week["people_with_usage"]) == (3, 6)
    table = CliRunner().invoke(app, args, obj=obj, env={"COLUMNS": "200"}).output
    header = next(line for line in table.splitlines() if "group" in line)
    assert header.index("accepted") < header.index("min claimed") < header.index("tokens")
    assert "$4.00" in table and "Honest adoption" in table
    assert "3 people of 6 using agents" in " ".join(table.split())


def test_report_ranks_groups_by_value_per_dollar_beside_the_headline(sqlite_url):
    """`ledger report` shows value per dollar (value.headline's figure) after the headline and
    lists the groups by it, highest first, with what it means, in the table, JSON and CSV."""
    from meshagent.config import PrivacySettings
    from meshagent.ledger import value
    from meshagent.ledger.periods import Period
    from tests.ranked_agents import write_ranked

    with Ledger.open(sqlite_url) as ledger:
        write_ranked(ledger, T0)
        figures = {
            row.group: row.value_per_dollar
            for row in value.headline(ledger, period=Period.week(T0.date()), by="agent")
        }
    expected = sorted(figures, key=lambda name: -figures[name])
    assert figures["used"] > figures["fresh"] > figures["noise"]  # the evidence differs
    obj = {"privacy": PrivacySettings(admins=("root",))}
    args = ["--ledger-url", sqlite_url, "--viewer", "root", "report", "--by", "agent", *WEEK]
    document = json.loads(CliRunner().invoke(app, [*args, "--format", "json"], obj=obj).output)
    assert document["ranked_by"] == "value_per_dollar"
    assert "weighted by how much evidence there is" in document["value_per_dollar"]
    assert [row["group"] for row in document["rows"]] == expected
    for row in document["rows"]:
        assert Decimal(row["value_per_dollar"]) == figures[row["group"]]
        assert list(row).index("value_per_dollar") == list(row).index("minutes_evidenced") + 1
    table = CliRunner().invoke(app, args, obj=obj, env={"COLUMNS": "200"}).output
    header = next(line for line in table.splitlines() if "group" in line)
    assert header.index("min evidenced") < header.index("value/$") < header.index("cost")
    cells = [line.split() for line in table.splitlines()]
    listed = [words[1] for words in cells if len(words) > 1 and words[1] in figures]
    assert listed == expected
    assert "evidenced minutes per dollar, weighted by how much evidence" in " ".join(table.split())
    rows = list(csv.DictReader(io.StringIO(CliRunner().invoke(
        app, [*args, "--format", "csv"], obj=obj).output)))  # fmt: skip
    assert [row["group"] for row in rows] == expected and rows[0]["value_per_dollar"]
