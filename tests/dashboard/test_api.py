"""The JSON API: the same figures as the ledger's reports, as each viewer may see them."""

from __future__ import annotations

from collections import Counter
from datetime import date, timedelta
from decimal import Decimal

import pytest

from meshagent.dashboard import views
from meshagent.dashboard.agentpages import SORTS
from meshagent.dashboard.views import jsonable, row_dict
from meshagent.ledger import reports
from meshagent.ledger.flags import flags
from meshagent.ledger.periods import Period
from meshagent.ledger.privacy import OTHER

from .world import ADMIN, FIRES, JIRA, SLACK, TEAMS, TODAY, WEEK

BIG0, BIG1, BIG2, MID1 = TEAMS["big"][0], TEAMS["big"][1], TEAMS["big"][2], TEAMS["mid"][1]
SOLO = TEAMS["tiny"][0]
VIEWERS = [ADMIN, BIG0, SOLO, None]


def _summary(world, by, viewer, period=WEEK):
    return reports.summary(
        world.ledger, by=by, period=period, viewer=viewer, privacy=world.config.privacy
    )


def _rows(report):
    """The report's rows as the API gives them, with each row's value per dollar."""
    return [
        jsonable({**row_dict(row), "value_per_dollar": report.value_of(row)}) for row in report.rows
    ]


@pytest.mark.parametrize("viewer", VIEWERS)
def test_overview_by_team_is_the_ledger_report(world, get, viewer):
    body = get("/api/overview", viewer).json()
    report = _summary(world, "team", viewer)
    assert body["teams"] == _rows(report)
    assert (body["folded"], body["withheld"]) == (report.folded, report.withheld)
    totals = body["totals"]
    assert totals["runs"] == sum(row.runs for row in report.rows)
    assert Decimal(totals["cost_usd"]) == sum(row.cost_usd or 0 for row in report.rows)
    assert Decimal(totals["minutes_saved"]) == sum(row.minutes_saved for row in report.rows)
    assert totals["runs_with_outcome"] == sum(row.runs_with_outcome for row in report.rows)
    (week,) = reports.adoption(
        world.ledger, period=WEEK, viewer=viewer, privacy=world.config.privacy
    )
    assert (totals["people_with_outcome"], totals["people_with_usage"]) == (
        week.people_with_outcome,
        week.people_with_usage,
    )
    assert body["viewer"] == {
        "name": viewer,
        "admin": viewer == ADMIN,
        "mode": "header" if viewer else "anonymous",
    }


def test_small_teams_are_folded_into_other_except_for_admins(get):
    member = {row["group"]: row for row in get("/api/overview", BIG0).json()["teams"]}
    assert set(member) == {"big", "mid", OTHER}
    assert member[OTHER]["people"] == 5  # pair, duo and tiny
    admin = {row["group"] for row in get("/api/overview", ADMIN).json()["teams"]}
    assert admin == {"big", "mid", "pair", "duo", "tiny"}
    choices = get("/api/overview", BIG0).json()["choices"]["teams"]
    assert "tiny" not in choices and "pair" not in choices


def test_the_trend_withholds_weeks_with_too_few_people(world, get):
    trend = get("/api/overview", BIG0).json()["trend"]
    assert len(trend) == 12 and trend[-1]["start"] == str(WEEK.start)
    last_week, this_week = trend[-2], trend[-1]
    assert last_week["withheld"] and last_week["cost_usd"] is None  # three people only
    assert last_week["people_with_usage"] is None
    assert this_week["runs"] == get("/api/overview", BIG0).json()["totals"]["runs"]
    admin = get("/api/overview", ADMIN).json()["trend"]
    two_weeks_ago = _summary(world, "team", ADMIN, Period.week(WEEK.start - timedelta(days=14)))
    assert admin[-2]["runs"] == 3 and not admin[-2]["withheld"]
    assert admin[-3]["runs"] == sum(row.runs for row in two_weeks_ago.rows)


def test_a_team_filter_shows_that_teams_row_of_the_report(world, get):
    body = get("/api/overview?team=big", BIG0).json()
    report = _summary(world, "team", BIG0)
    assert body["teams"] == [row for row in _rows(report) if row["group"] == "big"]
    (big,) = [row for row in report.rows if row.group == "big"]
    assert body["totals"]["runs"] == big.runs
    assert body["filters"]["team"] == "big"


