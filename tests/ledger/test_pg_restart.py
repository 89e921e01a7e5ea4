"""Restarting PostgreSQL in the middle of a stream of writes loses no acknowledged entry.

This really restarts the server. It holds the PostgreSQL tests' lock exclusively, so tests on
other xdist workers wait instead of failing, and it always leaves the server up.
"""

from __future__ import annotations

import fcntl
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator

import psycopg
import pytest
from sqlalchemy import func, select

from meshagent.ledger import BatchWriter, Ledger
from meshagent.ledger.schema import entries

from .conftest import PG_DSN, RESTART_LOCK, pg_connect, schema_url
from .helpers import record, run_via_api

CLUSTER = "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main"


def _wait_until_up(timeout: float = 60.0) -> None:
    give_up = time.monotonic() + timeout
    while time.monotonic() < give_up:
        try:
            psycopg.connect(PG_DSN, connect_timeout=2).close()
            return
        except psycopg.OperationalError:
            time.sleep(0.2)
    raise AssertionError("PostgreSQL did not come back within 60 s")


@pytest.fixture
def exclusive_schema_url() -> Iterator[str]:
    with RESTART_LOCK.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        schema = f"ledger_restart_{uuid.uuid4().hex[:12]}"
        try:
            with pg_connect() as connection:
                connection.execute(f'CREATE SCHEMA "{schema}"')
            yield schema_url(schema)
        finally:
            if subprocess.run(f"{CLUSTER} status", shell=True, capture_output=True).returncode:
                subprocess.run(f"{CLUSTER} start", shell=True, capture_output=True)
            _wait_until_up()
            with pg_connect() as connection:
                connection.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
            fcntl.flock(handle, fcntl.LOCK_UN)


@pytest.mark.postgres
def test_restarting_postgres_mid_stream_loses_no_acknowledged_entry(exclusive_schema_url):
    ledger = Ledger.open(exclusive_schema_url, retry_for=60)
    acknowledged: list[str] = []
    failures: list[BaseException] = []
    stop = threading.Event()

    def api_writer() -> None:
        while not stop.is_set():
            try:
                acknowledged.append(run_via_api(ledger))
            except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
                failures.append(exc)
                return

    def batch_writer(writer: BatchWriter) -> None:
        while not stop.is_set():
            try:
                futures = [writer.submit(record()) for _ in range(20)]
                acknowledged.extend(future.result() for future in futures)
            except BaseException as exc:  # noqa: BLE001
                failures.append(exc)
                return

    with BatchWriter(ledger, max_entries=10, max_delay=0.01) as writer:
        threads = [
            threading.Thread(target=api_writer),
            threading.Thread(target=batch_writer, args=(writer,)),
        ]
        for thread in threads:
            thread.start()
        time.sleep(0.5)
        before = len(acknowledged)
        subprocess.run(f"{CLUSTER} restart", shell=True, check=True, capture_output=True)
        _wait_until_up()
        time.sleep(1.0)
        stop.set()
        for thread in threads:
            thread.join(timeout=90)
    assert not failures, failures
    assert before > 0 and len(acknowledged) > before
    with ledger.engine.connect() as connection:
        stored = connection.execute(
            select(func.count()).where(entries.c.run_id.in_(acknowledged))
        ).scalar()
    assert stored == len(acknowledged) == len(set(acknowledged))
    assert ledger.verify().ok
    ledger.close()
