"""Attack corpus: Slack requests that must be refused, whatever replica they reach and however
their headers or body are bent.

Every case is a real HTTP request to the real app under uvicorn, signed (or not) with the test
signing secret as Slack would sign it; replicas are two apps on one ledger database (a SQLite
file, or PostgreSQL at 127.0.0.1:5432). Refused means refused before anything happens: no
ledger entry, no call to Slack, and an answer that is not a 500.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import socket
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from meshagent.config import Config
from meshagent.ledger.store import Ledger
from meshagent.runtime.runner import Runtime
from meshagent.slack import SlackApp
from meshagent.slack.app import MAX_BODY_BYTES
from tests.ledger.conftest import pg_schema_url, pg_shared  # noqa: F401
from tests.ledger.test_faults import _hold_write_lock
from tests.slack.conftest import APP_TOKEN, SECRET, agents, command, event, form, serve, sign

__all__ = ["serve"]  # the fixture, imported to be used by name (ruff: not an unused import)

NOW = int(time.time())


def _app(sandbox: Any, ledger: Ledger, **options: Any) -> SlackApp:
    env = sandbox.env() | {"SLACK_SIGNING_SECRET": SECRET, "SLACK_APP_TOKEN": APP_TOKEN}
    config = Config(ledger_url=ledger.url)
    runtime = Runtime(config, ledger=ledger, env=env, retry_base_seconds=0)
    return SlackApp(config, runtime, lambda: agents(sandbox), env=env, **options)


def _digest(stamp: str | bytes, body: bytes, secret: str = SECRET) -> str:
    stamp = stamp.encode() if isinstance(stamp, str) else stamp
    mac = hmac.new(secret.encode(), b"v0:" + stamp + b":" + body, hashlib.sha256)
    return mac.hexdigest()


def _nothing_done(sandbox: Any, ledger: Ledger) -> None:
    assert ledger.count() == 0
    assert sandbox.slack.posted_via_response_urls() == []
    assert sandbox.slack.calls == []  # not even auth.test


def _raw(
    url: str,
    headers: list[tuple[str, str | bytes]],
    body: bytes | list[bytes] = b"",
    *,
    finish: bool = True,
    timeout: float = 10,
) -> int:
    """POST over a plain socket, headers exactly as given (repeated, non-ASCII); a list of
    chunks is sent with chunked transfer encoding, the last chunk only when ``finish``. Returns
    the answer's status code."""
    host, port = url.split("//")[1].split("/")[0].split(":")
    lines = [b"POST /slack/events HTTP/1.1", f"Host: {host}:{port}".encode()]
    for name, value in headers:
        lines.append(name.encode() + b": " + (value.encode() if isinstance(value, str) else value))
    if isinstance(body, bytes):
        lines.append(f"Content-Length: {len(body)}".encode())
    head = b"\r\n".join(lines) + b"\r\n\r\n"
    with socket.create_connection((host, int(port)), timeout=timeout) as conn:
        conn.sendall(head)
        if isinstance(body, bytes):
            conn.sendall(body)
        else:
            try:
                for chunk in body:
                    conn.sendall(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
                if finish:
                    conn.sendall(b"0\r\n\r\n")
            except (BrokenPipeError, ConnectionResetError):
                pass  # the server answered and closed before taking it all
        answer = b""
        while b"\r\n" not in answer:
            data = conn.recv(4096)
            if not data:
                break
            answer += data
    return int(answer.split(b" ", 2)[1])


FORM = ("Content-Type", "application/x-www-form-urlencoded")


def _signed(body: bytes, stamp: str | bytes) -> list[tuple[str, str | bytes]]:
    """Headers whose signature is right for ``stamp`` exactly as it is sent."""
    return [FORM, ("X-Slack-Request-Timestamp", stamp), ("X-Slack-Signature", _v0(body, stamp))]


def _v0(body: bytes, stamp: str | bytes) -> str:
    return f"v0={_digest(stamp, body)}"


# -- malformed timestamps ------------------------------------------------------------------------

ARABIC = str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩")


def _timestamp_cases() -> list[Any]:
    now = str(int(time.time()))
    right = now  # a timestamp as Slack sends it, for the signatures that need one
    cases: list[tuple[str, Any]] = [
        ("missing", None),
        ("empty", ""),
        ("non-numeric", "yesterday"),
        ("fractional", f"{now}.5"),
        ("exponent", "1.7e9"),
        ("huge", "9" * 5000),
        ("huge-but-an-int", "9" * 40),
        ("negative", f"-{now}"),
        ("unicode-digits", now.translate(ARABIC).encode()),
        ("superscripts", "²³".encode("latin-1")),
        ("inner-whitespace", f"{now[:5]} {now[5:]}"),
        ("plus-sign", f"+{now}"),
        ("underscore", f"{now[:4]}_{now[4:]}"),
        ("leading-zero", f"0{now}"),
        ("hex", hex(int(right))),
    ]
    return [pytest.param(stamp, id=name) for name, stamp in cases]


@pytest.mark.parametrize("stamp", _timestamp_cases())
def test_a_malformed_timestamp_gets_401(sandbox, ledger, serve, stamp):
    served = serve(_app(sandbox, ledger))
    body = form(command(sandbox, "run standup")).encode()
    if stamp is None:
        headers = [FORM, ("X-Slack-Signature", _v0(body, str(NOW)))]
    else:  # signed over the timestamp exactly as sent: only its form is wrong
        headers = _signed(body, stamp)
    assert _raw(served.url, headers, body) == 401
    served.idle()
    _nothing_done(sandbox, ledger)


def test_a_second_timestamp_header_gets_401(sandbox, ledger, serve):
    served = serve(_app(sandbox, ledger))
    body = form(command(sandbox, "run standup")).encode()
    stamp = str(int(time.time()))
    # an earlier timestamp first, then the one signed: whichever is read, one is not checked
    headers = [("X-Slack-Request-Timestamp", str(int(stamp) - 1)), *_signed(body, stamp)]
    assert _raw(served.url, headers, body) == 401
    served.idle()
    _nothing_done(sandbox, ledger)


# -- malformed signatures ------------------------------------------------------------------------


def _signature_cases() -> list[Any]:
    cases: list[tuple[str, Callable[[str], list[str | bytes]]]] = [
        ("missing", lambda good: []),
        ("empty", lambda good: [""]),
        ("wrong-prefix", lambda good: ["v1=" + good[3:]]),
        ("no-prefix", lambda good: [good[3:]]),
        ("non-hex", lambda good: ["v0=" + "g" * 64]),
        ("too-short", lambda good: [good[:-1]]),
        ("too-long", lambda good: [good + "0"]),
        ("uppercase-hex", lambda good: ["v0=" + good[3:].upper()]),
        ("non-ascii", lambda good: [b"v0=" + "é".encode("latin-1") * 64]),
        ("right-then-junk", lambda good: [good, "v0=" + "0" * 64]),
        ("junk-then-right", lambda good: ["v0=" + "0" * 64, good]),
        ("twice-the-right-one", lambda good: [good, good]),
        ("comma-joined", lambda good: [f"{good}, {good}"]),
    ]
    return [pytest.param(make, id=name) for name, make in cases]


@pytest.mark.parametrize("signatures", _signature_cases())
def test_a_malformed_signature_gets_401(sandbox, ledger, serve, signatures):
    served = serve(_app(sandbox, ledger))
    body = form(command(sandbox, "run standup")).encode()
    stamp = str(int(time.time()))
    headers: list[tuple[str, str | bytes]] = [FORM, ("X-Slack-Request-Timestamp", stamp)]
    headers += [("X-Slack-Signature", value) for value in signatures(_v0(body, stamp))]
    assert _raw(served.url, headers, body) == 401
    served.idle()
    _nothing_done(sandbox, ledger)


def _forged_cases() -> list[Any]:
    stale = str(int(time.time()) - 6 * 60)  # past Slack's five minutes
    cases: list[tuple[str, Callable[[bytes, str], list[tuple[str, str | bytes]]]]] = [
        ("unsigned", lambda body, now: [FORM, ("X-Slack-Request-Timestamp", now)]),
        ("another-secret", lambda body, now: [
            FORM, ("X-Slack-Request-Timestamp", now),
            ("X-Slack-Signature", f"v0={_digest(now, body, secret='not-' + SECRET)}"),
        ]),
        ("another-body", lambda body, now: [
            FORM, ("X-Slack-Request-Timestamp", now),
            ("X-Slack-Signature", _v0(body + b"&user_id=U0ADMIN", now)),
        ]),
        ("stale", lambda body, now: _signed(body, stale)),
    ]  # fmt: skip
    return [pytest.param(make, id=name) for name, make in cases]


@pytest.mark.parametrize("make", _forged_cases())
def test_a_forged_command_gets_401_from_a_warm_app(sandbox, ledger, serve, make):
    """Once warm, the route answers slash commands without Bolt's dispatch: a forged one is
    refused there as before, and nothing of it runs."""
    served = _started(sandbox, serve(_app(sandbox, ledger)), warm=True)
    served.idle()
    entries, posts = ledger.count(), len(sandbox.slack.posted_via_response_urls())
    commands = served.app.stats["commands"]
    body = form(command(sandbox, "run standup")).encode()
    assert _raw(served.url, make(body, str(int(time.time()))), body) == 401
    served.idle()
    assert served.app.stats["commands"] == commands
    assert (ledger.count(), len(sandbox.slack.posted_via_response_urls())) == (entries, posts)


def test_a_body_that_is_not_utf8_gets_401_unsigned(sandbox, ledger, serve):
    served = serve(_app(sandbox, ledger))
    body = b"command=%2Fmeshagent&text=\xff\xfe"
    headers = [FORM, ("X-Slack-Request-Timestamp", str(int(time.time()))),
               ("X-Slack-Signature", "v0=" + "0" * 64)]  # fmt: skip
    assert _raw(served.url, headers, body) == 401
    served.idle()
    _nothing_done(sandbox, ledger)


def test_header_checks_never_raise(sandbox, ledger):
    """Property: for any timestamp and signature text, the check answers; it never raises
    anything but its refusal."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    from meshagent.slack.inbound import Refused, verify

    texts = st.text(alphabet=st.characters(max_codepoint=0x2FF), max_size=80)
    headers = st.lists(texts, max_size=3)

    @settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(stamps=headers, signatures=headers, body=st.binary(max_size=64))
    def check(stamps: list[str], signatures: list[str], body: bytes) -> None:
        with contextlib.suppress(Refused):
            verify(SECRET, body, timestamps=stamps, signatures=signatures, now=time.time())

    check()


# -- replays -------------------------------------------------------------------------------------


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def replicas(request, sandbox, tmp_path) -> Iterator[tuple[Ledger, Ledger]]:
    """Two ledgers on one database, as two replicas of serve open it."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'shared.db'}"
    else:
        url = request.getfixturevalue("pg_schema_url")
    first = Ledger.open(url, retry_for=10)
    second = Ledger.open(url, retry_for=10)
    try:
        yield first, second
    finally:
        first.close()
        second.close()


def _started(sandbox: Any, served: Any, warm: bool) -> Any:
    """A served app; warm: after a first request, once Slack said which workspace the token is
    (slash commands are then answered without Bolt's dispatch, through the same checks)."""
    if warm:
        assert served.command(sandbox, "help").status_code == 200
        assert served.app._authorize.known
    return served


WARM = pytest.mark.parametrize("warm", [False, True], ids=["first-request", "warm"])


@WARM
def test_a_request_replayed_to_another_replica_gets_401(sandbox, replicas, serve, warm):
    one, two = (_started(sandbox, serve(_app(sandbox, ledger)), warm) for ledger in replicas)
    body = form(command(sandbox, "run standup"))
    headers = sign(body)
    assert one.post(body, headers=headers, signed=False).status_code == 200
    assert two.post(body, headers=headers, signed=False).status_code == 401
    one.idle()
    two.idle()
    assert replicas[0].count() == 1
    assert two.app.stats["replays_refused"] == 1


@WARM
def test_a_request_replayed_to_both_replicas_at_once_is_served_once(sandbox, replicas, serve, warm):
    served = [_started(sandbox, serve(_app(sandbox, ledger)), warm) for ledger in replicas]
    body = form(command(sandbox, "run standup"))
    headers = sign(body)
    codes: list[int] = []
    start = threading.Barrier(10)

    def send(at: int) -> None:
        start.wait()
        codes.append(served[at % 2].post(body, headers=headers, signed=False).status_code)

    threads = [threading.Thread(target=send, args=(at,)) for at in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sorted(codes) == [200] + [401] * 9
    for one in served:
        one.idle()
    assert replicas[0].count() == 1
    assert sum(one.app.stats["replays_refused"] for one in served) == 9


@WARM
def test_slacks_ssl_check_is_answered_and_runs_nothing(sandbox, ledger, serve, warm):
    """Slack checks a command URL's certificate with ``ssl_check=1``: answered 200 by Bolt,
    never taken for the command it may carry, first request or not."""
    served = _started(sandbox, serve(_app(sandbox, ledger)), warm)
    calls = len(sandbox.slack.calls)
    body = form({**command(sandbox, "run standup"), "ssl_check": "1"})
    answer = served.post(body)
    assert answer.status_code == 200 and answer.text == ""
    served.idle()
    assert ledger.count() == 0
    assert sandbox.slack.posted_via_response_urls() == []
    assert len(sandbox.slack.calls) == calls  # nothing asked of Slack, not even auth.test


def test_an_event_delivered_again_to_another_replica_is_not_processed(sandbox, replicas, serve):
    one, two = (serve(_app(sandbox, ledger)) for ledger in replicas)
    payload = event("reaction_added", user="U0BOB0002", reaction="+1", channel="C0PAYMENTS",
                    ts="1700000000.000100", event_id="Ev0SHARED01")  # fmt: skip
    body = json.dumps(payload)
    assert one.post(body, content_type="application/json").status_code == 200
    # Slack's new delivery of the same event: a fresh signature, no retry headers
    again = sign(body, timestamp=int(time.time()) + 1)
    answer = two.post(body, content_type="application/json", headers=again, signed=False)
    assert answer.status_code == 200
    one.idle()
    two.idle()
    assert two.app.stats["duplicate_events"] == 1


class _Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


def test_a_replay_after_memory_forgot_but_inside_the_window_gets_401(sandbox, ledger, serve):
    clock = _Clock()
    app = _app(sandbox, ledger, clock=clock)
    served = serve(app)
    body = form(command(sandbox, "run standup"))
    stamp = int(clock.now) + 290  # Slack's clock a little ahead: still inside the window
    headers = sign(body, timestamp=stamp)
    assert served.post(body, headers=headers, signed=False).status_code == 200
    served.idle()
    clock.now += 400  # 400 s after it arrived, 110 s after its own timestamp
    assert served.post(body, headers=headers, signed=False).status_code == 401
    clock.now += 200  # now outside the window: refused as stale
    assert served.post(body, headers=headers, signed=False).status_code == 401
    served.idle()
    assert ledger.count() == 1
    assert app.stats["replays_refused"] == 1


def test_expired_signatures_are_purged_in_the_background_and_live_ones_kept(sandbox, ledger, serve):
    from sqlalchemy import select

    from meshagent.ledger.schema import nonces

    clock = _Clock()
    served = serve(_app(sandbox, ledger, clock=clock))
    body = form(command(sandbox, "help"))
    assert served.post(body, headers=sign(body, timestamp=int(clock.now))).status_code == 200
    clock.now += 400  # the first signature's window and margin are over; a purge is due
    fresh = sign(body, timestamp=int(clock.now))
    assert served.post(body, headers=fresh, signed=False).status_code == 200
    served.idle()
    with served.app.nonces._engine.connect() as connection:  # the ledger's file of nonces
        kept = connection.execute(select(nonces.c.expires_at)).scalars().all()
    assert [at.timestamp() for at in kept] == [int(clock.now) + 360]


def test_a_replay_to_a_restarted_replica_gets_401(sandbox, tmp_path, serve):
    url = f"sqlite:///{tmp_path / 'restart.db'}"
    body = form(command(sandbox, "run standup"))
    headers = sign(body)
    with Ledger.open(url) as ledger:
        first = serve(_app(sandbox, ledger))
        assert first.post(body, headers=headers, signed=False).status_code == 200
        first.idle()
        first.stop()
    with Ledger.open(url) as ledger:
        second = serve(_app(sandbox, ledger))
        assert second.post(body, headers=headers, signed=False).status_code == 401
        second.idle()
        assert ledger.count() == 1


@WARM
def test_a_request_the_ledger_cannot_check_gets_503_and_is_not_acted_on(
    sandbox, tmp_path, serve, warm
):
    """Fail closed: with the ledger's nonces locked past the claim's deadline, nothing is let
    through unchecked (it could be a replay another replica already served)."""
    with Ledger.open(f"sqlite:///{tmp_path / 'locked.db'}", busy_timeout=0.05) as ledger:
        app = _app(sandbox, ledger)
        served = _started(sandbox, serve(app), warm)
        holder = sqlite3.connect(app.nonces.store, isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")  # another writer holds the file of nonces
        try:
            assert served.command(sandbox, "run standup").status_code == 503
        finally:
            holder.rollback()
            holder.close()
        served.idle()
        assert ledger.count() == 0
        assert app.stats["replay_checks_failed"] == 1
        assert served.command(sandbox, "help").status_code == 200  # and once it answers again


def test_a_request_is_acknowledged_while_the_runs_hold_the_ledger(sandbox, tmp_path, serve):
    """The replay check waits for no write of the runs: with another writer holding the ledger
    a whole second, a command is checked and answered at once."""
    path = tmp_path / "busy.db"
    with Ledger.open(f"sqlite:///{path}") as ledger:
        served = serve(_app(sandbox, ledger))
        assert served.command(sandbox, "help").status_code == 200  # started and warm
        holder = _hold_write_lock(path, 3.0)
        started = time.monotonic()
        try:
            assert served.command(sandbox, "help").status_code == 200
            assert time.monotonic() - started < 2.0  # answered while the ledger was held
        finally:
            holder.join()
        assert served.app.nonces._thread is None  # every claim made on the loop, none waited


@pytest.mark.parametrize("locked", ["first", "replay"])
def test_a_replay_is_refused_whichever_claim_waited_for_a_locked_database(
    sandbox, tmp_path, serve, locked
):
    """On SQLite a claim is made on the event loop when the file of nonces is free, and by the
    writer thread, which waits, when another writer holds it: either path refuses what the
    other claimed, on another replica of the same ledger."""
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    with Ledger.open(url, retry_for=10) as first, Ledger.open(url, retry_for=10) as second:
        one, two = serve(_app(sandbox, first)), serve(_app(sandbox, second))
        body = form(command(sandbox, "run standup"))
        headers = sign(body)
        for app, is_locked, status in (
            (one, locked == "first", 200),
            (two, locked == "replay", 401),
        ):
            # Held long enough for the request to meet it on a busy machine, within the
            # claim's two seconds.
            holder = _hold_write_lock(tmp_path / "shared.db.nonces", 1.2) if is_locked else None
            started = time.monotonic()
            assert app.post(body, headers=headers, signed=False).status_code == status
            if holder is not None:
                assert time.monotonic() - started >= 0.3  # it waited for the lock
                holder.join()
            app.idle()  # its run's writes done: the free claim meets no other writer
        assert first.count() == 1
        assert two.app.stats["replays_refused"] == 1
        # The path taken: the thread only for the claim that met the lock.
        waited = one if locked == "first" else two
        free = two if locked == "first" else one
        assert waited.app.nonces._thread is not None and free.app.nonces._thread is None


KILLED_AFTER_ACK = """
import asyncio, os, signal, sys
from datetime import UTC, datetime, timedelta
from meshagent.ledger import Ledger
from meshagent.ledger.nonces import NonceClaims, nonce_key

ledger = Ledger.open(sys.argv[1])
claims = NonceClaims(ledger)
now = datetime.now(UTC)
key = nonce_key("slack-signature", sys.argv[2])
claimed = asyncio.run(claims.claim({key: now + timedelta(minutes=6)}, now=now))
print("acknowledged" if claimed == {key} else "refused", flush=True)
os.kill(os.getpid(), signal.SIGKILL)  # no close, no flush, no exit handlers
"""


def test_a_replay_to_a_replica_restarted_after_a_kill_right_after_its_ack_gets_401(
    sandbox, tmp_path, serve
):
    """What a replica claimed before it acknowledged survives its being killed at once: the
    claim made on the event loop was committed before the answer went out."""
    import subprocess
    import sys

    url = f"sqlite:///{tmp_path / 'killed.db'}"
    Ledger.open(url).close()
    body = form(command(sandbox, "run standup"))
    headers = sign(body)
    child = subprocess.run(
        [sys.executable, "-c", KILLED_AFTER_ACK, url, headers["X-Slack-Signature"]],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert child.stdout.strip() == "acknowledged" and child.returncode == -9, child.stderr
    with Ledger.open(url) as ledger:
        app = _app(sandbox, ledger)
        served = serve(app)
        assert served.post(body, headers=headers, signed=False).status_code == 401
        served.idle()
        assert ledger.count() == 0
        assert app.stats["replays_refused"] == 1
        assert served.command(sandbox, "help").status_code == 200  # a new request is served


# -- body size -----------------------------------------------------------------------------------

OVER = [b"x" * 65536] * (MAX_BODY_BYTES // 65536 + 1)  # one chunk more than the limit


def _big_headers(stamp: str | None = None) -> list[tuple[str, str | bytes]]:
    stamp = stamp or str(int(time.time()))
    return [FORM, ("X-Slack-Request-Timestamp", stamp), ("X-Slack-Signature", "v0=" + "0" * 64),
            ("Transfer-Encoding", "chunked")]  # fmt: skip


def test_a_chunked_body_over_the_limit_gets_413(sandbox, ledger, serve):
    served = serve(_app(sandbox, ledger))
    assert _raw(served.url, _big_headers(), OVER) == 413
    _nothing_done(sandbox, ledger)


def test_a_chunked_body_over_the_limit_with_a_small_length_gets_413(sandbox, ledger, serve):
    served = serve(_app(sandbox, ledger))
    headers = [*_big_headers(), ("Content-Length", "10")]
    assert _raw(served.url, headers, OVER) == 413
    _nothing_done(sandbox, ledger)


def test_a_body_over_the_limit_is_refused_before_it_ends(sandbox, ledger, serve):
    """The answer comes while the client is still sending: the rest is never waited for."""
    served = serve(_app(sandbox, ledger))
    assert _raw(served.url, _big_headers(), OVER, finish=False, timeout=5) == 413
    _nothing_done(sandbox, ledger)


def test_a_declared_length_over_the_limit_gets_413_before_the_body(sandbox, ledger, serve):
    served = serve(_app(sandbox, ledger))
    headers = [*_big_headers()[:3], ("Content-Length", str(MAX_BODY_BYTES + 1))]
    host, port = served.url.split("//")[1].split("/")[0].split(":")
    head = b"POST /slack/events HTTP/1.1\r\nHost: x\r\n"
    head += b"".join(f"{name}: {value}\r\n".encode() for name, value in headers) + b"\r\n"
    with socket.create_connection((host, int(port)), timeout=5) as conn:
        conn.sendall(head)  # and none of the body
        assert conn.recv(4096).startswith(b"HTTP/1.1 413 ")
    _nothing_done(sandbox, ledger)


def test_a_signed_chunked_body_under_the_limit_is_served(sandbox, ledger, serve):
    served = serve(_app(sandbox, ledger))
    body = form(command(sandbox, "help")).encode()
    chunks = [body[:10], body[10:]]
    headers = [*_signed(body, str(int(time.time()))), ("Transfer-Encoding", "chunked")]
    assert _raw(served.url, headers, chunks) == 200


# -- what /metrics counts ------------------------------------------------------------------------


def test_refusals_are_counted_for_metrics(sandbox, ledger, serve):
    from meshagent.fleet.server import SLACK_COUNTS

    app = _app(sandbox, ledger)
    served = serve(app)
    body = form(command(sandbox, "help"))
    headers = sign(body)
    assert served.post(body, headers=headers, signed=False).status_code == 200
    assert served.post(body, headers=headers, signed=False).status_code == 401
    assert served.post(body, headers=sign(body, secret="wrong"), signed=False).status_code == 401
    assert _raw(served.url, _signed(body.encode(), "1.5"), body.encode()) == 401
    assert _raw(served.url, _big_headers(), OVER) == 413
    served.idle()
    assert app.stats["replays_refused"] == 1
    assert app.stats["signatures_refused"] == 2
    assert app.stats["bodies_too_large"] == 1
    assert {"replays_refused", "signatures_refused", "bodies_too_large"} <= set(SLACK_COUNTS)
    assert httpx.post(served.url, content=b"", timeout=5).status_code == 401