def test_a_small_teams_filter_shows_nothing_to_a_member(get):
    body = get("/api/overview?team=tiny", BIG0).json()
    assert body["withheld"] and body["teams"] == []
    assert body["totals"]["withheld"] and body["totals"]["cost_usd"] is None
    admin = get("/api/overview?team=tiny", ADMIN).json()
    assert admin["totals"]["cost_usd"] == "0.0042000000"  # solo's one run this week


def test_a_tag_filter_matches_the_report_by_tag(world, get):
    body = get("/api/overview?tag=customer-support", ADMIN).json()
    (row,) = [r for r in _summary(world, "tag", ADMIN).rows if r.group == "customer-support"]
    assert body["totals"]["runs"] == row.runs
    assert Decimal(body["totals"]["cost_usd"]) == row.cost_usd
    assert [r["group"] for r in body["teams"]] == ["mid"]


def test_other_periods(world, get):
    month = get("/api/overview?period=month&date=2025-03-31", ADMIN).json()
    report = _summary(world, "team", ADMIN, Period.month(TODAY))
    assert month["teams"] == _rows(report)
    assert month["filters"] == {
        "period": "month",
        "date": "2025-03-31",
        "from": "2025-03-01",
        "to": "2025-03-31",
        "team": None,
        "tag": None,
    }
    span = get("/api/overview?from=2025-02-17&to=2025-03-09", ADMIN).json()
    report = _summary(world, "team", ADMIN, Period.between(date(2025, 2, 17), date(2025, 3, 9)))
    assert span["teams"] == _rows(report)


@pytest.mark.parametrize(
    "query, message",
    [
        ("period=year", "period='year' is not one of day, week, month"),
        ("date=03/05/2025", "date='03/05/2025' is not a date: use YYYY-MM-DD"),
        ("from=2025-03-09&to=2025-03-01", "to=2025-03-01 is before from=2025-03-09"),
        ("from=2020-01-01&to=2025-01-01", "at most 731 days"),
        ("period=range", "period=range needs from=YYYY-MM-DD"),
    ],
)
def test_a_bad_filter_is_a_400_naming_it(get, query, message):
    response = get(f"/api/overview?{query}", ADMIN)
    assert response.status_code == 400
    assert message in response.json()["error"]
    page = get(f"/?{query}", ADMIN)
    assert page.status_code == 400 and message.split("'")[0] in page.text


def test_agents_for_an_admin_are_the_report_by_agent(world, get):
    body = get("/api/agents?sort=agent", ADMIN).json()
    report = _summary(world, "agent", ADMIN)
    expected = sorted(_rows(report), key=lambda row: row["group"])
    assert [{k: r[k] for k in expected[0]} for r in body["rows"]] == expected
    found = flags(
        world.ledger,
        period=WEEK,
        settings=world.config.flags,
        viewer=ADMIN,
        privacy=world.config.privacy,
    )
    counts = Counter(flag.subject for flag in found)
    assert {r["agent"]: r["flags"] for r in body["rows"]} == {
        r["agent"]: counts.get(r["agent"], 0) for r in body["rows"]
    }
    assert counts["noisy"] >= 1
    forecast = reports.forecast(
        world.ledger, FIRES, today=TODAY, viewer=ADMIN, privacy=world.config.privacy
    )
    by_agent = {r["agent"]: r for r in body["rows"]}
    for row in forecast:
        if row.agent in by_agent:
            assert by_agent[row.agent]["forecast_usd"] == jsonable(row.monthly_usd)
    assert by_agent["mystery"]["cost_usd"] is None  # no price known: unknown, never $0


def test_agents_for_anonymous_are_the_folded_report(world, get):
    body = get("/api/agents", None).json()
    report = _summary(world, "agent", None)
    assert sorted(r["group"] for r in body["rows"]) == sorted(r.group for r in report.rows)
    other = {r["group"]: r for r in body["rows"]}[OTHER]
    assert other["agent"] is None and other["flags"] is None
    assert {r["group"] for r in body["rows"]} == {"ask", OTHER}
    assert all(r["forecast_usd"] is None and not r["yours"] for r in body["rows"])


def test_an_owner_sees_their_own_agents_in_full_and_the_rest_folded(world, get):
    body = get("/api/agents", BIG0).json()
    rows = {r["group"]: r for r in body["rows"] if r["yours"]}
    assert set(rows) == {"big0-bot", "ask"}
    admin = {r["group"]: r for r in get("/api/agents", ADMIN).json()["rows"]}
    for name, row in rows.items():
        assert row == {**admin[name], "yours": True, "people": row["people"], "flags": row["flags"]}
    assert rows["big0-bot"]["forecast_usd"] == admin["big0-bot"]["forecast_usd"]
    others = [r for r in body["rows"] if not r["yours"]]
    assert [r["group"] for r in others] == [OTHER]  # every other agent has one person
    assert others[0]["people"] >= 5


