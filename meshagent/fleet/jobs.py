"""What the fleet's schedule is built on: job ids, APScheduler triggers (interval triggers
anchored at ANCHOR, so that every replica computes the same fire times), the fire times between two
moments, and the counters a replica keeps for /metrics.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from apscheduler.triggers.interval import IntervalTrigger

from meshagent.agentfile.spec import ScheduleTrigger

__all__ = [
    "ANCHOR",
    "MAX_COALESCED",
    "FleetStats",
    "aps_trigger",
    "fires_between",
    "job_id",
    "next_fire",
    "noop",
]

#: Interval triggers count from here, so replicas started at different times agree.
ANCHOR = datetime(2024, 1, 1, tzinfo=UTC)
#: Skipped fires claimed one by one at most; older ones are only counted in the reason.
MAX_COALESCED = 10_000


def job_id(agent: str, index: int) -> str:
    return f"{agent}#{index}"


def aps_trigger(spec: Any) -> Any:
    if isinstance(spec, ScheduleTrigger):
        return spec.cron.trigger(spec.timezone)
    return IntervalTrigger(seconds=spec.interval.total_seconds(), start_date=ANCHOR, timezone=UTC)


@dataclass
class FleetStats:
    """Counters for /metrics: what this replica ran, spent and claimed."""

    runs: Counter[tuple[str, str]] = field(default_factory=Counter)  # (agent, status)
    tokens: Counter[tuple[str, str]] = field(default_factory=Counter)  # (agent, kind)
    cost: dict[str, Decimal] = field(default_factory=dict)
    claims_won: int = 0
    claims_lost: int = 0
    lag_seconds_last: float = 0.0
    lag_seconds_sum: float = 0.0
    lag_count: int = 0
    reloads: int = 0
    reload_errors: int = 0


async def noop() -> None:  # jobs are run by _FleetExecutor, never called
    return None


def fires_between(trigger: Any, after: datetime, until: datetime) -> tuple[int, list[datetime]]:
    """Fire times in (after, until]: how many older ones there were beyond the last
    ``MAX_COALESCED``, and those."""
    aps = aps_trigger(trigger)
    fires: list[datetime] = []
    older = 0
    fire = aps.get_next_fire_time(None, after + timedelta(microseconds=1))
    while fire is not None and fire <= until:
        fires.append(fire)
        if len(fires) > 2 * MAX_COALESCED:
            older += len(fires) - MAX_COALESCED
            fires = fires[-MAX_COALESCED:]
        fire = aps.get_next_fire_time(fire, fire + timedelta(microseconds=1))
    older += max(0, len(fires) - MAX_COALESCED)
    return older, fires[-MAX_COALESCED:]


def next_fire(trigger: Any, after: datetime) -> datetime | None:
    """The trigger's first fire time after ``after``."""
    return aps_trigger(trigger).get_next_fire_time(after, after + timedelta(microseconds=1))
