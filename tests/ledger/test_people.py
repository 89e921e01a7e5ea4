"""People: Slack ids, emails and logins joined into one person, in the table and in reports."""

from __future__ import annotations

import textwrap

import pytest

from meshagent.config import PrivacySettings, load_config
from meshagent.exceptions import LedgerError
from meshagent.ledger import people, reports
from meshagent.ledger.people import Identity, People, normalise
from meshagent.ledger.periods import Period

from .helpers import T0, record


@pytest.mark.parametrize(
    "name, identity",
    [
        ("U012ABCDEF", Identity("U012ABCDEF", "slack")),
        ("W0ENTERPRISE1", Identity("W0ENTERPRISE1", "slack")),
        (" Alice@Example.COM ", Identity("alice@example.com", "email")),
        ("alice", Identity("alice", "login")),
        ("@alice", Identity("alice", "login")),
        ("Uber", Identity("uber", "login")),  # not a Slack id: lowercase letters
    ],
)
def test_names_are_normalised(name, identity):
    assert normalise(name) == identity


def test_an_empty_name_is_refused():
    with pytest.raises(LedgerError, match="an identity cannot be empty"):
        normalise("  ")


def test_linking_merges_people_and_names_them_by_email(ledger):
    first = people.link(ledger, "U012ABCDEF", "alice")
    second = people.link(ledger, "alice@example.com", "a.smith")
    merged = people.link(ledger, "ALICE", "Alice@Example.com")
    assert merged == min(first, second)
    found = people.person_of(ledger, "a.smith")
    assert found is not None and found.name == "alice@example.com"
    assert [i.value for i in found.identities] == [
        "U012ABCDEF",
        "a.smith",
        "alice",
        "alice@example.com",
    ]
    assert people.identities_of(ledger, merged) == list(found.identities)
    assert people.person_of(ledger, "bob") is None
    assert people.directory(ledger).key("U012ABCDEF") == "alice@example.com"


def test_aliases_come_from_meshagent_toml(ledger, tmp_path):
    (tmp_path / "meshagent.toml").write_text(
        textwrap.dedent(
            """
            [people]
            me = "alice@example.com"
            aliases = { "alice@example.com" = ["U012ABCDEF", "alice"], "bob" = ["U0BOB0001"] }
            """
        )
    )
    config = load_config(cwd=tmp_path, env={})
    assert config.people.aliases == {
        "alice@example.com": ("U012ABCDEF", "alice"),
        "bob": ("U0BOB0001",),
    }
    laid_over = people.directory(ledger, aliases=config.people.aliases)
    assert laid_over.same("alice", "U012ABCDEF") and not laid_over.same("alice", "bob")
    assert people.sync_aliases(ledger, config.people.aliases) == 2
    assert people.directory(ledger).same("U0BOB0001", "bob")


def test_a_directory_folds_groups_that_share_a_name():
    directory = People.from_groups([["a@x.com", "U0AAAAAA1"], ["alice", "U0AAAAAA1"], ["bob"]])
    assert directory.key("alice") == directory.key("A@X.com") == "a@x.com"
    assert directory.names("alice") == {"a@x.com", "U0AAAAAA1", "alice"}
    assert directory.key("carol") == "carol" and not directory.same(None, None)
    assert len(directory) == 2


def test_reports_and_adoption_count_people_not_identities(ledger):
    people.link(ledger, "alice@example.com", "U0ALICE01", "alice")
    ledger.write_records(
        [
            record(triggered_by=name, trigger_kind="slash")
            for name in ("alice", "U0ALICE01", "alice@example.com", "bob")
        ]
    )
    admin = PrivacySettings(admins=("root",))
    week = Period.week(T0.date())
    (row,) = reports.summary(ledger, by="agent", period=week, viewer="root", privacy=admin).rows
    assert row.people == 2
    (adopted,) = reports.adoption(ledger, period=week, viewer="root", privacy=admin)
    assert (adopted.people_with_usage, adopted.people_with_outcome) == (2, 2)
