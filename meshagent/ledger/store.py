"""The Ledger: open a database, then open, account and close one entry per task.

Every method that returns has committed, and a crash of this process loses nothing committed.
What reaches the disk when depends on the database (`engine`): on PostgreSQL, and on SQLite
with ``?sync=full``, an entry's opening (`open_run`) does not wait for the disk, and what a run
spends (`record_usage`) and its close do, making its opening durable with them (a database
recovers its log in order, `engine.write_transaction`): a power cut or a crash of the database
server can lose only the entries of runs that had recorded nothing yet. On SQLite by default
(``sync=normal``) no commit waits and the log reaches the disk half a second later at most: a
power cut may lose the last half second of writes. A run whose model answered writes that
answer's tokens before it does anything more. Writes retry with backoff while the database is
locked or restarting, and are idempotent, so a retry after a commit whose answer was lost does
not count twice.
"""

from __future__ import annotations

import inspect
import threading
import uuid
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, func, select, text
from sqlalchemy.exc import DBAPIError

from meshagent.config import default_ledger_url, mask_url
from meshagent.exceptions import LedgerError
from meshagent.ledger import annotate, budget, chain, lifecycle, rows
from meshagent.ledger.engine import executemany, make_engine, retrying, write_transaction
from meshagent.ledger.group import GroupCommit
from meshagent.ledger.migrate import migrate_engine
from meshagent.ledger.records import (
    PROMPT_SHARE,
    Cost,
    Event,
    Outcome,
    RunRecord,
    Usage,
    prompt_share_of,
)
from meshagent.ledger.schema import entries
from meshagent.ledger.schema import events as events_table
from meshagent.ledger.schema import outcomes as outcomes_table

__all__ = ["Ledger", "migrate"]

T = TypeVar("T")


