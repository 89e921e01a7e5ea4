"""The HTML pages: stable URLs, links under any mount prefix, nothing from outside the app."""

from __future__ import annotations

import re

import jsonschema
import pytest
from starlette.applications import Starlette
from starlette.routing import Mount, Route
from starlette.testclient import TestClient

from meshagent.ledger import reports

from .world import ADMIN, TEAMS, WEEK

BIG0 = TEAMS["big"][0]


def _pages(world):
    return [
        "/",
        "/agents",
        "/agents/noisy",
        f"/runs/{world.ids['detailed']}",
        "/flags",
    ]


def test_every_page_renders_for_an_admin_with_security_headers(world, get):
    for path in _pages(world):
        response = get(path, ADMIN)
        assert response.status_code == 200, path
        assert response.headers["content-type"].startswith("text/html")
        policy = response.headers["content-security-policy"]
        assert "default-src 'self'" in policy and "script-src 'none'" in policy
        assert "<script" not in response.text


def test_nothing_is_loaded_from_outside_the_app(world, get):
    for path in _pages(world):
        html = get(path, ADMIN).text
        sources = re.findall(r'(?:src|href)="([^"]+)"', html)
        external = [s for s in sources if s.startswith(("http:", "https:", "//"))]
        assert set(external) <= {  # only the outcomes' own links on the run page
            "https://example.slack.com/archives/C0ABC/p1741000000000100",
            "https://example.atlassian.net/browse/OPS-7",
        }, path
        assert "@import" not in html and "fonts." not in html
    css = get("/static/dashboard.css").text
    assert "url(" not in css and "@import" not in css


def test_the_overview_shows_the_reports_numbers(world, get):
    html = get("/", ADMIN).text
    privacy = world.config.privacy
    report = reports.summary(world.ledger, by="team", period=WEEK, viewer=ADMIN, privacy=privacy)
    for row in report.rows:
        assert f'<tr data-group="{row.group}">' in html
    assert 'data-kpi="cost"' in html and "<svg" in html


def test_unknown_cost_is_written_unknown(get):
    html = get("/agents/mystery", ADMIN).text
    assert re.search(r'data-kpi="cost">.*?<span class="value">unknown</span>', html, re.S)
    agents = get("/agents", ADMIN).text
    row = re.search(r'<tr data-group="mystery">.*?</tr>', agents, re.S).group(0)
    assert re.search(r'data-col="cost">unknown<', row)


def test_recorded_text_is_escaped(world, get):
    html = get(f"/runs/{world.ids['detailed']}", ADMIN).text
    assert "useful &lt;b&gt;really&lt;/b&gt;" in html
    assert "OPS-8" in html and 'href="javascript:' not in html


@pytest.mark.parametrize(
    "given, canonical",
    [
        ("/?period=week&date=&from=&to=&team=&tag=", "/"),
        ("/?period=month&date=2025-03-05&team=big&tag=", "/?period=month&date=2025-03-05&team=big"),
        ("/?period=range&from=2025-03-01&to=2025-03-04", "/?from=2025-03-01&to=2025-03-04"),
        ("/agents?sort=value_per_dollar&order=desc", "/agents"),
        ("/agents?sort=cost&order=desc", "/agents?sort=cost"),
        ("/agents?sort=agent&order=asc&team=", "/agents?sort=agent"),
        ("/agents/noisy?page=1", "/agents/noisy"),
        ("/flags?period=week&team=", "/flags"),
        ("/flags?page=1&rule=burst&team=big", "/flags?team=big&rule=burst"),
    ],
)
def test_a_page_redirects_to_its_one_stable_url(get, given, canonical):
    response = get(given, ADMIN, follow_redirects=False)
    assert response.status_code == 302 and response.headers["location"] == canonical
    assert get(canonical, ADMIN, follow_redirects=False).status_code == 200


