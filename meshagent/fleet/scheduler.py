"""The scheduled fleet: every enabled agent's schedule and interval triggers, run by APScheduler.

Job ids come from the agent's name and the trigger's position (``standup-digest#0``), so a
reload replaces jobs instead of adding more. Triggers carry no jitter of APScheduler's: a fire's
scheduled time is its identity (the key of its claim and entry), and the agent's jitter is a
delay applied after the claim. Interval triggers are anchored at a fixed instant, so every
replica computes the same fire times.

Each fire is claimed in the ledger (``meshagent.ledger.claims``): with PostgreSQL, several
replicas share the fleet and exactly one runs each fire. A fire that finds an earlier run of its
agent in progress waits for it until the next fire is due. A fire that starts later than the
grace time, one whose agent is still running when the next is due, one skipped while a failing
agent backs off, and the fires a late-waking replica skipped (APScheduler hands them all over;
they share one entry) are recorded as ``missed`` with the reason: expected, but did not run.
Nothing is skipped silently.

Claiming fires and recording the missed ones is ``meshagent.fleet.claims``; triggers, job ids,
fire times and the counters of /metrics are ``meshagent.fleet.jobs``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import socket
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from apscheduler.executors.asyncio import AsyncIOExecutor
from apscheduler.schedulers.asyncio import AsyncIOScheduler

from meshagent.agentfile.loader import scan_agents
from meshagent.agentfile.spec import AgentSpec, EveryTrigger, ScheduleTrigger
from meshagent.config import Config
from meshagent.fleet.claims import FireClaims
from meshagent.fleet.jobs import ANCHOR, FleetStats, aps_trigger, fires_between, job_id, noop
from meshagent.ledger import claims
from meshagent.runtime.runner import Runtime

__all__ = ["ANCHOR", "Fleet", "FleetStats", "job_id"]

log = logging.getLogger(__name__)


class _FleetExecutor(AsyncIOExecutor):
    """Hands each due job with its scheduled run times to the fleet (APScheduler's executor
    does not tell the job function when it was scheduled)."""

    def __init__(self, fleet: Fleet) -> None:
        super().__init__()
        self.fleet = fleet

    def _do_submit_job(self, job: Any, run_times: list[datetime]) -> None:
        # The fleet owns the task (not _pending_futures, which shutdown() cancels at once):
        # on shutdown, running tasks get their time to finish.
        task = self._eventloop.create_task(self.fleet._fire(job.id, run_times))
        self.fleet._tasks.add(task)

        def done(_: Any) -> None:
            self.fleet._tasks.discard(task)
            self._run_job_success(job.id, [])

        task.add_done_callback(done)


class Fleet(FireClaims):
    """Runs the agents of a directory on their schedules, claims fires, reloads on change."""

    def __init__(
        self,
        config: Config,
        runtime: Runtime,
        *,
        agents_dir: Path | None = None,
        replica: str | None = None,
        clock: Any = None,
    ) -> None:
        self.config = config
        self.settings = config.serve
        self.runtime = runtime
        self.ledger = runtime.ledger
        self.agents_dir = agents_dir or config.agents_dir
        self.replica = replica or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.stats = FleetStats()
        self.specs: dict[str, AgentSpec] = {}
        self.problems: list[str] = []
        self._now = clock or (lambda: datetime.now(UTC))
        self._scheduler: AsyncIOScheduler | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._background: list[asyncio.Task[Any]] = []
        self._mtimes: dict[Path, float] = {}
        self._running: set[str] = set()
        self._triggers: dict[str, str] = {}  # job id -> its trigger, as JSON
        self._to_claim: list[tuple[claims.Fire, asyncio.Future[Any]]] = []
        self._claiming: set[asyncio.Task[None]] = set()
        self._ended: dict[str, asyncio.Event] = {}  # set when a run of the agent ends here
        self._stopping = False
        self.started = False

    # -- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        """Recover dead runs, load the agents, schedule them, record fires missed while down."""
        await asyncio.to_thread(self.ledger.recover)
        self.reload(force=True)
        self._scheduler = AsyncIOScheduler(
            executors={"default": _FleetExecutor(self)},
            # APScheduler's max_instances would drop an overlapping fire with only a log line,
            # and its coalescing would hand over only the latest of the fires due together:
            # the fleet gets them all, and records the ones it does not run (see _handle).
            job_defaults={"coalesce": False, "max_instances": 10_000, "misfire_grace_time": None},
            timezone=UTC,
        )
        self._schedule_all()
        self._stopping = False
        self._scheduler.start()
        self.started = True
        self._background = [
            asyncio.create_task(self._watch(), name="meshagent-reload"),
            asyncio.create_task(self._leases(), name="meshagent-leases"),
        ]
        await self._catch_up()

    async def stop(self, timeout: float | None = None) -> None:
        """Stop new fires; let running tasks finish up to ``timeout``; then interrupt them."""
        timeout = self.settings.shutdown_timeout_seconds if timeout is None else timeout
        self._stopping = True  # fires waiting for an earlier run give up (recorded missed)
        if self._scheduler is not None and self._scheduler.running:
            self._scheduler.shutdown(wait=False)
        pending = list(self._tasks)
        if pending:
            # The leases are renewed meanwhile: the runs finishing here are not dead ones that
            # another replica should close as interrupted.
            log.info("waiting up to %.0fs for %d running tasks", timeout, len(pending))
            _, late = await asyncio.wait(pending, timeout=timeout)
            for task in late:
                task.cancel()
            if late:
                await asyncio.gather(*late, return_exceptions=True)
                log.warning("interrupted %d tasks still running at shutdown", len(late))
        for task in self._background:
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        self._background = []
        self.started = False

    # -- agents -------------------------------------------------------------------------------

    def reload(self, *, force: bool = False) -> bool:
        """Rescan the agents directory when a file changed; keep the last good version of a file
        that no longer loads. Returns True when the fleet changed."""
        files = sorted(self.agents_dir.glob("*.y*ml")) if self.agents_dir.is_dir() else []
        mtimes = {}
        for path in files:
            try:
                mtimes[path] = path.stat().st_mtime_ns
            except OSError:
                continue
        if not force and mtimes == self._mtimes:
            return False
        self._mtimes = mtimes
        if mtimes:
            result = scan_agents(
                list(mtimes),
                registry=self.runtime.registry,  # the runs' own, with the project's MCP tools
                value_tags=self.config.value_tags,
                min_interval_seconds=self.settings.min_interval_seconds,
            )
            found, issues = result.agents, result.issues
        else:
            found, issues = [], []
            log.warning("no agent files in %s", self.agents_dir)
        loaded = {spec.name: spec for spec in found}
        bad_files = {Path(issue.file).resolve() for issue in issues}
        self.problems = [str(issue) for issue in issues]
        for issue in issues:
            log.error("agent file error (the last good version keeps running): %s", issue)
            self.stats.reload_errors += 1
        for name, old in self.specs.items():  # a broken file keeps its last good agent
            source = old.source.resolve() if old.source else None
            if name not in loaded and source in bad_files and source.exists():
                loaded[name] = old
        changed = {n for n in loaded if n not in self.specs or
                   loaded[n].version != self.specs[n].version}  # fmt: skip
        removed = set(self.specs) - set(loaded)
        self.specs = loaded
        if not force:
            self.stats.reloads += 1
        if self._scheduler is not None:
            for name in removed:
                self._unschedule(name)
                log.info("agent %s removed", name)
            for name in changed:
                pending = self._unschedule(name)
                self._schedule(loaded[name], pending)
                log.info("agent %s %s", name, "updated")
        return bool(changed or removed)

    def _schedule_all(self) -> None:
        for spec in self.specs.values():
            self._schedule(spec)

    def _schedule(self, spec: AgentSpec, pending: dict[str, datetime] | None = None) -> None:
        """Add the agent's jobs; ``pending`` keeps the next fire time of an unchanged trigger
        (one that came due while the file was reloaded is then not dropped)."""
        assert self._scheduler is not None
        if not spec.enabled:
            return
        for index, trigger in enumerate(spec.triggers):
            if isinstance(trigger, ScheduleTrigger | EveryTrigger):
                options: dict[str, Any] = {}
                key = trigger.model_dump_json()
                kept = (pending or {}).get(key)
                if kept is not None:
                    options["next_run_time"] = kept
                self._triggers[job_id(spec.name, index)] = key
                self._scheduler.add_job(
                    noop,
                    aps_trigger(trigger),
                    id=job_id(spec.name, index),
                    name=f"{spec.name} ({trigger.describe(self._now())})".replace("\n", ", "),
                    replace_existing=True,
                    **options,
                )

    def _unschedule(self, name: str) -> dict[str, datetime]:
        """Remove the agent's jobs; returns their next fire times by trigger."""
        assert self._scheduler is not None
        pending: dict[str, datetime] = {}
        for job in self._scheduler.get_jobs():
            if job.id.rpartition("#")[0] == name:
                key = self._triggers.pop(job.id, None)
                if job.next_run_time is not None and key is not None:
                    pending[key] = job.next_run_time
                job.remove()
        return pending

    def jobs(self) -> list[tuple[str, datetime | None]]:
        """(job id, next fire time) of every scheduled job."""
        if self._scheduler is None:
            return []
        return [(job.id, job.next_run_time) for job in self._scheduler.get_jobs()]

    # -- fires --------------------------------------------------------------------------------

    async def _fire(
        self,
        job: str,
        run_times: list[datetime],
        *,
        skipped_because: str | None = None,
        older: int = 0,
    ) -> None:
        """Handle the fires of a job that came due together: APScheduler hands them all (the
        fleet does not let it coalesce, which would drop the earlier ones without a word)."""
        name, _, index = job.rpartition("#")
        spec = self.specs.get(name)
        if spec is None or not run_times:
            return
        fires = [time.astimezone(UTC) for time in run_times]
        try:
            await self._handle(spec, int(index), fires, skipped_because, older)
        except Exception:  # a failing agent never stops the others
            log.exception("fire of %s at %s failed", name, fires[-1].isoformat())

    async def _handle(
        self,
        spec: AgentSpec,
        index: int,
        fires: list[datetime],
        skipped_because: str | None = None,
        older: int = 0,
    ) -> None:
        """Run the latest of ``fires`` (or record it missed, with the reason); the earlier ones,
        skipped, share one missed entry (with ``older`` fires before them, only counted)."""
        fire_time = fires[-1]
        now = self._now()
        lag = (now - fire_time).total_seconds()
        self.stats.lag_seconds_last = lag
        self.stats.lag_seconds_sum += max(lag, 0.0)
        self.stats.lag_count += 1
        grace = self.settings.misfire_grace_seconds
        if lag > grace:  # all of them missed: one entry, at the latest
            reason = f"started {lag:.0f}s late, beyond the grace time of {grace:g}s"
            await asyncio.to_thread(self._claim_missed, spec, fires, reason, older)
            return
        if len(fires) > 1 or older:
            reason = skipped_because or (
                f"this replica's scheduler woke {(now - fires[0]).total_seconds():.1f}s after "
                f"the fire at {fires[0].isoformat()} was due (its event loop was busy): it ran "
                f"only the latest fire due by then, at {fire_time.isoformat()}"
            )
            await asyncio.to_thread(self._claim_missed, spec, fires[:-1], reason, older)
        claimed = await self._claim(spec, fire_time)
        if not claimed.won:
            self.stats.claims_lost += 1
            return
        self.stats.claims_won += 1
        run_id = claimed.run_id
        assert run_id is not None
        if claimed.missed is not None:
            self._missed(spec, fire_time, claimed.missed)
            return
        if claimed.waits_for is not None:
            reason = await self._wait_turn(spec, index, fire_time, claimed.waits_for)
            if reason is None:
                reason = await asyncio.to_thread(self._backoff_reason, spec.name, run_id)
            if reason is not None:
                await asyncio.to_thread(self._close_missed, spec, run_id, fire_time, reason)
                return
        await self._run(spec, index, fire_time, run_id)

    async def _run(self, spec: AgentSpec, index: int, fire_time: datetime, run_id: str) -> None:
        trigger = spec.triggers[index]
        jitter = getattr(trigger, "jitter", None)
        self._running.add(spec.name)
        try:
            if jitter:
                await asyncio.sleep(random.uniform(0, jitter))
            try:
                result = await self.runtime.run(
                    spec,
                    trigger="schedule",
                    scheduled_for=fire_time,
                    idempotency_key=claims.fire_key(spec.name, fire_time),
                )
            except Exception as exc:  # refused before it started (a missing key), or a bug
                await asyncio.to_thread(self._close_refused, spec, run_id, fire_time, exc)
                return
            self._count(spec.name, result)
        finally:
            self._running.discard(spec.name)
            await asyncio.to_thread(claims.finish, self.ledger, [(spec.name, fire_time)])
            ended = self._ended.pop(spec.name, None)
            if ended is not None:
                ended.set()

    async def _catch_up(self) -> None:
        """Fires due while no replica ran: the latest is run (or recorded missed when it is
        beyond the grace time), the earlier ones share one missed entry."""
        now = self._now()
        for spec in list(self.specs.values()):
            if not spec.enabled:
                continue
            last = await asyncio.to_thread(self.ledger.last_scheduled_for, spec.name)
            if last is None:
                continue  # never scheduled before: nothing was expected yet
            for index, trigger in enumerate(spec.triggers):
                if not isinstance(trigger, ScheduleTrigger | EveryTrigger):
                    continue
                older, due = fires_between(trigger, last, now)
                if due:
                    await self._fire(
                        job_id(spec.name, index),
                        due,
                        skipped_because=f"due before replica {self.replica} started, and "
                        f"claimed by no replica when it caught up at {now.isoformat()}",
                        older=older,
                    )

    def _count(self, agent: str, result: Any) -> None:
        from meshagent.runtime.view import run_line

        log.info("%s", run_line(result))  # one line per finished run
        self.stats.runs[(agent, result.status)] += 1
        usage = result.usage
        for kind in ("input_tokens", "cache_read_tokens", "cache_write_tokens",
                     "output_tokens", "reasoning_tokens"):  # fmt: skip
            self.stats.tokens[(agent, kind.removesuffix("_tokens"))] += getattr(usage, kind)
        if result.cost_usd is not None:
            self.stats.cost[agent] = self.stats.cost.get(agent, Decimal(0)) + result.cost_usd

    # -- background loops -----------------------------------------------------------------------

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self.settings.reload_seconds)
            try:
                await asyncio.to_thread(self._reload_files)
            except Exception:
                log.exception("reloading the agents failed; the last good fleet keeps running")

    def _reload_files(self) -> None:
        if self.reload() and self._scheduler is not None:
            log.info("fleet reloaded: %d agents", len(self.specs))

    async def _leases(self) -> None:
        # A thread of their own: behind a burst of claims in the shared pool, a renewal came
        # late, and the other replicas closed this one's running runs as interrupted.
        period = max(0.2, self.settings.claim_lease_seconds / 3)
        loop = asyncio.get_running_loop()
        # Closing expired runs waits for the ledger's chain like any close: in another task.
        own = ThreadPoolExecutor(1, thread_name_prefix="meshagent-leases")
        expiring: asyncio.Task[None] | None = None
        try:
            while True:
                await asyncio.sleep(period)
                try:
                    await loop.run_in_executor(own, self._renew)
                except Exception:
                    log.exception("renewing claims failed; retrying")
                if expiring is None or expiring.done():
                    expiring = asyncio.create_task(self._expire())
        finally:
            own.shutdown(wait=False)
            if expiring is not None:
                expiring.cancel()

    def _renew(self) -> None:
        claims.renew(self.ledger, self.replica, self.settings.claim_lease_seconds)

    async def _expire(self) -> None:
        try:
            for run_id in await asyncio.to_thread(claims.expire, self.ledger):
                log.warning("run %s interrupted: its replica stopped", run_id)
        except Exception:
            log.exception("closing the runs of expired claims failed; retrying")
