"""The Ledger: open a database, then open, account and close one entry per task.

Every method that returns has committed: what it wrote is durable. Writes retry with backoff
while the database is locked or restarting, and are idempotent, so a retry after a commit whose
answer was lost does not count twice.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, func, or_, select, text, update
from sqlalchemy.exc import DBAPIError

from meshagent.config import default_ledger_url, mask_url
from meshagent.exceptions import LedgerError
from meshagent.ledger import annotate, chain, rollup, rows
from meshagent.ledger.engine import make_engine, retrying, write_connection
from meshagent.ledger.migrate import migrate_engine
from meshagent.ledger.records import Cost, Event, Outcome, RunRecord, Usage
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
        self.engine.dispose()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def transact(self, work: Callable[[Connection], T], *, what: str) -> T:
        """Run `work` in one write transaction, retried while the database is unavailable."""

        def attempt() -> T:
            with write_connection(self.engine) as connection, connection.begin():
                return work(connection)

        return retrying(attempt, deadline=self.retry_for, what=what, url=self.url)

    def read(self, work: Callable[[Connection], T], *, what: str = "read") -> T:
        """Run `work` on a read connection, retried while the database is unavailable."""

        def attempt() -> T:
            with self.engine.connect() as connection:
                return work(connection)

        return retrying(attempt, deadline=self.retry_for, what=what, url=self.url)

    # -- the life of an entry ---------------------------------------------------------------

    def open_run(
        self,
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
    ) -> str:
        """Open the entry of a task before anything is spent; returns its run id.

        With an `idempotency_key` already recorded, returns that entry's run id instead.
        """
        values = self.entry_values(
            agent,
            version=version,
            owner=owner,
            team=team,
            value_tag=value_tag,
            minutes_saved=minutes_saved,
            trigger_kind=trigger_kind,
            triggered_by=triggered_by,
            scheduled_for=scheduled_for,
            started_at=started_at,
            provider=provider,
            model_requested=model_requested,
            input_hash=input_hash,
            run_id=run_id,
            idempotency_key=idempotency_key,
        )
        run_id = values["run_id"]

        def work(connection: Connection) -> str:
            match = entries.c.run_id == run_id
            if idempotency_key is not None:
                match = or_(match, entries.c.idempotency_key == idempotency_key)
            found = connection.execute(select(entries.c.run_id).where(match)).scalar()
            if found is None:
                connection.execute(entries.insert().values(values))
            return found or run_id

        return self.transact(work, what="open a run")

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
    ) -> None:
        """Add what a run just spent (`cost=None` with tokens: the price is unknown)."""
        with self._lock:
            totals = self._running_totals(run_id)
            totals.add(usage, cost)
            values = totals.columns()
        if model_answered is not None:
            values["model_answered"] = model_answered

        def work(connection: Connection) -> None:
            done = connection.execute(
                update(entries)
                .where(entries.c.run_id == run_id, entries.c.status == "running")
                .values(values)
            )
            if done.rowcount == 0:
                raise self._not_open(connection, run_id)

        self.transact(work, what="record usage")

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
    ) -> None:
        """Close the entry with its final status and chain it; it is never updated again.

        `input_hash` (the hash of the context the run read) is set here when it was not known
        at open_run.
        """
        rows.check_closing_status(status)
        with self._lock:
            totals = self._running_totals(run_id)
            totals.add(usage, cost)
            values: dict[str, Any] = {
                **totals.columns(),
                "status": status,
                "error": error,
                "finished_at": finished_at or rows.now(),
            }
        if model_answered is not None:
            values["model_answered"] = model_answered
        if input_hash is not None:
            values["input_hash"] = input_hash
        produced = list(outcomes)
        attempts: list[bool] = []

        def work(connection: Connection) -> None:
            seq, previous = chain.lock_head(connection)
            row = (
                connection.execute(
                    select(entries).where(entries.c.run_id == run_id).with_for_update()
                )
                .mappings()
                .one_or_none()
            )
            if row is not None and row["status"] != "running" and attempts:
                return  # the previous attempt committed but its answer was lost
            if row is None or row["status"] != "running":
                raise self._not_open(connection, run_id)
            attempts.append(True)
            for outcome in produced:
                annotate.insert_outcome(connection, run_id, outcome)
            closed = {**row, **values}
            digest = chain.entry_hash(seq + 1, previous, closed)
            connection.execute(
                update(entries)
                .where(entries.c.run_id == run_id)
                .values(**values, seq=seq + 1, prev_hash=previous, entry_hash=digest)
            )
            chain.advance_head(connection, seq + 1, digest)
            has_outcome, pos, neg = annotate.annotations(connection, run_id)
            deltas: rollup.Deltas = {}
            sums = rollup.entry_sums(closed, has_outcome=has_outcome, pos=pos, neg=neg)
            rollup.add_delta(deltas, rollup.daily_key(closed), sums)
            rollup.apply_deltas(connection, deltas)

        self.transact(work, what="close a run")
        with self._lock:
            self._totals.pop(run_id, None)

    def write_records(self, records: Sequence[RunRecord]) -> list[str]:
        """Record finished runs in one transaction; returns their run ids once durable."""
        from meshagent.ledger.batch import write_records

        return write_records(self, records)

    def add_outcome(self, run_id: str, kind: str, ref: str, url: str | None = None) -> None:
        """Record something the run produced; allowed after close (an outcome is a new row)."""
        annotate.add_outcome(self, run_id, Outcome(kind=kind, ref=ref, url=url))

    def add_feedback(
        self,
        run_id: str,
        person: str,
        vote: int,
        *,
        comment: str | None = None,
        at: datetime | None = None,
    ) -> None:
        """Record `person`'s +1/-1 on a run; a new vote from the same person replaces the old."""
        annotate.add_feedback(self, run_id, person, vote, comment=comment, at=at)

    def add_events(self, run_id: str, events: Iterable[Event]) -> None:
        """Record steps of a run (tool calls, refusals); allowed before and after close."""
        values = [
            {
                "run_id": run_id,
                "at": event.at or rows.now(),
                "kind": event.kind,
                "name": event.name,
                "detail": (event.detail or "")[:2000] or None,
            }
            for event in events
        ]
        if values:
            self.transact(
                lambda connection: connection.execute(events_table.insert(), values),
                what="record run events",
            )

    def events(self, run_id: str) -> list[Event]:
        """The recorded steps of a run, in order."""
        query = (
            select(
                events_table.c.kind, events_table.c.name, events_table.c.detail, events_table.c.at
            )
            .where(events_table.c.run_id == run_id)
            .order_by(events_table.c.id)
        )
        found = self.read(lambda c: c.execute(query).all(), what="read run events")
        return [Event(kind, name, detail, at) for kind, name, detail, at in found]

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

    def spent_since(self, agent: str, since: datetime) -> Decimal:
        """What ``agent``'s runs started since ``since`` cost (known costs; running included)."""
        query = select(func.coalesce(func.sum(entries.c.cost_usd), 0)).where(
            entries.c.agent == agent, entries.c.started_at >= since
        )
        return Decimal(self.read(lambda c: c.execute(query).scalar(), what="read spend") or 0)

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

    # -- helpers ----------------------------------------------------------------------------

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
                raise self.read(lambda c: self._not_open(c, run_id))
            self._totals[run_id] = rows.RunningTotals.from_row(row)
        return self._totals[run_id]

    @staticmethod
    def _not_open(connection: Connection, run_id: str) -> LedgerError:
        status = connection.execute(
            select(entries.c.status).where(entries.c.run_id == run_id)
        ).scalar()
        if status is None:
            return LedgerError(f"run {run_id} is not in the ledger: open it with open_run first")
        return LedgerError(f"run {run_id} is closed ({status}): a closed entry is never updated")


def migrate(url: str | None = None) -> tuple[str | None, str | None]:
    """Bring the ledger at `url` to the newest schema; returns (revision before, after)."""
    with Ledger.open(url, migrate=False) as ledger:
        return ledger.migrate()