@pytest.mark.parametrize("sort", SORTS)
@pytest.mark.parametrize("order", ["asc", "desc"])
def test_agents_sort_by_every_column_with_other_last(get, sort, order):
    rows = get(f"/api/agents?sort={sort}&order={order}", ADMIN).json()["rows"]
    key = {
        "value_per_dollar": "value_per_dollar",
        "agent": "agent",
        "accepted": "accepted_outcomes",
        "evidenced": "minutes_evidenced",
        "runs": "runs",
        "cost": "cost_usd",
        "outcomes": "runs_with_outcome",
        "value": "minutes_per_dollar",
        "flags": "flags",
        "forecast": "forecast_usd",
    }.get(sort)
    if key is not None:
        values = [r[key] for r in rows if r[key] is not None]
        numbers = [v if sort == "agent" else Decimal(str(v)) for v in values]
        assert numbers == sorted(numbers, reverse=order == "desc")
        assert all(r[key] is None for r in rows[len(values) :])  # unknowns last
    member = get(f"/api/agents?sort={sort}&order={order}", BIG0).json()["rows"]
    assert member[-1]["group"] == OTHER


def test_an_unknown_sort_is_a_400(get):
    assert get("/api/agents?sort=price", ADMIN).status_code == 400
    assert get("/api/agents?order=up", ADMIN).status_code == 400


def test_agent_detail_for_an_admin(world, get):
    body = get("/api/agents/noisy", ADMIN).json()
    (row,) = [r for r in _summary(world, "agent", ADMIN).rows if r.group == "noisy"]
    assert body["access"] == "admin" and body["summary"] == jsonable(row_dict(row))
    assert body["tokens"]["input_tokens"] == row.input_tokens
    assert len(body["runs"]) == 3 and body["owner"] == BIG2
    assert [run["outcomes"] for run in body["runs"]] == [0, 0, 0]
    assert {flag["rule"] for flag in body["flags"]} >= {"no_outcome"}
    assert len(body["daily"]) == 7
    assert Decimal(body["daily"][1]["cost_usd"]) == row.cost_usd  # all on Tuesday


def test_agent_detail_for_its_owner_a_stranger_and_anonymous(get):
    owner = get("/api/agents/noisy", BIG2).json()
    assert owner["access"] == "owner" and len(owner["runs"]) == 3
    assert owner["flags"] and owner["flags"][0]["subject"] == "noisy"
    assert get("/api/agents/noisy", BIG0).status_code == 404
    assert get("/api/agents/noisy", None).status_code == 404
    missing = get("/api/agents/no-such-agent", ADMIN)
    assert missing.status_code == 404 and "no agent 'no-such-agent'" in missing.json()["error"]


def test_a_widely_used_agent_shows_folded_figures_and_only_your_own_runs(world, get):
    body = get("/api/agents/ask", MID1).json()
    assert body["access"] == "group" and body["owner"] is None
    (row,) = [r for r in _summary(world, "agent", MID1).rows if r.group == "ask"]
    assert body["summary"] == jsonable(row_dict(row))
    assert [run["triggered_by"] for run in body["runs"]] == [MID1]
    assert body["flags"] == []
    tuesday = body["daily"][1]
    assert not tuesday["withheld"] and tuesday["runs"] == 8  # eight people asked on Tuesday
    anonymous = get("/api/agents/ask", None).json()
    assert anonymous["runs"] == [] and anonymous["summary"]["runs"] == 8


def test_run_detail_shows_trigger_timeline_tool_calls_outcomes_feedback(world, get):
    run_id = world.ids["detailed"]
    body = get(f"/api/runs/{run_id}", ADMIN).json()
    assert body["run"]["run_id"] == run_id and body["run"]["trigger"]["kind"] == "schedule"
    assert [call["kind"] for call in body["tool_calls"]] == [
        "tool_call",
        "tool_refused",
        "tool_failed",
    ]
    assert [(o["ref"], o["link"]) for o in body["outcomes"]] == [
        ("C0ABC:1741000000.000100", SLACK),
        ("OPS-7", JIRA),
        ("OPS-8", None),  # a javascript: URL is never a link
    ]
    assert [(f["person"], f["vote"]) for f in body["feedback"]] == [
        (TEAMS["big"][3], 1),
        (MID1, -1),
    ]
    kinds = [step["kind"] for step in body["timeline"]]
    assert kinds[:2] == ["scheduled", "started"] and "tool_refused" in kinds
    assert kinds.count("feedback") == 2
    assert body["run"]["cost_usd"] == "0.0120000000"


