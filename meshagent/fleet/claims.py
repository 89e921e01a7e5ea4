"""How the fleet claims its fires in the ledger (``meshagent.ledger.claims``) and records the
ones that do not run: the fires due in one moment are claimed together, a fire whose agent's
earlier run is still in progress waits for its turn, a crash-looping agent backs off, and a fire
that will not run is closed as ``missed`` with the reason.

``FireClaims`` is part of ``meshagent.fleet.scheduler.Fleet``, split out by what it does; it uses
the fleet's ledger, settings, replica name, clock and counters.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from meshagent.agentfile.spec import AgentSpec
from meshagent.config import Config, ServeSettings
from meshagent.exceptions import LedgerError, MeshAgentError
from meshagent.fleet.jobs import MAX_COALESCED, FleetStats, next_fire
from meshagent.ledger import claims
from meshagent.ledger.store import Ledger
from meshagent.runtime.model_calls import plain
from meshagent.runtime.runner import entry_facts

__all__ = ["FireClaims"]

log = logging.getLogger("meshagent.fleet.scheduler")

_MAX_BACKOFF = timedelta(hours=1)
#: How often a fire waiting for its agent's earlier run looks whether that run ended.
_POLL_SECONDS = 0.2
#: Fires claimed in one transaction at most.
_MAX_BURST = 1_000


class FireClaims:
    """The fleet's claims of fires: claimed in bursts, waited for, closed as missed or failed."""

    # The fleet's own, set by Fleet.__init__.
    config: Config
    settings: ServeSettings
    ledger: Ledger
    replica: str
    stats: FleetStats
    _now: Callable[[], datetime]
    _to_claim: list[tuple[claims.Fire, asyncio.Future[Any]]]
    _claiming: set[asyncio.Task[None]]
    _ended: dict[str, asyncio.Event]
    _stopping: bool

    async def _wait_turn(
        self, spec: AgentSpec, index: int, fire_time: datetime, holder: claims.Holder
    ) -> str | None:
        """Wait for the earlier run of the agent to end, until the trigger's next fire is due
        (or the grace time ends); returns why this fire cannot run, or None when it can.

        A run that ends a moment after the next fire was due does not cost that fire; one
        that lasts longer than the interval still does, so fires never queue up."""
        upcoming = next_fire(spec.triggers[index], fire_time)
        grace_end = fire_time + timedelta(seconds=self.settings.misfire_grace_seconds)
        deadline = min(upcoming, grace_end) if upcoming is not None else grace_end
        current = holder
        while True:
            if self._stopping:
                return f"this replica was stopping while the fire waited for {current.describe()}"
            remaining = (deadline - self._now()).total_seconds()
            if remaining > 0:
                ended = self._ended.setdefault(spec.name, asyncio.Event())
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(ended.wait(), min(remaining, _POLL_SECONDS))
            asked = self._now()  # what the ledger answers is true from this moment on
            found = await asyncio.to_thread(claims.holders, self.ledger, spec.name, fire_time)
            # Later fires claimed meanwhile wait for this one (or for the same run): not a hold.
            earlier = [h for h in found if h.fire_time < fire_time]
            if not earlier:
                return None
            current = earlier[0]
            if asked >= deadline:  # still running when the next fire was due: that one waits
                held = current.describe()  # running, or itself waiting for an earlier run
                return f"the previous fire of this agent was still in progress: {held}"

    async def _claim(self, spec: AgentSpec, fire_time: datetime) -> claims.Claim:
        """Claim a fire together with the others that came due in the same moment: one
        transaction and one thread for a whole burst, not one each (a thousand agents due at
        9:00 queued behind the thread pool, and a fire claimed seconds late found the agent's
        next fire already running)."""
        fire = claims.Fire(
            spec.name,
            fire_time,
            self._entry(spec, fire_time),
            hold=lambda: self._backoff_reason(spec.name),
        )
        claimed: asyncio.Future[claims.Claim] = asyncio.get_running_loop().create_future()
        self._to_claim.append((fire, claimed))
        if len(self._to_claim) == 1:  # the first of a burst: claim after the others joined
            asyncio.get_running_loop().call_soon(self._claim_burst)
        return await claimed

    def _claim_burst(self) -> None:
        burst, self._to_claim = self._to_claim, []
        for start in range(0, len(burst), _MAX_BURST):
            task = asyncio.create_task(self._claim_all(burst[start : start + _MAX_BURST]))
            self._claiming.add(task)
            task.add_done_callback(self._claiming.discard)

    async def _claim_all(self, burst: list[tuple[claims.Fire, asyncio.Future[Any]]]) -> None:
        fires = [fire for fire, _ in burst]
        try:
            found = await asyncio.to_thread(
                claims.claim_all,
                self.ledger,
                fires,
                replica=self.replica,
                lease_seconds=self.settings.claim_lease_seconds,
            )
        except Exception as exc:
            for _, claimed in burst:
                if not claimed.done():
                    claimed.set_exception(exc)
            return
        for (_, claimed), result in zip(burst, found, strict=True):
            if not claimed.done():
                claimed.set_result(result)

    def _entry(self, spec: AgentSpec, fire_time: datetime) -> dict[str, Any]:
        return self.ledger.entry_values(
            spec.name,
            **entry_facts(spec, spec.model or self.config.default_model),
            trigger_kind="schedule",
            scheduled_for=fire_time,
            idempotency_key=claims.fire_key(spec.name, fire_time),
        )

    def _claim_missed(
        self, spec: AgentSpec, fires: list[datetime], reason: str, older: int = 0
    ) -> None:
        """Claim fires that will not run; the ones won become one missed entry, at the latest.
        ``older`` fires before them are counted in its reason, not claimed one by one."""
        older += max(0, len(fires) - MAX_COALESCED)
        fires = fires[-MAX_COALESCED:]

        def why(won: list[datetime]) -> str:
            earlier = len(won) - 1 + older
            if earlier:
                return f"{reason} ({earlier} earlier fires coalesced into this one)"
            return reason

        if not fires:
            return
        won, _ = claims.claim_missed(
            self.ledger,
            agent=spec.name,
            fire_times=fires,
            replica=self.replica,
            entry=lambda fire: self._entry(spec, fire),
            reason=why,
        )
        self.stats.claims_won += len(won)
        self.stats.claims_lost += len(fires) - len(won)
        if won:
            self._missed(spec, won[-1], why(won))

    def _missed(self, spec: AgentSpec, fire_time: datetime, reason: str) -> None:
        log.warning("agent %s missed its fire at %s: %s", spec.name, fire_time.isoformat(), reason)
        self.stats.runs[(spec.name, "missed")] += 1

    def _close_missed(self, spec: AgentSpec, run_id: str, fire_time: datetime, reason: str) -> None:
        """Close a claimed fire that did not run as missed, with its claim, in one transaction."""
        try:
            claims.close_missed(
                self.ledger, agent=spec.name, fire_time=fire_time, run_id=run_id, reason=reason
            )
        except LedgerError as closing:
            # Closed already, as interrupted, by another replica whose expiry found this one's
            # lease run out (a replica too busy to renew in time).
            log.warning("agent %s: its entry stays as it is: %s", spec.name, closing)
            return
        self._missed(spec, fire_time, reason)

    def _close_refused(
        self, spec: AgentSpec, run_id: str, fire_time: datetime, exc: Exception
    ) -> None:
        """Close the claimed entry of a fire whose run raised instead of returning: refused
        before it began (its entry then stays running forever otherwise), or MeshAgent's bug."""
        when = fire_time.isoformat()
        if isinstance(exc, MeshAgentError):
            log.warning("agent %s could not run its fire at %s: %s", spec.name, when, exc)
        else:
            log.error("the run of %s's fire at %s failed", spec.name, when, exc_info=exc)
        try:
            self.ledger.close_run(run_id, "failed", error=plain(exc)[:2000])
        except LedgerError as closing:  # closed already: by the run itself, or by an expiry
            log.warning("agent %s: its entry stays as it is: %s", spec.name, closing)
            return
        self.stats.runs[(spec.name, "failed")] += 1

    def _backoff_reason(self, agent: str, run_id: str | None = None) -> str | None:
        """Why a crash-looping agent waits, or None: after N failures in a row, wait 1 min,
        doubling per further failure, up to an hour."""
        limit = self.settings.backoff_after_failures
        recent = self.ledger.recent_statuses(agent, limit=limit + 6, exclude=run_id)
        failures = 0
        last_failure: datetime | None = None
        for status, finished in recent:
            if status == "missed":
                continue
            if status != "failed":
                break
            failures += 1
            last_failure = last_failure or finished
        if failures < limit or last_failure is None:
            return None
        wait = min(timedelta(minutes=2 ** (failures - limit)), _MAX_BACKOFF)
        until = last_failure + wait
        if self._now() >= until:
            return None
        return (
            f"backing off after {failures} failed runs in a row: next try after "
            f"{until.isoformat(timespec='seconds')}"
        )
