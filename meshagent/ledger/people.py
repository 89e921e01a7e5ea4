"""People, not identities: one person however many names they go by in Slack, email and Unix.

An identity is a name the ledger meets in `owner`, `triggered_by`, a vote's `person` or an
evidence item's `who`. It is normalised by `normalise`: a Slack user id (`U…`, `W…`) stays as
it is, anything with an `@` in it is a lowercased email, anything else is a lowercased login (a
leading `@`, as in a Slack handle, is dropped). Identities are linked into one person by `link`
(from the `[people] aliases` of meshagent.toml through `sync_aliases`, from Slack's users.info /
users.lookupByEmail through the connector, or by hand); linking two identities that already
belong to different people merges those people.

Readers never join the identity table in SQL: they aggregate by raw identity and fold the
identities into people in Python with a `People` directory (`directory(ledger)`), which holds
the whole table (one row per name: small next to the entries). An identity nobody linked is a
person of its own.

    directory = people.directory(ledger, aliases=config.people.aliases)
    directory.key("U012ABCDEF") == directory.key("Alice@Example.com")  # one person
    directory.same(run_owner, voter)                                   # a self-vote?
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from sqlalchemy import Connection, bindparam, delete, select, update

from meshagent.exceptions import LedgerError
from meshagent.ledger import rows
from meshagent.ledger.engine import execute
from meshagent.ledger.schema import identities as identities_table
from meshagent.ledger.schema import people as people_table

if TYPE_CHECKING:
    from meshagent.ledger.access import LedgerAccess

__all__ = [
    "Identity",
    "People",
    "PersonRecord",
    "alink",
    "directory",
    "identities_of",
    "link",
    "names_of",
    "normalise",
    "person_of",
    "sync_aliases",
]

_SLACK_ID = re.compile(r"^[UW][A-Z0-9]{6,}$")
_KIND_ORDER = {"email": 0, "login": 1, "slack": 2}  # which name a person is shown by


@dataclass(frozen=True, order=True)
class Identity:
    """A normalised name: `kind` is slack, email or login."""

    value: str
    kind: str


@dataclass(frozen=True)
class PersonRecord:
    """A person: their id, the name reports show, and every identity linked to them."""

    id: int
    name: str
    identities: tuple[Identity, ...]


def normalise(identity: str) -> Identity:
    """The canonical form of a name: Slack ids as they are, else a lowercased email or login."""
    value = identity.strip()
    if not value:
        raise LedgerError("an identity cannot be empty: give a Slack user id, an email or a login")
    if _SLACK_ID.match(value):
        return Identity(value, "slack")
    if "@" in value.lstrip("@"):
        return Identity(value.lower(), "email")
    return Identity(value.lstrip("@").lower(), "login")


def _display(names: Iterable[Identity]) -> str:
    return min(names, key=lambda i: (_KIND_ORDER[i.kind], i.value)).value


def link(ledger: LedgerAccess, *names: str, source: str = "manual") -> int:
    """Make `names` one person (merging the people they belonged to); returns the person's id."""
    wanted = _wanted(names)
    return ledger.transact(lambda c: _link(c, wanted, source), what="link identities")


async def alink(ledger: LedgerAccess, *names: str, source: str = "manual") -> int:
    """`link` for asyncio tasks: committed with the ledger's other writes of the moment (its
    group commit), so the new people of a burst of commands cost a few transactions."""
    wanted = _wanted(names)
    return await ledger.group_commit().write(
        lambda c, _batch: _link(c, wanted, source), what="link identities"
    )


def _wanted(names: Iterable[str]) -> list[Identity]:
    wanted = sorted({normalise(name) for name in names})
    if not wanted:
        raise LedgerError("link needs at least one identity")
    return wanted


def names_of(connection: Connection, identity: str) -> set[str]:
    """Every identity of the person `identity` is linked to, read on `connection` (at least
    `identity` itself, normalised)."""
    value = normalise(identity).value
    return {value, *execute(connection, _NAMES, {"identity": value}).scalars()}


# Compiled once per dialect (`engine.execute`): read in the group commit of every Slack answer.
_NAMES = select(identities_table.c.identity).where(
    identities_table.c.person_id
    == select(identities_table.c.person_id)
    .where(identities_table.c.identity == bindparam("identity"))
    .scalar_subquery()
)