@pytest.mark.parametrize("viewer, status", [(ADMIN, 200), (BIG0, 200), (MID1, 404), (None, 404)])
def test_a_run_is_shown_to_its_owner_and_admins_only(world, get, viewer, status):
    assert get(f"/api/runs/{world.ids['detailed']}", viewer).status_code == status
    assert get(f"/runs/{world.ids['detailed']}", viewer).status_code == status


def test_a_run_is_shown_to_whoever_triggered_it(world, get):
    run_id = world.ids["ask_by_mid1"]
    assert get(f"/api/runs/{run_id}", MID1).json()["run"]["trigger"]["by"] == MID1
    assert get(f"/api/runs/{run_id}", TEAMS["mid"][0]).status_code == 404


def test_an_unknown_run_looks_like_a_hidden_one(get):
    hidden = get("/api/runs/no-such-run", BIG0)
    assert hidden.status_code == 404 and hidden.json() == {
        "error": "no run 'no-such-run' that you may see"
    }


@pytest.mark.parametrize("viewer", [ADMIN, BIG2, BIG0, None])
def test_flags_are_the_ledgers_flags_for_the_viewer(world, get, viewer):
    body = get("/api/flags", viewer).json()
    found = flags(
        world.ledger,
        period=WEEK,
        settings=world.config.flags,
        viewer=viewer,
        privacy=world.config.privacy,
    )
    assert [(f["rule"], f["subject"], f["reason"], f["run_ids"]) for f in body["flags"]] == [
        (f.rule, f.subject, f.reason, list(f.run_ids)) for f in found
    ]
    # every field flag_report gives, not the four the dashboard once rebuilt a flag from
    keys = ("owner", "people", "accountable", "usd", "evidence", "innocent", "fix", "kind")
    assert [tuple(f[k] for k in keys) for f in body["flags"]] == [
        (f.owner, list(f.people), f.accountable, format(f.usd, "f"), list(f.evidence))
        + (f.innocent, f.fix, f.kind)
        for f in found
    ]
    assert all(f["fix"] and f["innocent"] for f in body["flags"])
    assert body["status"]["state"] == "fresh"
    for flag in body["flags"]:
        assert [run["run_id"] for run in flag["runs"]] == flag["run_ids"][:5]
        assert all(run["agent"] for run in flag["runs"])
    mine = {world.ids["noisy"]} if viewer == BIG2 else set()
    if viewer is None:
        assert body["flags"] == []
    elif viewer != ADMIN:
        runs = {run["run_id"]: run for flag in body["flags"] for run in flag["runs"]}
        owners = {world.ledger.entry(run_id)["owner"] for run_id in runs}
        assert owners == {viewer} and mine <= set(runs)


def test_flags_filtered_by_team_and_tag(get):
    big = {flag["subject"] for flag in get("/api/flags?team=big", ADMIN).json()["flags"]}
    assert "noisy" in big
    mid = {flag["subject"] for flag in get("/api/flags?team=mid", ADMIN).json()["flags"]}
    assert mid and mid <= {f"{person.split('@')[0]}-bot" for person in TEAMS["mid"]}
    tagged = get("/api/flags?tag=customer-support", ADMIN).json()["flags"]
    assert {flag["subject"] for flag in tagged} == mid


