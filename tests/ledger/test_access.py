"""A `Ledger` is what its parts take: every member of `LedgerAccess` (and of `GroupWriter`, the
group commit's writer) is on the real class, with each parameter the protocol names taking the
same kind and default there, so the parts can name the protocol instead of the store (#23)."""

from __future__ import annotations

import inspect

import pytest

from meshagent.ledger import Ledger
from meshagent.ledger.access import GroupWriter, LedgerAccess
from meshagent.ledger.group import GroupCommit


def members(protocol: type) -> tuple[set[str], set[str]]:
    """The attributes and the methods a protocol declares."""
    attributes = set(inspect.get_annotations(protocol))
    methods = {
        name
        for name, value in vars(protocol).items()
        if inspect.isfunction(value) and not name.startswith("_")
    }
    return attributes, methods


def mismatches(protocol: type, real: object) -> list[str]:
    """What the protocol asks for that `real` lacks or takes differently."""
    attributes, methods = members(protocol)
    found = [f"no attribute {name}" for name in sorted(attributes) if not hasattr(real, name)]
    for name in sorted(methods):
        if not hasattr(real, name):
            found.append(f"no method {name}")
            continue
        wanted = inspect.signature(getattr(protocol, name)).parameters
        given = inspect.signature(getattr(type(real), name)).parameters
        for parameter in wanted.values():
            other = given.get(parameter.name)
            if other is None or (other.kind, other.default) != (
                parameter.kind,
                parameter.default,
            ):
                found.append(f"{name}({parameter.name}) differs")
    return found


@pytest.mark.parametrize("protocol", [LedgerAccess, GroupWriter])
def test_the_protocols_declare_members(protocol):
    attributes, methods = members(protocol)
    assert methods
    assert protocol is GroupWriter or attributes == {"engine", "url", "retry_for"}


def test_a_ledger_has_what_its_parts_use(sqlite_url):
    with Ledger.open(sqlite_url, retry_for=5) as ledger:
        assert mismatches(LedgerAccess, ledger) == []
        writer = ledger.group_commit()
        assert isinstance(writer, GroupCommit)
        assert mismatches(GroupWriter, writer) == []


def test_a_mismatch_is_seen():
    class Partial:
        engine = url = None

        def read(self, work, *, what):  # no default for `what`
            return work

    assert mismatches(LedgerAccess, Partial()) == [
        "no attribute retry_for",
        "no method close_run",
        "no method group_commit",
        "read(what) differs",
        "no method transact",
    ]
