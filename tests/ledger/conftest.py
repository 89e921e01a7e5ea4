"""Ledger test fixtures: a fresh SQLite file or PostgreSQL schema per test, on both backends.

PostgreSQL tests use the server at 127.0.0.1:5432 (trust auth, database `test`); each test gets
its own schema, dropped afterwards. They fail, never skip, when the server is down. They hold a
shared lock that the server-restart test takes exclusively, so a restart never hits them.
"""

from __future__ import annotations

import fcntl
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from meshagent.ledger import Ledger

PG_DSN = os.environ.get("LEDGER_TEST_PG", "host=127.0.0.1 port=5432 dbname=test user=postgres")
PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
RESTART_LOCK = Path("/tmp/meshagent-ledger-tests-pg.lock")
START = "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start"


def pg_connect() -> psycopg.Connection:
    try:
        return psycopg.connect(PG_DSN, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        pytest.fail(
            f"PostgreSQL at 127.0.0.1:5432 is not reachable ({str(exc).strip()}); "
            f"start it with: {START}",
            pytrace=False,
        )


def schema_url(schema: str) -> str:
    """A ledger URL whose connections use `schema` (created beforehand) as search path."""
    return f"{PG_URL}?options=-csearch_path%3D{schema}"


@pytest.fixture
def pg_shared() -> Iterator[None]:
    """Held by every PostgreSQL test; the restart test takes it exclusively."""
    with RESTART_LOCK.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_SH)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@pytest.fixture
def pg_schema_url(pg_shared: None) -> Iterator[str]:
    """A URL on a brand-new PostgreSQL schema, dropped after the test."""
    schema = f"ledger_test_{uuid.uuid4().hex[:12]}"
    with pg_connect() as connection:
        connection.execute(f'CREATE SCHEMA "{schema}"')
    try:
        yield schema_url(schema)
    finally:
        with pg_connect() as connection:
            connection.execute(f'DROP SCHEMA "{schema}" CASCADE')


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'ledger.db'}"


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def ledger_url(request: pytest.FixtureRequest) -> str:
    """The URL of an empty ledger database, once per backend."""
    if request.param == "sqlite":
        return request.getfixturevalue("sqlite_url")
    return request.getfixturevalue("pg_schema_url")


@pytest.fixture
def ledger(ledger_url: str) -> Iterator[Ledger]:
    opened = Ledger.open(ledger_url, retry_for=10.0)
    try:
        yield opened
    finally:
        opened.close()


@pytest.fixture
def ledger_pair(ledger_url: str) -> Iterator[tuple[Ledger, Ledger]]:
    """Two ledgers on one database, as two processes (replicas of serve, `meshagent approvals`)
    open it."""
    with (
        Ledger.open(ledger_url, retry_for=10) as first,
        Ledger.open(ledger_url, retry_for=10) as second,
    ):
        yield first, second
