"""The run page and its API answer show the writes a run staged for approval and what became of
them: the exact payload, who decided, when and why."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import jsonschema
from starlette.testclient import TestClient

from meshagent.config import Config, PrivacySettings
from meshagent.dashboard import create_dashboard
from meshagent.ledger import approvals as store
from meshagent.ledger.records import Event, Outcome
from meshagent.ledger.store import Ledger

T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
OWNER = "dave@example.com"


def _stage(ledger: Ledger, run_id: str, key: str) -> store.Approval:
    return store.stage(ledger, run_id=run_id, agent="nudge", action="jira.add_comment",
                       source="deliver", payload={"key": key, "body": f"Still on track, {key}?"},
                       approvers=[OWNER], expires_at=T0 + timedelta(hours=4), now=T0)  # fmt: skip


def _decided(ledger: Ledger, approval: store.Approval, decision: str, **facts) -> None:
    assert store.claim(ledger, approval.id, decision=decision, by=OWNER,
                       seen_hash=approval.payload_hash, now=T0 + timedelta(minutes=5),
                       reason=facts.get("reason"))  # fmt: skip
    current = store.get(ledger, approval.id)
    status = "executed" if decision == "approved" else "rejected"
    store.finish(ledger, current, status=status, now=T0 + timedelta(minutes=5), **facts.get(
        "made", {}))  # fmt: skip


def test_the_run_page_shows_staged_writes_and_their_decisions(tmp_path):
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    with Ledger.open(url) as ledger:
        run_id = ledger.open_run("nudge", owner=OWNER, team="payments", started_at=T0)
        done, refused, waiting = (_stage(ledger, run_id, k) for k in ("PAY-8", "PAY-5", "PAY-6"))
        staged_call = Event("tool_staged", "jira.add_comment", '{"key": "PAY-6"}', T0)
        ledger.close_run(run_id, "ok", finished_at=T0 + timedelta(minutes=1), events=[staged_call])
        comment = Outcome("jira.comment", "PAY-8:10001", "http://jira.example/browse/PAY-8")
        made = {"made": [comment], "result": {"outcomes": [{"ref": "PAY-8:10001"}]}}
        _decided(ledger, done, "approved", made=made)
        _decided(ledger, refused, "rejected", reason="parked on purpose")
        config = Config(ledger_url=url, privacy=PrivacySettings(admins=("root",)))
        with TestClient(create_dashboard(config, ledger=ledger)) as client:
            answer = client.get(f"/api/runs/{run_id}", headers={"X-Forwarded-User": OWNER})
            page = client.get(f"/runs/{run_id}", headers={"X-Forwarded-User": OWNER}).text
            spec = client.get("/openapi.json").json()
    body = answer.json()
    shown = {a["id"]: a for a in body["approvals"]}
    assert shown[done.id]["status"] == "executed" and shown[done.id]["decided_by"] == OWNER
    assert shown[refused.id]["reason"] == "parked on purpose"
    assert shown[waiting.id]["status"] == "pending"
    assert shown[waiting.id]["payload"] == {"key": "PAY-6", "body": "Still on track, PAY-6?"}
    verdicts = {o["ref"]: o["verdict"] for o in body["outcomes"]}
    assert verdicts["PAY-8:10001"] == "accepted"
    assert verdicts[f"approval {refused.id}: jira.add_comment"] == "rejected"
    schema = spec["paths"]["/api/runs/{run_id}"]["get"]["responses"]["200"]["content"]
    jsonschema.validate(body, {**schema["application/json"]["schema"],
                               "components": spec["components"]},
                        cls=jsonschema.Draft202012Validator)  # fmt: skip
    assert 'data-testid="approvals"' in page and "staged for approval</span>" in page
    assert "Comment on PAY-6" in page and "parked on purpose" in page
    assert "&#34;key&#34;: &#34;PAY-5&#34;" in page or '"key": "PAY-5"' in page
