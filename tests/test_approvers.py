"""Who may decide a request: `is_listed` over every name a person is known by."""

from __future__ import annotations

from datetime import UTC, datetime

from meshagent.approvals.staged import identities, is_listed
from meshagent.ledger.approvals import Approval
from meshagent.ledger.people import People

T0 = datetime(2026, 12, 1, tzinfo=UTC)


def _request(*approvers: str) -> Approval:
    return Approval("ap0123456789ab", "run", "nudge", "jira.add_comment", "deliver", "{}", "0" * 64,
                    approvers, (), "pending", T0, T0)  # fmt: skip


def test_a_person_under_any_of_their_names():
    people = People.from_groups([["U0SAM00001", "Sam@Example.com"]])
    request = _request("Sam@Example.com")  # an email that starts with S is no user group
    assert is_listed(request, identities(["U0SAM00001"]), people)
    assert is_listed(request, identities(["sam@example.com"]), people)
    assert not is_listed(request, identities(["U0CAROL03"]), people)


def test_user_groups_by_handle_and_id():
    groups = {"@leads": {"U0BOB0002"}, "S0LEADS01": {"U0BOB0002"}}
    for entry in ("@leads", "S0LEADS01"):
        request = _request(entry)
        assert is_listed(request, {"U0BOB0002"}, People(), groups=groups)
        assert not is_listed(request, {"U0CAROL03"}, People(), groups=groups)
        assert not is_listed(request, {"U0BOB0002"}, People())  # groups unknown: refused