def test_links_keep_the_filters(get):
    html = get("/?team=big&period=month&date=2025-03-05", ADMIN).text
    assert 'href="/agents?period=month&amp;date=2025-03-05&amp;team=big"' in html
    assert 'href="/flags?period=month&amp;date=2025-03-05&amp;team=big"' in html
    assert 'href="/?period=month&amp;date=2025-02-01&amp;team=big" rel="prev"' in html


def test_the_agents_table_sorts_by_its_headers(get):
    html = get("/agents", ADMIN).text
    assert 'aria-sort="descending"' in html
    assert 'href="/agents?sort=runs" data-sort="runs"' in html
    assert 'href="/agents?sort=cost" data-sort="cost"' in html
    assert 'href="/agents?order=asc" data-sort="value_per_dollar"' in html  # the default
    runs = get("/agents?sort=runs&order=asc", ADMIN).text
    assert 'aria-sort="ascending"' in runs


def test_works_mounted_under_a_prefix(world):
    outer = Starlette(
        routes=[
            Route("/healthz", lambda request: None),
            Mount("/dashboard", app=world.app()),
        ]
    )
    with TestClient(outer) as client:
        headers = {"X-Forwarded-User": ADMIN}
        html = client.get("/dashboard/", headers=headers).text
        assert 'href="/dashboard/static/dashboard.css"' in html
        assert 'href="/dashboard/agents"' in html
        agents = client.get("/dashboard/agents", headers=headers).text
        assert 'href="/dashboard/agents/noisy"' in agents
        assert client.get("/dashboard/static/dashboard.css").status_code == 200
        moved = client.get("/dashboard/?team=", headers=headers, follow_redirects=False)
        assert moved.headers["location"] == "/dashboard/"
        spec = client.get("/dashboard/openapi.json").json()
        assert spec["servers"] == [{"url": "/dashboard"}]
        assert client.get("/dashboard/api/overview", headers=headers).json()["teams"]


def test_unknown_pages_and_hidden_items_are_404(world, get):
    assert get("/no/such/page", ADMIN).status_code == 404
    assert get("/api/nothing", ADMIN).json() == {"error": "no such page"}
    page = get("/agents/noisy", BIG0)
    assert page.status_code == 404 and "no agent &#39;noisy&#39;" in page.text


def test_the_openapi_spec_documents_every_api_route(app, get):
    spec = get("/openapi.json").json()
    assert spec["openapi"].startswith("3.1")
    routes = {route.path for route in app.routes if route.path.startswith("/api/")}
    assert set(spec["paths"]) == routes
    for path, item in spec["paths"].items():
        for parameter in item["get"].get("parameters", []):
            if parameter["in"] == "path":
                assert "{" + parameter["name"] + "}" in path


@pytest.mark.parametrize("viewer", [ADMIN, BIG0, None])
def test_every_api_answer_matches_its_schema(world, get, viewer):
    spec = get("/openapi.json").json()
    calls = {
        "/api/viewer": "/api/viewer",
        "/api/overview": "/api/overview?period=month&date=2025-03-05",
        "/api/agents": "/api/agents?sort=flags",
        "/api/agents/{name}": "/api/agents/ask",
        "/api/runs/{run_id}": f"/api/runs/{world.ids['detailed']}",
        "/api/flags": "/api/flags",
    }
    for path, url in calls.items():
        response = get(url, viewer)
        code = str(response.status_code)
        operation = spec["paths"][path]["get"]
        assert code in operation["responses"], url
        schema = operation["responses"][code]["content"]["application/json"]["schema"]
        jsonschema.validate(
            response.json(),
            {**schema, "components": spec["components"]},
            cls=jsonschema.Draft202012Validator,
        )
    error = get("/api/overview?period=nope", viewer).json()
    jsonschema.validate(error, spec["components"]["schemas"]["Error"])