def _link(connection: Connection, wanted: Sequence[Identity], source: str) -> int:
    values = [i.value for i in wanted]
    found = connection.execute(
        select(identities_table.c.identity, identities_table.c.person_id).where(
            identities_table.c.identity.in_(values)
        )
    ).all()
    owners = sorted({person_id for _, person_id in found})
    now = rows.now()
    if owners:
        survivor, merged = owners[0], owners[1:]
    else:
        survivor = connection.execute(
            people_table.insert().values(name=_display(wanted), created_at=now)
        ).inserted_primary_key[0]
        merged = []
    if merged:
        connection.execute(
            update(identities_table)
            .where(identities_table.c.person_id.in_(merged))
            .values(person_id=survivor)
        )
        connection.execute(delete(people_table).where(people_table.c.id.in_(merged)))
    known = {identity for identity, _ in found}
    new = [
        {
            "identity": i.value,
            "kind": i.kind,
            "person_id": survivor,
            "source": source,
            "linked_at": now,
        }
        for i in wanted
        if i.value not in known
    ]
    if new:
        connection.execute(identities_table.insert(), new)
    every = connection.execute(
        select(identities_table.c.identity, identities_table.c.kind).where(
            identities_table.c.person_id == survivor
        )
    ).all()
    name = _display(Identity(value, kind) for value, kind in every)
    connection.execute(update(people_table).where(people_table.c.id == survivor).values(name=name))
    return int(survivor)


def sync_aliases(ledger: LedgerAccess, aliases: Mapping[str, Sequence[str]]) -> int:
    """Link each `[people] aliases` entry (a name and its other names); returns how many."""
    for name, others in aliases.items():
        link(ledger, name, *others, source="alias")
    return len(aliases)


def person_of(ledger: LedgerAccess, identity: str) -> PersonRecord | None:
    """The person `identity` is linked to, with all their identities; None if unlinked."""
    value = normalise(identity).value
    query = select(identities_table.c.person_id).where(identities_table.c.identity == value)
    person_id = ledger.read(lambda c: c.execute(query).scalar(), what="resolve an identity")
    if person_id is None:
        return None
    return _person(ledger, int(person_id))


def identities_of(ledger: LedgerAccess, person_id: int) -> list[Identity]:
    """Every identity linked to the person `person_id`, sorted."""
    found = _person(ledger, person_id)
    return list(found.identities) if found is not None else []


def _person(ledger: LedgerAccess, person_id: int) -> PersonRecord | None:
    def read(connection: Connection) -> PersonRecord | None:
        name = connection.execute(
            select(people_table.c.name).where(people_table.c.id == person_id)
        ).scalar()
        if name is None:
            return None
        found = connection.execute(
            select(identities_table.c.identity, identities_table.c.kind).where(
                identities_table.c.person_id == person_id
            )
        ).all()
        return PersonRecord(person_id, name, tuple(sorted(Identity(v, k) for v, k in found)))

    return ledger.read(read, what="read a person")


@dataclass
class People:
    """The identity table in memory: fold raw identities into people.

    `key(name)` is the person's display name (an email when one is linked), the same string
    for every identity of one person; an identity nobody linked is its own person.
    """

    _key: dict[str, str] = field(default_factory=dict)
    _names: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))

    @classmethod
    def from_groups(cls, groups: Iterable[Iterable[str]]) -> People:
        """A directory of the given groups of names, each group one person (merged if shared)."""
        directory = cls()
        for group in groups:
            directory.add_group(group)
        return directory

    def add_group(self, names: Iterable[str]) -> None:
        """Join `names` (and the people they already belong to) into one person."""
        found = {normalise(name) for name in names if name and name.strip()}
        if not found:
            return
        merged = set(found)
        for identity in found:
            key = self._key.get(identity.value)
            if key is not None:
                merged |= {normalise(n) for n in self._names.pop(key, set())}
        key = _display(merged)
        self._names[key] = {i.value for i in merged}
        for identity in merged:
            self._key[identity.value] = key

    def key(self, name: str | None) -> str:
        """The person `name` is; '' for no name."""
        if not name or not name.strip():
            return ""
        value = normalise(name).value
        return self._key.get(value, value)

    def same(self, a: str | None, b: str | None) -> bool:
        """Whether `a` and `b` name the same person (never for a missing name)."""
        return bool(a and b) and self.key(a) == self.key(b)

    def names(self, name: str) -> set[str]:
        """Every normalised identity of the person `name` is (at least `name` itself)."""
        key = self.key(name)
        return set(self._names.get(key, set())) | {normalise(name).value}

    def __len__(self) -> int:
        return len(self._names)


def directory(
    ledger: LedgerAccess, *, aliases: Mapping[str, Sequence[str]] | None = None
) -> People:
    """The whole identity table as a `People`, with `aliases` (meshagent.toml) laid over it."""
    query = select(identities_table.c.person_id, identities_table.c.identity)
    found = ledger.read(lambda c: c.execute(query).all(), what="read people")
    groups: dict[int, list[str]] = defaultdict(list)
    for person_id, identity in found:
        groups[int(person_id)].append(identity)
    result = People.from_groups(groups.values())
    for name, others in (aliases or {}).items():
        result.add_group([name, *others])
    return result