def test_flags_of_one_rule_a_page_at_a_time(get, monkeypatch):
    every = get("/api/flags", ADMIN).json()
    claims = [flag for flag in every["flags"] if flag["rule"] == "claimed_value"]
    assert len(claims) > 8 and every["total"] == len(every["flags"]) and not every["more"]
    monkeypatch.setattr(views, "FLAGS_PER_PAGE", 4)
    pages, number = [], 1
    while True:
        body = get(f"/api/flags?rule=claimed_value&page={number}", ADMIN).json()
        assert body["rules"] == every["rules"] and body["rule"] == "claimed_value"
        assert body["total"] == len(claims) and body["first"] == 4 * (number - 1) + 1
        pages.append(body["flags"])
        if not body["more"]:
            break
        number += 1
    assert [len(page) for page in pages[:-1]] == [4] * (len(pages) - 1)
    assert [flag for page in pages for flag in page] == claims
    beyond = get(f"/api/flags?rule=claimed_value&page={number + 1}", ADMIN).json()
    assert (beyond["flags"], beyond["first"], beyond["more"]) == ([], 0, False)
    html = get("/flags?rule=claimed_value&page=2", ADMIN).text
    assert 'href="/flags?rule=claimed_value" rel="prev"' in html
    assert 'href="/flags?rule=claimed_value&amp;page=3" rel="next"' in html
    assert f"Flags 5–8 of {len(claims)} raised by" in html
    assert 'data-rule="no_outcome"' not in html.split('data-testid="rules"')[1].split("</table>")[1]
    none = get("/api/flags?rule=no_such_rule", ADMIN).json()
    assert (none["flags"], none["total"]) == ([], 0)
    assert "No flags raised by no_such_rule" in get("/flags?rule=no_such_rule", ADMIN).text
    bad = get("/api/flags?rule=Robert');DROP", ADMIN)
    assert bad.status_code == 400 and "is not a flag rule" in bad.json()["error"]


def test_local_mode_ignores_the_header(world):
    from starlette.testclient import TestClient

    with TestClient(world.app(local_user=BIG2)) as client:
        body = client.get("/api/viewer", headers={"X-Forwarded-User": ADMIN}).json()
        assert body == {"name": BIG2, "admin": False, "mode": "local"}
        assert client.get("/api/agents/noisy").json()["access"] == "owner"


def test_a_configured_header_names_the_viewer(world):
    from starlette.testclient import TestClient

    with TestClient(world.app(viewer_header="X-Auth-Email")) as client:
        assert client.get("/api/viewer", headers={"X-Auth-Email": ADMIN}).json()["admin"]
        ignored = client.get("/api/viewer", headers={"X-Forwarded-User": ADMIN}).json()
        assert ignored == {"name": None, "admin": False, "mode": "anonymous"}


def test_a_person_sees_their_own_agents_figures_beside_everyones(world, get):
    body = get("/api/overview", BIG2).json()
    mine = [
        r for r in get("/api/agents", ADMIN).json()["rows"] if r["group"] in ("noisy", "big2-bot")
    ]
    assert body["yours"]["runs"] == sum(r["runs"] for r in mine)
    assert Decimal(body["yours"]["cost_usd"]) == sum(Decimal(r["cost_usd"]) for r in mine)
    assert get("/api/overview", ADMIN).json()["yours"] is None
    assert get("/api/overview", None).json()["yours"] is None
    solo = get("/api/overview", SOLO).json()
    assert solo["yours"]["cost_usd"] == "0.0042000000"  # their own, though tiny is folded


def test_days_and_weeks_not_begun_are_gaps_not_zero(get):
    # TODAY is a Wednesday: Thursday to Sunday of its week have not begun
    daily = get("/api/agents/noisy", ADMIN).json()["daily"]
    begun = [point for point in daily if date.fromisoformat(point["start"]) <= TODAY]
    ahead = [point for point in daily if date.fromisoformat(point["start"]) > TODAY]
    assert len(begun) == 3 and len(ahead) == 4
    assert all(p["cost_usd"] is not None and not p["future"] for p in begun)
    assert all(p["future"] and p["cost_usd"] is None and p["runs"] is None for p in ahead)
    month = get(f"/api/overview?period=month&date={TODAY}", ADMIN).json()["trend"]
    assert month[-1]["future"] and month[-1]["cost_usd"] is None  # the month's last week
    page = get("/agents/noisy", ADMIN).text
    assert page.count("n/a") >= 4  # the chart's text says what it does not draw


@pytest.mark.parametrize("viewer", [BIG0, SOLO, None])
def test_the_team_table_says_what_it_withheld(world, get, viewer):
    last_week = Period.week(WEEK.start - timedelta(days=7))  # three people ran anything
    query = f"?period=week&date={last_week.start}"
    body = get(f"/api/overview{query}", viewer).json()
    report = _summary(world, "team", viewer, last_week)
    assert report.hidden_runs > 0
    assert (body["withheld_runs"], body["withheld_people"]) == (
        report.hidden_runs,
        report.hidden_people,
    )
    page = get(f"/{query}", viewer).text
    notice = f"{report.hidden_runs} run{'s' if report.hidden_runs != 1 else ''} by fewer than 5"
    assert notice + " people withheld" in page
    admin = get(f"/api/overview{query}", ADMIN).json()
    assert admin["withheld_runs"] == 0 and "people withheld" not in get(f"/{query}", ADMIN).text