def test_the_flags_page_says_whose_flags_and_what_each_costs_and_how_to_fix_it(world, get):
    from meshagent.ledger.flags import flag_report

    found = flag_report(
        world.ledger,
        period=WEEK,
        settings=world.config.flags,
        viewer=ADMIN,
        privacy=world.config.privacy,
    )
    html = get("/flags", ADMIN).text
    assert f"Showing every flag (admin: {ADMIN})" in html
    top = found.flags[0]
    assert f'data-testid="usd">${top.usd:,.2f}<' in html
    assert top.fix and html.count('data-testid="fix"') == len(found.flags)
    mine = get("/flags", BIG0).text
    assert f"Showing flags on runs owned or triggered by {BIG0}" in mine


def test_the_run_page_shows_each_outcomes_verdict_evidence_and_reach(world, get):
    html = get(f"/runs/{world.ids['detailed']}", ADMIN).text
    outcomes = html.split('data-testid="outcomes"', 1)[1].split("</section>", 1)[0]
    assert outcomes.count('data-testid="verdict"') == 3
    assert 'data-testid="verdict">accepted<' in outcomes
    assert outcomes.count('data-testid="verdict">pending<') == 2
    evidence = outcomes.split('data-testid="evidence"', 1)[1].split("</ul>", 1)[0]
    assert f"{TEAMS['big'][3]}: reaction:tada" in evidence
    assert f"{BIG0}: reply" in evidence and "not counted: owner" in evidence
    assert "Reach: public, 42 people, seen by others" in outcomes
    assert "project: OPS; watchers: carol, dave" in outcomes
    body = get(f"/api/runs/{world.ids['detailed']}", ADMIN).json()
    slack = body["outcomes"][0]
    assert (slack["verdict"], slack["reach"]["audience_size"]) == ("accepted", 42)
    assert [(e["who"], e["counted"]) for e in slack["evidence"]] == [
        (TEAMS["big"][3], True),
        (BIG0, False),
    ]


def test_the_overview_leads_with_accepted_outcomes_and_evidenced_minutes(world, get):
    from meshagent.ledger import value

    made = value.credits(world.ledger, WEEK)
    assert made  # the detailed run's message was taken up by a reader
    body = get("/api/overview", ADMIN).json()
    headline = body["headline"]
    assert headline["accepted_outcomes"] == len(made)
    assert headline["minutes_evidenced"] == format(sum(c.minutes for c in made), "f")
    assert headline["people_honest"] == len({c.person for c in made if c.reached_others})
    html = get("/", ADMIN).text
    assert html.index('data-kpi="accepted_outcomes"') < html.index('data-kpi="cost"')
    assert "Honest adoption" in html and "claimed" in html


def test_the_agents_table_leads_with_accepted_outcomes(world, get):
    from meshagent.ledger import value

    made = value.credits(world.ledger, WEEK)
    expected = {c.agent for c in made}
    rows = get("/api/agents?sort=accepted", ADMIN).json()["rows"]
    named = {row["agent"]: row for row in rows if row["agent"]}
    for agent in expected:
        assert named[agent]["accepted_outcomes"] == sum(c.agent == agent for c in made)
    assert rows[0]["agent"] in expected  # sorted by accepted outcomes, most first
    assert all(named[a]["accepted_outcomes"] == 0 for a in named if a not in expected)
    html = get("/agents", ADMIN).text
    assert html.index('data-col="accepted"') < html.index('data-col="runs"')


def test_the_agent_page_leads_with_its_accepted_outcomes(world, get):
    from meshagent.ledger import value

    made = [c for c in value.credits(world.ledger, WEEK) if c.agent == "big0-bot"]
    headline = get("/api/agents/big0-bot", ADMIN).json()["headline"]
    assert headline["accepted_outcomes"] == len(made) >= 1
    assert headline["minutes_evidenced"] == format(sum(c.minutes for c in made), "f")
    html = get("/agents/big0-bot", ADMIN).text
    assert html.index('data-kpi="accepted_outcomes"') < html.index('data-kpi="runs"')
