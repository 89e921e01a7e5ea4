"""The runtime records each outcome's reach, as the connector read it at delivery."""

from __future__ import annotations

import json
from pathlib import Path

from sqlalchemy import select

from meshagent.agentfile.loader import load_agent
from meshagent.ledger.schema import outcomes
from tests.runtime.conftest import make_runtime, run

AGENT = Path(__file__).resolve().parents[2] / "agents" / "standup-digest.yaml"


def test_a_post_is_recorded_with_its_channel_reach(sandbox, ledger):
    result = run(make_runtime(sandbox, ledger), load_agent(AGENT))
    assert result.status == "ok", result.error
    query = select(
        outcomes.c.kind,
        outcomes.c.audience,
        outcomes.c.audience_size,
        outcomes.c.reaches_others,
        outcomes.c.reach_detail,
    ).where(outcomes.c.run_id == result.run_id)
    [(kind, audience, size, others, detail)] = ledger.read(lambda c: c.execute(query).all())
    assert (kind, audience, size, others) == ("slack.message", "public", 5, True)
    assert json.loads(detail) == {"channel": "payments-standup", "private": False}
