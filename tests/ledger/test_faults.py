"""Bad URLs and busy databases: one-line errors that say what to check, retries with backoff."""

from __future__ import annotations

import re
import sqlite3
import threading
import time
from pathlib import Path

import pytest

from meshagent.config import mask_url as mask
from meshagent.exceptions import LedgerError
from meshagent.ledger import Ledger, Usage

from .helpers import run_via_api


def test_an_unreachable_server_is_one_line_naming_the_masked_url():
    url = "postgresql+psycopg://meshagent:s3cret@127.0.0.1:1/ledger"
    with pytest.raises(LedgerError) as caught:
        Ledger.open(url)
    message = str(caught.value)
    assert message.startswith(
        "cannot open the ledger at postgresql+psycopg://meshagent:***@127.0.0.1:1/ledger: "
    )
    assert message.endswith(
        "check that the database server is running and reachable and that the URL's host, "
        "port, database, user and password are right"
    )
    assert "s3cret" not in message and "\n" not in message


def test_a_url_that_is_not_a_url_says_what_one_looks_like():
    with pytest.raises(LedgerError, match=re.escape("ledger URL 'ledger.db' is not a database")):
        Ledger.open("ledger.db")


def test_mask_hides_only_the_password():
    assert mask("postgresql://u:pw@h/db") == "postgresql://u:***@h/db"
    assert mask("sqlite:////tmp/x.db") == "sqlite:////tmp/x.db"


def _hold_write_lock(path: Path, seconds: float) -> threading.Thread:
    ready = threading.Event()

    def hold() -> None:
        connection = sqlite3.connect(path, isolation_level=None)
        connection.execute("BEGIN IMMEDIATE")
        ready.set()
        time.sleep(seconds)
        connection.execute("COMMIT")
        connection.close()

    thread = threading.Thread(target=hold)
    thread.start()
    ready.wait()
    return thread


def test_a_locked_sqlite_database_is_retried_until_free(tmp_path):
    path = tmp_path / "ledger.db"
    with Ledger.open(f"sqlite:///{path}", busy_timeout=0.05, retry_for=10) as ledger:
        holder = _hold_write_lock(path, 0.4)
        started = time.monotonic()
        run_id = run_via_api(ledger)
        holder.join()
        assert time.monotonic() - started >= 0.3
        assert ledger.verify().ok and ledger.count() == 1 and run_id


def test_a_database_locked_for_too_long_is_a_ledger_error(tmp_path):
    path = tmp_path / "ledger.db"
    with Ledger.open(f"sqlite:///{path}", busy_timeout=0.05, retry_for=0.3) as ledger:
        run_id = ledger.open_run("digest")
        holder = _hold_write_lock(path, 1.0)
        with pytest.raises(LedgerError) as caught:
            ledger.record_usage(run_id, Usage(input_tokens=1))
        holder.join()
        assert str(caught.value) == (
            f"could not record usage in ledger sqlite:///{path}: database is locked"
        )
        ledger.record_usage(run_id, Usage(input_tokens=1))  # free again: works
