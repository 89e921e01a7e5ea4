"""Privacy: a member of a small team cannot be singled out through any report or grouping."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meshagent.config import PrivacySettings
from meshagent.ledger import reports
from meshagent.ledger.periods import Period
from meshagent.ledger.privacy import OTHER, fold

from .helpers import T0, cost, record

PRIVACY = PrivacySettings(min_group_size=5, admins=("root",))
WEEK = Period.week(T0.date())
BIG = [f"big{i}" for i in range(6)]


def _fill(ledger, solo_cost: str) -> None:
    runs = [record(owner=p, team="big", agent=f"agent-{p}", cost=cost("0.10")) for p in BIG]
    runs += [
        record(owner=p, team="mid", value_tag="x", cost=cost("0.20"))
        for p in ("mid0", "mid1", "mid2", "mid3", "mid4")
    ]
    runs += [record(owner="pair0", team="pair"), record(owner="pair1", team="pair")]
    runs.append(
        record(
            owner="solo",
            team="tiny",
            agent="solo-bot",
            value_tag="rare",
            model_answered="rare-model",
            cost=cost(solo_cost),
        )
    )
    ledger.write_records(runs)


def _views(ledger, viewer):
    return {
        by: reports.summary(ledger, by=by, period=WEEK, viewer=viewer, privacy=PRIVACY)
        for by in reports.GROUPINGS
    }


@pytest.fixture
def two_worlds(ledger_url, tmp_path):
    """The same ledger twice, differing only in what the solo member of team tiny spent."""
    from meshagent.ledger import Ledger

    first = Ledger.open(ledger_url)
    second = Ledger.open(f"sqlite:///{tmp_path / 'other-world.db'}")
    _fill(first, "0.0042")
    _fill(second, "9.9999")
    yield first, second
    first.close()
    second.close()


def _own_groups(ledger, viewer) -> dict[str, set[str]]:
    """Per grouping, the groups holding the viewer's own runs: those they see in full."""
    from sqlalchemy import select

    from meshagent.ledger.schema import daily

    query = select(daily).where(daily.c.owner == viewer)
    found = ledger.read(lambda c: c.execute(query).mappings().all())
    return {by: {row[column] for row in found} for by, column in reports.GROUPINGS.items()}


@pytest.mark.parametrize("viewer", ["big0", "pair0", "solo", None])
def test_a_small_teams_member_only_ever_moves_the_other_row(two_worlds, viewer):
    first, second = (_views(ledger, viewer) for ledger in two_worlds)
    own = _own_groups(two_worlds[0], viewer)
    for by, report in first.items():
        rows = {row.group: row for row in report.rows}
        changed = {row.group for row in second[by].rows if rows.get(row.group) != row}
        # their own rows: solo sees what solo spent, in every grouping
        assert changed <= {OTHER, *own[by]}, by
        small = [row for row in report.rows if row.people < 5]
        assert all(row.group in own[by] and row.people == 1 for row in small), by
        if by != "owner":
            assert OTHER in rows and rows[OTHER].people >= 5


def test_rows_per_person_go_to_that_person_or_admins(ledger):
    _fill(ledger, "0.0042")
    mine = reports.summary(ledger, by="owner", period=WEEK, viewer="solo", privacy=PRIVACY)
    assert [(row.group, row.cost_usd) for row in mine.rows] == [("solo", Decimal("0.0042"))]
    anonymous = reports.summary(ledger, by="owner", period=WEEK, privacy=PRIVACY)
    assert anonymous.rows == ()
    admin = reports.summary(ledger, by="owner", period=WEEK, viewer="root", privacy=PRIVACY)
    assert len(admin.rows) == 14
    teams = reports.summary(ledger, by="team", period=WEEK, viewer="root", privacy=PRIVACY)
    assert {row.group for row in teams.rows} == {"big", "mid", "pair", "tiny"}


def test_too_few_people_in_all_withholds_everything(ledger):
    ledger.write_records([record(owner="a"), record(owner="b", team="other-team")])
    report = reports.summary(ledger, by="tag", period=WEEK, viewer="a", privacy=PRIVACY)
    assert report.withheld and (report.hidden_runs, report.hidden_people) == (1, 1)
    assert [(row.people, row.runs) for row in report.rows] == [(1, 1)]  # a's own run, in full
    anonymous = reports.summary(ledger, by="tag", period=WEEK, privacy=PRIVACY)
    assert anonymous.rows == () and anonymous.withheld and anonymous.hidden_runs == 2
    (week,) = reports.adoption(ledger, period=WEEK, viewer="a", privacy=PRIVACY)
    assert week.people_with_usage is None


people = st.sampled_from([f"p{i}" for i in range(12)])
cells = st.lists(
    st.tuples(
        st.sampled_from(["t1", "t2", "t3", "t4"]),
        st.sampled_from(["g1", "g2", "g3"]),
        people,
        st.integers(1, 9).map(lambda n: {"runs": n}),
    ),
    max_size=40,
)


@settings(max_examples=200, deadline=None)
@given(cells=cells, by=st.sampled_from(["team", "tag"]))
def test_fold_never_shows_a_small_group_or_a_small_teams_member(cells, by):
    if by == "team":
        cells = [(team, team, person, sums) for team, _, person, sums in cells]
    folded = fold(cells, by=by, viewer="p0", privacy=PRIVACY)
    team_people: dict[str, set[str]] = {}
    for team, _, person, _ in cells:
        team_people.setdefault(team, set()).add(person)
    small = {team for team, members in team_people.items() if len(members) < 5}
    for name, group in folded.groups.items():
        assert len(group.people) >= 5
        if name != OTHER:  # a named group never holds a small team's entries
            runs = sum(c[3]["runs"] for c in cells if c[1] == name and c[0] not in small)
            assert group.sums["runs"] == runs
    shown = sum(group.sums.get("runs", 0) for group in folded.groups.values())
    assert folded.withheld or shown == sum(c[3]["runs"] for c in cells)
