"""A burst of slash runs records its ephemeral answers, and links its new people, through the
ledger's group commit: a few transactions for the burst instead of one per run, on SQLite and
PostgreSQL, every answer recorded once with its audience."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator

import pytest
from sqlalchemy import select

from meshagent.ledger import Ledger
from meshagent.ledger.people import person_of
from meshagent.ledger.schema import identities, outcomes
from tests.ledger.conftest import ledger_url, pg_schema_url, pg_shared, sqlite_url  # noqa: F401
from tests.ledger.test_grouped_writes import ANSWER, WritingCommits
from tests.slack.conftest import ASK, agents, command, form, make_app, response_posts
from tests.slack.test_bursts import _burst

# The ask agent, open to everyone; the sandbox's people, and whether their answer reaches
# someone else (the agent's owner is alice@example.com).
ANYONE = ASK.replace(
    '    allow:\n      users: [U0ALICE01, "@bob"]\n      usergroups: ["@oncall"]\n', ""
)
ASKERS = {"U0ALICE01": False, "U0BOB0002": True, "U0CAROL03": True, "U0DAVE004": True}


@pytest.fixture
def ledger(ledger_url: str) -> Iterator[Ledger]:  # noqa: F811 - on both backends here
    with Ledger.open(ledger_url, retry_for=10.0) as opened:
        yield opened


def test_a_burst_s_answers_are_recorded_in_a_few_transactions(sandbox, ledger, serve):
    n = 60
    assert "allow" not in ANYONE
    app = make_app(sandbox, ledger, agents(sandbox, ANYONE))
    app.commands.max_runs_per_user = n
    served = serve(app)
    answers_written = WritingCommits(ledger.engine, outcomes.name)
    people_written = WritingCommits(ledger.engine, identities.name)
    users = list(ASKERS)
    bodies = [
        form(command(sandbox, f"ask what changed in {at}?", user=users[at % len(users)]))
        for at in range(n)
    ]
    try:
        acks = asyncio.run(_burst(served.url, bodies))
        assert all("running ask" in ack.text for ack in acks)
        served.idle()
    finally:
        answers_written.remove()
        people_written.remove()
    assert len(response_posts(sandbox)) == n
    query = select(*ANSWER).where(outcomes.c.kind == "slack.ephemeral")
    found = ledger.read(lambda c: c.execute(query).all())
    assert len(found) == n and len({row.run_id for row in found}) == n  # each run's, once
    for row in found:
        detail = row.reach_detail
        detail = json.loads(detail) if isinstance(detail, str) else detail
        user = detail["user"]
        assert detail == {"user": user, "channel": "C0PAYMENTS"}
        assert (row.ref, row.audience, row.audience_size) == (f"C0PAYMENTS:{user}", "ephemeral", 1)
        assert row.reaches_others is ASKERS[user]
        assert ledger.entry(row.run_id)["triggered_by"] == user
    # One transaction per answer before; the runs of a burst end together, so a few now.
    assert 1 <= answers_written.count <= n // 4, answers_written.count
    assert people_written.count <= len(ASKERS)  # each new person linked once at most
    for user in ASKERS:
        person = person_of(ledger, user)
        assert person is not None and len(person.identities) == 2
