"""The dashboard ranks agents by value per dollar (value.headline's figure) and shows it beside
the headline figures, with what it means, on the agents, agent and overview pages and in the
JSON API."""

from __future__ import annotations

import re
from decimal import Decimal

import pytest
from starlette.testclient import TestClient

from meshagent.dashboard import create_dashboard
from meshagent.ledger import Ledger, value
from meshagent.ledger.periods import Period
from meshagent.ledger.render import per_dollar
from tests.ranked_agents import write_ranked

from .world import ADMIN, MONDAY, TODAY, config

MEANING = "evidenced minutes per dollar, weighted by how much evidence there is"


@pytest.fixture(scope="module")
def ranked(tmp_path_factory):
    url = f"sqlite:///{tmp_path_factory.mktemp('ranked') / 'ledger.db'}"
    with Ledger.open(url) as ledger:
        write_ranked(ledger, MONDAY)
        week = Period.week(TODAY)
        agents = {r.group: r.value_per_dollar for r in value.headline(ledger, period=week)}
        teams = {r.group: r for r in value.headline(ledger, period=week, by="team")}
        app = create_dashboard(config(url), ledger=ledger, today=lambda: TODAY)
        with TestClient(app, headers={"X-Forwarded-User": ADMIN}) as client:
            yield client, agents, teams


def test_the_agents_are_ranked_by_value_per_dollar(ranked):
    client, figures, _ = ranked
    expected = sorted(figures, key=lambda name: -figures[name])
    assert figures["used"] > figures["fresh"] > figures["noise"]  # the evidence differs
    body = client.get("/api/agents").json()
    assert body["sort"] == "value_per_dollar" and body["value"]["state"] == "fresh"
    assert [row["agent"] for row in body["rows"]] == expected
    assert {r["agent"]: Decimal(r["value_per_dollar"]) for r in body["rows"]} == figures
    html = client.get("/agents").text
    assert re.findall(r'<tr data-group="([^"]+)">', html) == expected
    header = re.search(r'<a [^>]*data-sort="value_per_dollar"[^>]*>', html).group(0)
    assert f'title="Value per $: {MEANING}. Agents are ranked by it."' in header
    head = html[html.index("<thead>") : html.index("</thead>")]
    assert head.index("Minutes evidenced") < head.index("Value per $") < head.index(">Runs")
    for name, figure in figures.items():
        row = html[html.index(f'<tr data-group="{name}">') :]
        cell = re.search(r'data-col="value_per_dollar">([^<]*)<', row).group(1)
        assert cell == per_dollar(figure)
    assert MEANING in html[html.index('data-testid="value-note"') :]
    by_cost = client.get("/api/agents?sort=cost").json()["rows"]
    assert [r["agent"] for r in by_cost] != expected  # another column still sorts


def test_an_agents_page_and_the_overview_show_value_per_dollar(ranked):
    client, figures, teams = ranked
    body = client.get("/api/agents/used").json()
    assert Decimal(body["headline"]["value_per_dollar"]) == figures["used"]
    page = client.get("/agents/used").text
    kpi = page[page.index('data-kpi="value_per_dollar"') :]
    assert per_dollar(figures["used"]) in kpi[: kpi.index("</div>")] and MEANING in kpi
    overview = client.get("/api/overview").json()
    (team,) = overview["teams"]
    assert Decimal(team["value_per_dollar"]) == teams[team["group"]].value_per_dollar
    html = client.get("/").text
    row = html[html.index(f'<tr data-group="{team["group"]}">') :]
    cell = re.search(r'data-col="value_per_dollar">([^<]*)<', row).group(1)
    assert cell == per_dollar(teams[team["group"]].value_per_dollar)
    assert MEANING in html[html.index('data-testid="value-note"') :]
