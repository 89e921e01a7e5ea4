"""Privacy: the dashboard folds exactly as the ledger's reports do, filters or not."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meshagent.config import PrivacySettings
from meshagent.dashboard import queries
from meshagent.ledger import Ledger, reports
from meshagent.ledger.periods import Period
from meshagent.ledger.schema import DAILY_SUMS, daily

PRIVACY = PrivacySettings(min_group_size=3, admins=("admin",))
WEEK = Period.week(date(2025, 3, 5))
PEOPLE = [f"p{i}" for i in range(9)]
WEEK_OF_WORLD = Period.week(date(2025, 3, 3))


@pytest.fixture(scope="module")
def ledger(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ledger]:
    opened = Ledger.open(f"sqlite:///{tmp_path_factory.mktemp('privacy') / 'l.db'}")
    yield opened
    opened.close()


cell = st.fixed_dictionaries(
    {
        "day": st.integers(0, 8).map(lambda n: WEEK.start + timedelta(days=n - 1)),
        "agent": st.sampled_from(["a1", "a2", "a3", "a4"]),
        "owner": st.sampled_from(PEOPLE[:4]),
        "team": st.sampled_from(["t1", "t2", "t3", ""]),
        "value_tag": st.sampled_from(["x", "y", ""]),
        "model": st.just("m"),
        "person": st.sampled_from(PEOPLE),
        "runs": st.integers(1, 5),
        "cost_usd": st.decimals(0, 3, places=4),
        "runs_cost_unknown": st.integers(0, 1),
        "minutes_saved": st.integers(0, 90),
    }
)


def _store(ledger: Ledger, cells: list[dict[str, Any]]) -> None:
    unique = {
        tuple(c[k] for k in ("day", "agent", "owner", "team", "value_tag", "model", "person")): c
        for c in cells
    }
    rows = [
        {**{name: 0 for name in DAILY_SUMS}, "runs_with_outcome": c["runs"] // 2, **c}
        for c in unique.values()
    ]

    def work(connection: Any) -> None:
        connection.execute(daily.delete())
        if rows:
            connection.execute(daily.insert(), rows)

    ledger.transact(work, what="store test rollups")


@settings(max_examples=40, deadline=None)
@given(cells=st.lists(cell, max_size=30), viewer=st.sampled_from([None, "p0", "p5", "admin"]))
def test_folded_reports_equal_the_ledgers_summary(ledger, cells, viewer):
    _store(ledger, cells)
    for by in ("team", "agent", "tag"):
        expected = reports.summary(ledger, by=by, period=WEEK, viewer=viewer, privacy=PRIVACY)
        found = queries.folded_report(ledger, WEEK, by=by, viewer=viewer, privacy=PRIVACY)
        assert found.rows == expected.rows, by
        assert (found.folded, found.withheld) == (expected.folded, expected.withheld), by
    if viewer != "p0":  # p0 owns agents: the agents page shows those in full instead
        agents = queries.agent_cells(ledger, WEEK, viewer=viewer, privacy=PRIVACY)
        expected = reports.summary(ledger, by="agent", period=WEEK, viewer=viewer, privacy=PRIVACY)
        assert agents.rows == expected.rows


@settings(max_examples=40, deadline=None)
@given(
    cells=st.lists(cell, max_size=30),
    viewer=st.sampled_from([None, "p0", "p5"]),
    team=st.sampled_from([None, "t1", "t2"]),
    tag=st.sampled_from([None, "x", "y"]),
)
def test_filtered_views_never_single_anyone_out(ledger, cells, viewer, team, tag):
    _store(ledger, cells)
    for by in ("team", "agent", "tag"):
        found = queries.folded_report(
            ledger, WEEK, by=by, viewer=viewer, privacy=PRIVACY, team=team, tag=tag
        )
        column = {"team": "team", "agent": "agent", "tag": "value_tag"}[by]
        # a small row only ever holds the viewer's own agents' runs, which they see in full
        theirs = [
            c
            for c in _unique(cells)
            if c["owner"] == viewer
            and WEEK.start <= c["day"] < WEEK.end
            and team in (None, c["team"])
            and tag in (None, c["value_tag"])
        ]
        for row in found.rows:
            own = sum(c["runs"] for c in theirs if (c[column] or "(none)") == row.group)
            assert row.people >= PRIVACY.min_group_size or row.runs == own
    agents = queries.agent_cells(ledger, WEEK, viewer=viewer, privacy=PRIVACY, team=team, tag=tag)
    own, others = agents.rows[: agents.own], agents.rows[agents.own :]
    assert {row.group for row in own} == agents.yours
    assert all(row.people >= PRIVACY.min_group_size for row in others)  # "other" too
    mine = [c for c in cells if c["owner"] == viewer and WEEK.start <= c["day"] < WEEK.end]
    for row in own:  # the viewer's own agents: exactly their own runs
        runs = [
            c
            for c in mine
            if c["agent"] == row.group
            and team in (None, c["team"])
            and tag in (None, c["value_tag"])
        ]
        assert row.runs == sum(c["runs"] for c in _unique(runs))


def _unique(cells: list[dict[str, Any]]) -> list[dict[str, Any]]:
    keys = ("day", "agent", "owner", "team", "value_tag", "model", "person")
    return list({tuple(c[k] for k in keys): c for c in cells}.values())


def test_a_series_point_with_too_few_people_is_withheld(world, get):
    member = get("/api/agents/ask?period=week", "big0@example.com").json()
    monday = member["daily"][0]
    assert monday["runs"] == 0 and not monday["withheld"]  # nobody: nothing to hide
    assert member["access"] == "owner"
    stranger = get("/api/agents/ask", "pair0@example.com").json()
    assert stranger["access"] == "group" and stranger["runs"] == []
    assert all(p["withheld"] or (p["runs"] or 0) == 0 or p["runs"] >= 5 for p in stranger["daily"])


def test_money_stays_exact(ledger):
    _store(ledger, [])
    row = queries.report_row("g", {"runs": 2, "runs_cost_unknown": 2, "cost_usd": 0}, 1)
    assert row.cost_usd is None  # every price unknown: unknown, never $0
    row = queries.report_row(
        "g", {"runs": 2, "runs_cost_unknown": 1, "cost_usd": Decimal("0.1")}, 1
    )
    assert row.cost_usd == Decimal("0.1")


def test_nobody_known_sees_no_runs(world):
    scheduled = queries.runs_of_agent(
        world.ledger, "big0-bot", WEEK_OF_WORLD, team=None, tag=None, person=None, everyone=False
    )
    assert scheduled == []  # not "triggered_by IS NULL": every scheduled run
    everyone = queries.runs_of_agent(
        world.ledger, "big0-bot", WEEK_OF_WORLD, team=None, tag=None, person=None, everyone=True
    )
    assert len(everyone) == 2


def test_an_agent_that_others_owned_too_shows_the_viewers_runs_apart(ledger):
    base = {"day": WEEK.start, "agent": "a1", "team": "t1", "value_tag": "x", "model": "m"}
    cost = {"cost_usd": Decimal(1), "runs_cost_unknown": 0, "minutes_saved": 0}
    mine = {**base, **cost, "owner": "p0", "person": "p0", "runs": 2}
    theirs = [{**base, **cost, "owner": p, "person": p, "runs": 1} for p in PEOPLE[1:4]]
    _store(ledger, [mine, *theirs])
    agents = queries.agent_cells(ledger, WEEK, viewer="p0", privacy=PRIVACY)
    assert [(row.group, row.runs, row.people) for row in agents.rows] == [
        ("a1", 2, 1),  # p0's own runs, in full
        ("a1", 3, 3),  # the others' runs of the same agent: three people, shown by name
    ]
    assert (agents.own, agents.yours) == (1, frozenset({"a1"}))


def test_a_persons_identities_are_one_person_in_folded_and_admin_reports(ledger):
    from meshagent.ledger import people

    people.link(ledger, "ann@example.com", "U0ANN0001", "ann")
    base = {"agent": "a1", "owner": "p0", "team": "t1", "value_tag": "x", "model": "m"}
    day = {"day": WEEK.start, "runs": 1, "cost_usd": Decimal(1), "runs_cost_unknown": 0}
    names = ["ann@example.com", "U0ANN0001", "ann", "p1", "p2", "p3"]
    _store(ledger, [{**base, **day, "minutes_saved": 0, "person": name} for name in names])
    for viewer in ("admin", "p5"):
        found = queries.folded_report(ledger, WEEK, by="team", viewer=viewer, privacy=PRIVACY)
        expected = reports.summary(ledger, by="team", period=WEEK, viewer=viewer, privacy=PRIVACY)
        assert [(r.group, r.people) for r in found.rows] == [("t1", 4)], viewer
        assert found.rows == expected.rows


def test_series_count_a_persons_identities_as_one_person(ledger):
    from meshagent.ledger import people

    people.link(ledger, "bea@example.com", "U0BEA0001", "bea")
    base = {"agent": "a1", "owner": "p0", "team": "t1", "value_tag": "x", "model": "m"}
    day = {"runs": 2, "cost_usd": Decimal(1), "runs_cost_unknown": 0, "minutes_saved": 0}
    names = ["bea@example.com", "U0BEA0001", "bea", "p1"]
    cells = [{**base, **day, "day": WEEK.start, "person": name} for name in names]
    cells.append({**base, **day, "day": WEEK.start + timedelta(days=1), "person": "U0BEA0001"})
    _store(ledger, cells)
    edges = [WEEK.start + timedelta(days=n) for n in range(3)]
    first, second = queries.buckets(ledger, edges)
    assert (first.people, first.people_with_outcome, first.people_with_usage) == (2, 2, 0)
    assert first.sums["runs"] == 8 and second.people == 1
    (whole,) = queries.buckets(ledger, [WEEK.start, WEEK.end])
    assert whole.people == 2 and whole.sums["runs"] == 10


def test_a_run_is_shown_to_its_triggerer_under_any_of_their_identities():
    from meshagent.ledger.people import People

    people = People.from_groups([["bob@example.com", "U0BOB0002"]])
    entry = {"owner": "alice@example.com", "triggered_by": "U0BOB0002"}
    assert queries.visible_run(entry, "bob@example.com", PRIVACY, people)
    assert queries.visible_run(entry, "U0BOB0002", PRIVACY)
    assert not queries.visible_run(entry, "bob@example.com", PRIVACY)  # identities not joined
    assert not queries.visible_run(entry, "carol@example.com", PRIVACY, people)
    assert not queries.visible_run(entry, None, PRIVACY, people)
