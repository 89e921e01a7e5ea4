"""End to end in headless Chromium (Debian's /usr/bin/chromium, driven by Playwright).

The dashboard runs under uvicorn, mounted at /dashboard, over the seeded ledger. Every page is
loaded, a filter is used, the numbers on the page are compared with the ledger's report, and a
small team is checked to be folded into "other". Screenshots go to test-artifacts/dashboard/.
Where Chromium is missing they are skipped, the reason naming the line that installs it (README
gives the same line), except under CI=true, where a missing browser fails the run.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.routing import Mount

from meshagent.ledger import reports
from meshagent.ledger.render import money

from .world import ADMIN, TEAMS, WEEK

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "dashboard"
BIG0 = TEAMS["big"][0]
#: Every system package the test suite needs, in one line (README.md and .ci/run name the same).
SYSTEM_PACKAGES = "sudo apt-get install -y chromium chromium-driver postgresql"


def require_chromium(path: Path = CHROMIUM, env: Mapping[str, str] = os.environ) -> None:
    """Skip without Chromium, saying how to install it; fail instead under CI=true."""
    if path.exists():
        return
    reason = (
        f"Chromium is not installed at {path}: the browser tests use Debian's package and never "
        f"download a browser; install what the tests need with `{SYSTEM_PACKAGES}`"
    )
    if env.get("CI", "").lower() == "true":
        pytest.fail(reason, pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="module")
def base_url(world: Any) -> Iterator[str]:
    """The dashboard under uvicorn on a free port, mounted at /dashboard."""
    outer = Starlette(routes=[Mount("/dashboard", app=world.app())])
    server = uvicorn.Server(
        uvicorn.Config(outer, host="127.0.0.1", port=0, log_level="warning", ws="none")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            pytest.fail("the dashboard did not start under uvicorn", pytrace=False)
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    require_chromium()
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            yield launched
        finally:
            launched.close()


class Visit:
    """A browser page as one viewer, recording every request and console error."""

    def __init__(self, browser: Any, base_url: str, viewer: str | None) -> None:
        headers = {"X-Forwarded-User": viewer} if viewer else {}
        self.context = browser.new_context(
            extra_http_headers=headers, viewport={"width": 1280, "height": 900}
        )
        self.page = self.context.new_page()
        self.base = base_url
        self.requests: list[str] = []
        self.errors: list[str] = []
        self.page.on("request", lambda request: self.requests.append(request.url))
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda error: self.errors.append(str(error)))

    def open(self, path: str) -> Any:
        response = self.page.goto(f"{self.base}/dashboard{path}")
        assert response is not None and response.status == 200, path
        return self.page

    def shoot(self, name: str) -> None:
        self.page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)

    def close(self) -> None:
        self.context.close()


@pytest.fixture
def visit(browser: Any, base_url: str) -> Iterator[Any]:
    opened: list[Visit] = []

    def make(viewer: str | None) -> Visit:
        opened.append(Visit(browser, base_url, viewer))
        return opened[-1]

    yield make
    for item in opened:
        item.close()


def _cells(page: Any, group: str) -> dict[str, str]:
    row = page.locator(f'table[data-testid="teams"] tr[data-group="{group}"]')
    return {
        cell.get_attribute("data-col"): cell.inner_text().strip()
        for cell in row.locator("td[data-col]").all()
    }


def _team_report(world: Any, viewer: str | None) -> Any:
    return reports.summary(
        world.ledger, by="team", period=WEEK, viewer=viewer, privacy=world.config.privacy
    )


def test_every_page_loads_offline_without_errors(world, visit, base_url):
    admin = visit(ADMIN)
    pages = {
        "overview": "/",
        "agents": "/agents",
        "agent": "/agents/noisy",
        "run": f"/runs/{world.ids['detailed']}",
        "flags": "/flags",
    }
    for name, path in pages.items():
        page = admin.open(path)
        assert page.locator("header.top nav a").count() == 3
        color = page.evaluate(
            "getComputedStyle(document.querySelector('header.top')).borderBottomStyle"
        )
        assert color == "solid", "the stylesheet did not load"
        admin.shoot(f"{name}-admin")
    assert admin.errors == []
    assert all(url.startswith(base_url) for url in admin.requests), admin.requests
    run = admin.open(f"/runs/{world.ids['detailed']}")
    refused = run.locator('table[data-testid="tool-calls"] tr.tool_refused')
    assert "slack.delete_message" in refused.inner_text()
    links = run.locator('ul[data-testid="outcomes"] a')
    assert links.count() == 2 and links.first.get_attribute("rel") == "noopener noreferrer"


@pytest.mark.parametrize("viewer", [ADMIN, BIG0])
def test_the_numbers_on_the_page_are_the_ledger_reports(world, visit, viewer):
    page = visit(viewer).open("/")
    report = _team_report(world, viewer)
    for row in report.rows:
        cells = _cells(page, row.group)
        assert cells["runs"] == f"{row.runs:,}"
        assert cells["cost"].split(" + ")[0].split(" ")[0] == money(row.cost_usd)
        assert cells["runs_with_outcome"] == f"{row.runs_with_outcome:,}"
        assert cells["people"] == f"{row.people:,}"
    total = sum(row.cost_usd or 0 for row in report.rows)
    assert page.locator('[data-kpi="cost"] .value').inner_text() == money(total)
    (week,) = reports.adoption(
        world.ledger, period=WEEK, viewer=viewer, privacy=world.config.privacy
    )
    assert page.locator('[data-testid="honest"]').inner_text() == str(week.people_with_outcome)
    assert page.locator('[data-testid="raw"]').inner_text() == str(week.people_with_usage)


def test_a_small_team_is_folded_into_other(world, visit):
    member = visit(BIG0)
    page = member.open("/")
    groups = page.locator('table[data-testid="teams"] tbody tr').evaluate_all(
        "rows => rows.map(r => r.dataset.group)"
    )
    assert groups == [row.group for row in _team_report(world, BIG0).rows]
    assert "tiny" not in groups and groups[-1] == "other"
    assert int(_cells(page, "other")["people"]) >= world.config.privacy.min_group_size
    options = page.locator('select[name="team"] option').all_inner_texts()
    assert "tiny" not in options and "big" in options
    assert "small groups counted in" in page.locator('[data-testid="folded"]').inner_text()
    member.shoot("overview-member-folded")
    admin = visit(ADMIN).open("/")
    assert admin.locator('table[data-testid="teams"] tr[data-group="tiny"]').count() == 1


def test_a_filter_gives_a_stable_url_and_the_teams_numbers(world, visit, base_url):
    member = visit(BIG0)
    page = member.open("/")
    page.select_option('select[name="team"]', "big")
    with page.expect_navigation():
        page.click('form[data-testid="filters"] button[type="submit"]')
    assert page.url == f"{base_url}/dashboard/?team=big"
    (big,) = [row for row in _team_report(world, BIG0).rows if row.group == "big"]
    assert page.locator('[data-kpi="cost"] .value').inner_text() == money(big.cost_usd)
    groups = page.locator('table[data-testid="teams"] tbody tr').evaluate_all(
        "rows => rows.map(r => r.dataset.group)"
    )
    assert groups == ["big"]
    page.click('a[rel="prev"]')
    assert page.url == f"{base_url}/dashboard/?date=2025-02-24&team=big"
    # Last week only big0's own run was in team big: a person sees their own runs in full,
    # however small the group (issue 19), and nobody else's is shown beside them.
    rows = page.locator('table[data-testid="teams"] tbody tr')
    assert rows.evaluate_all("rows => rows.map(r => r.dataset.group)") == ["big"]
    assert rows.first.inner_text().split("\t")[1:3] == ["1", "1"]
    member.shoot("overview-member-team-big-last-week")
    page.click('header nav a:text("Agents")')
    assert page.url == f"{base_url}/dashboard/agents?date=2025-02-24&team=big"


def test_the_agents_table_sorts_and_links_to_an_agent(world, visit, base_url):
    admin = visit(ADMIN)
    page = admin.open("/agents")
    page.click('a[data-sort="runs"]')
    assert page.url == f"{base_url}/dashboard/agents?sort=runs"
    runs = [
        int(text.replace(",", "")) for text in page.locator('td[data-col="runs"]').all_inner_texts()
    ]
    assert runs == sorted(runs, reverse=True) and runs[0] == 8  # ask: eight people asked
    page.click('tbody a:text-is("noisy")')
    assert page.url == f"{base_url}/dashboard/agents/noisy"
    # Flags still being computed: the page says so and reloads itself until they are there.
    page.wait_for_selector('li[data-rule="no_outcome"]', timeout=20_000)
    assert page.locator('li[data-rule="no_outcome"]').count() == 1
    assert page.locator('table[data-testid="runs"] tbody tr').count() == 3
    admin.shoot("agent-noisy")


def test_a_missing_browser_skips_with_the_install_line_and_fails_under_ci(tmp_path):
    missing = tmp_path / "chromium"
    with pytest.raises(pytest.skip.Exception, match=f"`{SYSTEM_PACKAGES}`"):
        require_chromium(missing, env={})
    with pytest.raises(pytest.fail.Exception, match="Chromium is not installed"):
        require_chromium(missing, env={"CI": "true"})


def test_the_agents_are_ranked_by_value_per_dollar_with_its_meaning(world, visit):
    """The agents page lists agents by value per dollar (value.headline's figure), highest
    first, and its header says what the figure is."""
    from decimal import Decimal

    from meshagent.ledger import value
    from meshagent.ledger.render import per_dollar

    figures = {r.group: r.value_per_dollar for r in value.headline(world.ledger, period=WEEK)}
    page = visit(ADMIN).open("/agents")
    # Still being computed: the page says so, and reloads itself until the figures are there.
    cells = 'td[data-col="value_per_dollar"]:not(:text-is("–"))'
    page.wait_for_selector(cells, timeout=20_000)
    header = page.locator('a[data-sort="value_per_dollar"]')
    assert "weighted by how much evidence there is" in header.get_attribute("title")
    names = page.locator("tbody th a").all_inner_texts()
    shown = page.locator('td[data-col="value_per_dollar"]').all_inner_texts()
    assert shown == [per_dollar(figures[name]) for name in names]
    known = [Decimal(text.replace(",", "")) for text in shown if text != "–"]
    assert len(known) > 2 and known == sorted(known, reverse=True)
