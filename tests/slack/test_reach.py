"""A slash answer shown only to its asker is an outcome whose audience is that person, and the
asker's Slack id is linked to their email in the ledger's people."""

from __future__ import annotations

from sqlalchemy import select

from meshagent.ledger.people import person_of
from meshagent.ledger.schema import outcomes
from tests.slack.conftest import ASK, agents, make_app


def _reach(ledger):
    query = select(
        outcomes.c.kind,
        outcomes.c.audience,
        outcomes.c.audience_size,
        outcomes.c.reaches_others,
        outcomes.c.next_check_at,
    )
    return ledger.read(lambda c: c.execute(query).all())


def test_an_answer_to_the_owner_alone_reaches_nobody_else(sandbox, ledger, serve):
    served = serve(make_app(sandbox, ledger, agents(sandbox, ASK)))
    served.command(sandbox, "ask how are refunds going?")  # alice, the owner, by Slack id
    served.idle()
    [(kind, audience, size, others, next_check)] = _reach(ledger)
    assert (kind, audience, size, others) == ("slack.ephemeral", "ephemeral", 1, False)
    assert next_check is not None  # the asker's vote on it is read back like any outcome
    alice = person_of(ledger, "U0ALICE01")
    assert alice is not None and "alice@example.com" in {i.value for i in alice.identities}


def test_an_answer_to_a_teammate_reaches_someone_else(sandbox, ledger, serve):
    served = serve(make_app(sandbox, ledger, agents(sandbox, ASK)))
    served.command(sandbox, "ask anything?", user="U0BOB0002")
    served.idle()
    [(_, audience, _, others, _)] = _reach(ledger)
    assert (audience, others) == ("ephemeral", True)
    assert person_of(ledger, "bob@example.com").id == person_of(ledger, "U0BOB0002").id


def test_the_asker_s_vote_judges_the_answer_only_they_saw(sandbox, ledger, serve):
    import asyncio
    from datetime import UTC, datetime, timedelta

    from meshagent.config import Config
    from meshagent.fleet.followup import follow_up

    served = serve(make_app(sandbox, ledger, agents(sandbox, ASK)))
    served.command(sandbox, "ask anything?", user="U0BOB0002")
    served.command(sandbox, "ask anything?", user="U0ALICE01")  # the owner, asking herself
    served.idle()
    entries = ledger.read(lambda c: c.execute(select(outcomes.c.run_id)).scalars().all())
    for run_id in entries:
        run = ledger.entry(run_id)
        ledger.add_feedback(run_id, run["triggered_by"], 1)
    later = datetime.now(UTC) + timedelta(days=1, minutes=1)
    done = asyncio.run(follow_up(ledger, Config(ledger_url=ledger.url), env={}, now=later))
    verdicts = {ledger.entry(c.outcome.run_id)["triggered_by"]: c.verdict for c in done.checked}
    assert verdicts == {"U0BOB0002": "accepted", "U0ALICE01": "pending"}
    assert done.calls == 0  # votes are in the ledger: no API call