class Ledger:
    """Append-only record of every task: usage, cost, outcomes, feedback; hash-chained."""

    def __init__(self, engine: Engine, url: str, *, retry_for: float = 30.0) -> None:
        self.engine = engine
        self.url = url
        self.retry_for = retry_for
        self._totals: dict[str, rows.RunningTotals] = {}
        # Entries this process opened and has not closed, as last written: closing them needs
        # no read back, and the close writes the whole row, so the row is what was hashed.
        self._rows: dict[str, dict[str, Any]] = {}
        self._group: GroupCommit | None = None
        self._yield_to: tuple[threading.Event, float] | None = None
        self._lock = threading.Lock()

    @classmethod
    def open(
        cls,
        url: str | None = None,
        *,
        migrate: bool = True,
        retry_for: float = 30.0,
        busy_timeout: float = 5.0,
    ) -> Ledger:
        """Connect to `url` (default: SQLite in the user data directory) and migrate it."""
        url = url or default_ledger_url()
        ledger = cls(make_engine(url, busy_timeout=busy_timeout), url, retry_for=retry_for)
        try:
            with ledger.engine.connect() as connection:
                connection.execute(text("SELECT 1"))
        except DBAPIError as exc:
            ledger.engine.dispose()
            reason = str(exc.orig).strip().splitlines()[0] if str(exc.orig).strip() else "failed"
            raise LedgerError(
                f"cannot open the ledger at {mask_url(url)}: {reason}; check that the database "
                "server is running and reachable and that the URL's host, port, database, "
                "user and password are right"
            ) from None
        if migrate:
            ledger.migrate()
        return ledger

    def migrate(self) -> tuple[str | None, str | None]:
        """Bring the schema to the newest revision; returns (revision before, revision after)."""
        return retrying(
            lambda: migrate_engine(self.engine),
            deadline=self.retry_for,
            what="migrate",
            url=self.url,
        )

    def close(self) -> None:
        """Commit the writes still queued, then let go of the database."""
        with self._lock:
            group, self._group = self._group, None
        if group is not None:
            group.close()
        self.engine.dispose()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def transact(self, work: Callable[[Connection], T], *, what: str, durable: bool = True) -> T:
        """Run `work` in one write transaction, retried while the database is unavailable.

        With ``durable=False`` the commit does not wait for the disk (`write_transaction`).
        """

        def attempt() -> T:
            with write_transaction(self.engine, durable=durable) as connection:
                return work(connection)

        return retrying(attempt, deadline=self.retry_for, what=what, url=self.url)

    def read(self, work: Callable[[Connection], T], *, what: str = "read") -> T:
        """Run `work` on a read connection, retried while the database is unavailable."""

        def attempt() -> T:
            with self.engine.connect() as connection:
                return work(connection)

        return retrying(attempt, deadline=self.retry_for, what=what, url=self.url)

    # -- the life of an entry ---------------------------------------------------------------

    def open_run(self, agent: str, **options: Any) -> str:
        """Open the entry of a task before anything is spent; returns its run id.

        `options` are the entry's columns as `entry_values` takes them (version, owner, team,
        value_tag, minutes_saved, trigger_kind, triggered_by, scheduled_for, started_at,
        provider, model_requested, input_hash, run_id, idempotency_key). With an
        `idempotency_key` already recorded, returns that entry's run id instead. The commit does
        not wait for the disk: the run's first write of its spending (or its close) does, and
        makes the opening durable with it (see the module's note).
        """
        values = self.entry_values(agent, **options)
        step = lifecycle.open_step(values, options.get("idempotency_key"))
        return self._opened(values, self._write(step, what="open a run", durable=False))

    async def aopen_run(self, agent: str, **options: Any) -> str:
        """`open_run` for asyncio tasks: committed with the other runs' writes of the moment.

        Returns once the entry is committed, like `open_run` (without waiting for the disk when
        no write in its transaction needs to); the event loop is never blocked.
        """
        values = self.entry_values(agent, **options)
        step = lifecycle.open_step(values, options.get("idempotency_key"))
        opened = await self.group_commit().write(step, what="open a run", durable=False)
        return self._opened(values, opened)

    @staticmethod
    def entry_values(
        agent: str,
        *,
        version: str | None = None,
        owner: str | None = None,
        team: str | None = None,
        value_tag: str | None = None,
        minutes_saved: Decimal | float | int | None = None,
        trigger_kind: str = "api",
        triggered_by: str | None = None,
        scheduled_for: datetime | None = None,
        started_at: datetime | None = None,
        provider: str | None = None,
        model_requested: str | None = None,
        input_hash: str | None = None,
        run_id: str | None = None,
        idempotency_key: str | None = None,
    ) -> dict[str, Any]:
        """The columns of a new running entry (for open_run, and for claims that open one)."""
        run_id = run_id or str(uuid.uuid4())
        return {
            "run_id": run_id,
            "idempotency_key": idempotency_key,
            "process": rows.process_id(),
            "agent": agent,
            "agent_version": version,
            "owner": owner,
            "team": team,
            "trigger_kind": rows.check_trigger(trigger_kind),
            "triggered_by": triggered_by,
            "scheduled_for": scheduled_for,
            "started_at": started_at or rows.now(),
            "status": "running",
            "provider": provider,
            "model_requested": model_requested,
            "value_tag": value_tag,
            "minutes_saved": minutes_saved,
            "input_hash": input_hash,
            **rows.RunningTotals().columns(),
        }

    def record_usage(
        self,
        run_id: str,
        usage: Usage | None = None,
        *,
        cost: Cost | None = None,
        model_answered: str | None = None,
        release_reservations: bool = False,
    ) -> None:
        """Add what a run just spent (`cost=None` with tokens: the price is unknown).

        With `release_reservations`, the run's budget reservations go in the same transaction:
        the spending written is what its calls had reserved (`meshagent.ledger.budget`).
        """
        step = self._usage_step(run_id, usage, cost, model_answered, release_reservations)
        self._write(step, what="record usage")

    async def arecord_usage(self, run_id: str, usage: Usage | None = None, **options: Any) -> None:
        """`record_usage` for asyncio tasks, group-committed; returns once it is durable.

        `options` are record_usage's: cost, model_answered, release_reservations.
        """
        step = self._usage_step(run_id, usage, **options)
        await self.group_commit().write(step, what="record usage")

    def close_run(
        self,
        run_id: str,
        status: str,
        *,
        usage: Usage | None = None,
        cost: Cost | None = None,
        model_answered: str | None = None,
        error: str | None = None,
        finished_at: datetime | None = None,
        outcomes: Iterable[Outcome] = (),
        input_hash: str | None = None,
        events: Iterable[Event] = (),
        release_reservations: bool = False,
    ) -> None:
        """Close the entry with its final status and chain it; it is never updated again.

        `usage` and `cost` are the last spending, added as `record_usage` would. `input_hash`
        (the hash of the context the run read) is set here when it was not known at open_run.
        `outcomes` and `events` are added in the same transaction, and with
        `release_reservations` the run's budget reservations are dropped in it.
        """
        step = self._close_step(
            run_id,
            status,
            usage=usage,
            cost=cost,
            model_answered=model_answered,
            error=error,
            finished_at=finished_at,
            outcomes=outcomes,
            input_hash=input_hash,
            events=events,
            release_reservations=release_reservations,
        )
        self._write(step, what="close a run")
        self._forget(run_id)

    async def aclose_run(self, run_id: str, status: str, **options: Any) -> None:
        """`close_run` for asyncio tasks, group-committed; returns once it is durable."""
        step = self._close_step(run_id, status, **options)
        await self.group_commit().write(step, what="close a run")
        self._forget(run_id)

    def write_records(self, records: Sequence[RunRecord]) -> list[str]:
        """Record finished runs in one transaction; returns their run ids once durable."""
        from meshagent.ledger.batch import write_records

        return write_records(self, records)

    def add_outcome(
        self, run_id: str, kind: str, ref: str, url: str | None = None, **reach: Any
    ) -> None:
        """Record something the run produced; allowed after close (an outcome is a new row).

        `reach` is Outcome's reach fields: audience, audience_size, reaches_others, reach_detail.
        """
        annotate.add_outcome(self, run_id, Outcome(kind, ref, url, **reach))

    async def aadd_outcome(
        self, run_id: str, outcome: Outcome | Callable[[Connection], Outcome]
    ) -> bool:
        """`add_outcome` for asyncio tasks, group-committed; returns once it is durable, True
        when the outcome was added (False: the run already had it).

        `outcome` may be a function of the connection, called in the transaction to read what
        the outcome depends on (who a person is): a burst of answers is written in a few
        transactions, with no thread of its own and no transaction each.
        """
        step = annotate.outcome_step(run_id, outcome)
        return await self.group_commit().write(step, what="add an outcome")

    def set_verdict(
        self,
        outcome_id: int,
        verdict: str,
        evidence: Iterable[Any] = (),
        checked_at: datetime | None = None,
        *,
        next_check_at: datetime | None = None,
    ) -> None:
        """Record what the follow-up pass read back about an outcome (`ledger.verdicts`)."""
        from meshagent.ledger.verdicts import set_verdict

        set_verdict(self, outcome_id, verdict, evidence, checked_at, next_check_at=next_check_at)

    # Record `person`'s +1/-1 on a run: (run_id, person, vote, *, comment=None, at=None).
    add_feedback = annotate.add_feedback

    def add_events(self, run_id: str, events: Iterable[Event]) -> None:
        """Record steps of a run (tool calls, refusals); allowed before and after close."""
        values = lifecycle.event_rows(run_id, list(events))
        if values:
            self.transact(
                lambda connection: executemany(connection, events_table.insert(), values),
                what="record run events",
            )

    def events(self, run_id: str) -> list[Event]:
        """The recorded steps of a run, in order (tool calls, refusals, failures)."""
        query = (
            select(
                events_table.c.kind, events_table.c.name, events_table.c.detail, events_table.c.at
            )
            .where(events_table.c.run_id == run_id, events_table.c.kind != PROMPT_SHARE)
            .order_by(events_table.c.id)
        )
        found = self.read(lambda c: c.execute(query).all(), what="read run events")
        return [Event(kind, name, detail, at) for kind, name, detail, at in found]

    def prompt_share(self, run_id: str) -> dict[str, int] | None:
        """What of the run's prompts the framework wrote, in estimated tokens (``tokens``,
        ``headings``, ``tool_schemas``, ``tool_notes``, ``model_calls``); None for a run that
        made no model call or was recorded before it was kept."""
        query = select(events_table.c.detail).where(
            events_table.c.run_id == run_id, events_table.c.kind == PROMPT_SHARE
        )
        found = self.read(lambda c: c.execute(query).scalar(), what="read run events")
        return prompt_share_of(found)

    def outcomes(self, run_id: str) -> list[Outcome]:
        """What a run produced, in the order recorded."""
        query = (
            select(outcomes_table.c.kind, outcomes_table.c.ref, outcomes_table.c.url)
            .where(outcomes_table.c.run_id == run_id)
            .order_by(outcomes_table.c.id)
        )
        found = self.read(lambda c: c.execute(query).all(), what="read outcomes")
        return [Outcome(kind, ref, url) for kind, ref, url in found]

    def recent_statuses(
        self, agent: str, *, limit: int = 10, exclude: str | None = None
    ) -> list[tuple[str, datetime | None]]:
        """(status, finished_at) of ``agent``'s latest closed entries, newest first."""
        query = (
            select(entries.c.status, entries.c.finished_at)
            .where(entries.c.agent == agent, entries.c.status != "running")
            .order_by(entries.c.started_at.desc(), entries.c.id.desc())
            .limit(limit)
        )
        if exclude is not None:
            query = query.where(entries.c.run_id != exclude)
        return [tuple(row) for row in self.read(lambda c: c.execute(query).all())]

    def last_scheduled_for(self, agent: str) -> datetime | None:
        """The latest scheduled fire time ``agent`` has an entry for."""
        query = select(func.max(entries.c.scheduled_for)).where(entries.c.agent == agent)
        return self.read(lambda c: c.execute(query).scalar(), what="read the last fire")

    def run_of_outcome(self, ref: str, kind: str | None = None) -> str | None:
        """The run that produced the outcome ``ref`` (e.g. a Slack ``channel:ts``), or None."""
        query = select(outcomes_table.c.run_id).where(outcomes_table.c.ref == ref)
        if kind is not None:
            query = query.where(outcomes_table.c.kind == kind)
        return self.read(lambda c: c.execute(query.limit(1)).scalar(), what="find a run")

    def entry(self, run_id: str) -> dict[str, Any] | None:
        """The entry of a run as a mapping of its columns, or None."""
        query = select(entries).where(entries.c.run_id == run_id)
        found = self.read(lambda c: c.execute(query).mappings().one_or_none(), what="read a run")
        return dict(found) if found is not None else None

    def last_ok_input_hash(self, agent: str) -> str | None:
        """The input hash of ``agent``'s latest ok run, for skip_if_unchanged."""
        query = (
            select(entries.c.input_hash)
            .where(entries.c.agent == agent, entries.c.status == "ok")
            .order_by(entries.c.finished_at.desc(), entries.c.id.desc())
            .limit(1)
        )
        return self.read(lambda c: c.execute(query).scalar(), what="read the last run")

    def recover(self, *, older_than: timedelta | None = None) -> list[str]:
        """Close as `interrupted` the entries a dead process left running; returns their ids.

        Without `older_than`, only entries of dead processes on this host; with it, also any
        entry running longer than that (for replicas on other hosts).
        """
        from meshagent.ledger.recovery import recover

        return recover(self, older_than=older_than)

    def verify(self) -> chain.VerifyResult:
        """Walk the hash chain and name the first entry changed, deleted or out of order."""
        return self.read(chain.verify_chain, what="verify the chain")

    def count(self) -> int:
        return self.read(lambda c: c.execute(select(func.count()).select_from(entries)).scalar())

    def group_commit(self) -> GroupCommit:
        """The writer that commits the async methods' writes together (started on first use)."""
        with self._lock:
            if self._group is None:
                self._group = GroupCommit(self)
                if self._yield_to is not None:
                    self._group.yield_to(self._yield_to[0], max_wait=self._yield_to[1])
            return self._group

    def yield_writes_to(self, idle: threading.Event, *, max_wait: float) -> None:
        """Let the group commit's writes wait while ``idle`` is clear (requests being answered
        on an event loop beside it), for at most ``max_wait`` seconds: `GroupCommit.yield_to`."""
        with self._lock:
            self._yield_to = (idle, max_wait)
            if self._group is not None:
                self._group.yield_to(idle, max_wait=max_wait)

    # -- helpers ----------------------------------------------------------------------------

    def _write(self, step: lifecycle.Step[T], *, what: str, durable: bool = True) -> T:
        """Run one step in its own transaction."""
        return self.transact(
            lambda c: lifecycle.run_steps(c, [step])[0], what=what, durable=durable
        )

    def _opened(self, values: dict[str, Any], result: tuple[str, bool]) -> str:
        run_id, inserted = result
        if inserted:  # what this process wrote: closing it needs no read back
            with self._lock:
                self._rows[run_id] = dict(values)
                self._totals[run_id] = rows.RunningTotals()
        return run_id

    def _usage_step(
        self,
        run_id: str,
        usage: Usage | None,
        cost: Cost | None = None,
        model_answered: str | None = None,
        release_reservations: bool = False,
    ) -> lifecycle.Step[None]:
        with self._lock:
            totals = self._running_totals(run_id)
            totals.add(usage, cost)
            values = totals.columns()
            if model_answered is not None:
                values["model_answered"] = model_answered
            if run_id in self._rows:
                self._rows[run_id].update(values)
        step = lifecycle.usage_step(run_id, values)
        return budget.releasing(step, run_id) if release_reservations else step

    def _close_step(self, run_id: str, status: str, **options: Any) -> lifecycle.Step[None]:
        """The close of `run_id` as a step; `options` are close_run's keyword arguments."""
        unknown = set(options) - _CLOSE_OPTIONS
        if unknown:
            raise TypeError(f"close_run() got unexpected keyword arguments {sorted(unknown)}")
        rows.check_closing_status(status)
        with self._lock:
            totals = self._running_totals(run_id)
            totals.add(options.get("usage"), options.get("cost"))
            values: dict[str, Any] = {
                **totals.columns(),
                "status": status,
                "error": options.get("error"),
                "finished_at": options.get("finished_at") or rows.now(),
            }
            opened = self._rows.get(run_id)
            opened = dict(opened) if opened is not None else None
        for name in ("model_answered", "input_hash"):  # set when given, else kept
            if options.get(name) is not None:
                values[name] = options[name]
        produced = list(options.get("outcomes", ()))
        steps = list(options.get("events", ()))
        step = lifecycle.close_step(run_id, values, opened=opened, produced=produced, steps=steps)
        return budget.releasing(step, run_id) if options.get("release_reservations") else step

    def _forget(self, run_id: str) -> None:
        with self._lock:
            self._totals.pop(run_id, None)
            self._rows.pop(run_id, None)

    def _running_totals(self, run_id: str) -> rows.RunningTotals:
        if run_id not in self._totals:

            def load(connection: Connection) -> Any:
                return (
                    connection.execute(select(entries).where(entries.c.run_id == run_id))
                    .mappings()
                    .one_or_none()
                )

            row = self.read(load)
            if row is None or row["status"] != "running":
                raise self.read(lambda c: lifecycle.not_open(c, run_id))
            self._totals[run_id] = rows.RunningTotals.from_row(row)
        return self._totals[run_id]


_CLOSE_OPTIONS = frozenset(inspect.signature(Ledger.close_run).parameters) - {
    "self",
    "run_id",
    "status",
}


def migrate(url: str | None = None) -> tuple[str | None, str | None]:
    """Bring the ledger at `url` to the newest schema; returns (revision before, after)."""
    with Ledger.open(url, migrate=False) as ledger:
        return ledger.migrate()
