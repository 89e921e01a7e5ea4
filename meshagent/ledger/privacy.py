"""Privacy by default: nobody in a small team can be singled out through a grouped report.

For a viewer who is not an admin, the entries of every team with fewer than `min_group_size`
distinct people are only ever counted in "other", whatever the grouping; any group with fewer
people joins them, and if "other" is still too small the smallest groups join it until it is big
enough (or everything is withheld). Rows per person go only to that person, or to admins.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

__all__ = ["OTHER", "Cell", "Folded", "fold", "group_cells", "is_admin"]

OTHER = "other"


class PrivacyLike(Protocol):
    min_group_size: int
    admins: tuple[str, ...] | list[str]


@dataclass
class Group:
    """Sums and the distinct people behind them."""

    sums: dict[str, Any] = field(default_factory=dict)
    people: set[str] = field(default_factory=set)

    def add(self, person: str, sums: dict[str, Any]) -> None:
        self.people.add(person)
        for name, value in sums.items():
            self.sums[name] = self.sums.get(name, 0) + value

    def absorb(self, other: Group) -> None:
        for person in other.people:
            self.people.add(person)
        for name, value in other.sums.items():
            self.sums[name] = self.sums.get(name, 0) + value


@dataclass
class Folded:
    groups: dict[str, Group]
    folded: int = 0
    withheld: bool = False


# A cell is (team, group value, person, sums) from the daily rollups.
Cell = tuple[str, str, str, dict[str, Any]]


def is_admin(viewer: str | None, privacy: PrivacyLike) -> bool:
    return viewer is not None and viewer in tuple(privacy.admins)


def fold(cells: Iterable[Cell], *, by: str, viewer: str | None, privacy: PrivacyLike) -> Folded:
    """The groups `viewer` may see; see the module docstring for the rules."""
    cells = list(cells)
    if is_admin(viewer, privacy):
        return Folded(group_cells(cells))
    if by == "owner":
        mine = [cell for cell in cells if viewer is not None and cell[1] == viewer]
        return Folded(group_cells(mine), folded=len({cell[1] for cell in cells} - {viewer}))
    k = privacy.min_group_size
    team_people: dict[str, set[str]] = defaultdict(set)
    for team, _, person, _ in cells:
        team_people[team].add(person)
    small = {team for team, people in team_people.items() if len(people) < k}
    other = Group()
    for team, _, person, sums in cells:
        if team in small:
            other.add(person, sums)
    groups = group_cells(cell for cell in cells if cell[0] not in small)
    folded = len({cell[1] for cell in cells if cell[0] in small} - set(groups))
    for name in [name for name, group in groups.items() if len(group.people) < k]:
        other.absorb(groups.pop(name))
        folded += 1
    while other.people and len(other.people) < k and groups:
        name = min(groups, key=lambda n: (len(groups[n].people), n))
        other.absorb(groups.pop(name))
        folded += 1
    if other.people and len(other.people) < k:
        return Folded({}, folded=folded, withheld=True)
    if other.people:
        groups[OTHER] = other
    return Folded(groups, folded=folded)


def group_cells(cells: Iterable[Cell]) -> dict[str, Group]:
    """The cells summed per group name, with the distinct people behind each."""
    groups: dict[str, Group] = defaultdict(Group)
    for _, name, person, sums in cells:
        groups[name].add(person, sums)
    return dict(groups)
