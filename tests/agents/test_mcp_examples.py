"""agents/standup-wiki-page.yaml against the sandbox: Jira in, a page of the team wiki out, over
MCP (the sandbox's wiki is a real MCP server written with the SDK)."""

from __future__ import annotations

from pathlib import Path

from meshagent.models import ScriptedChatModel

AGENT = Path(__file__).resolve().parents[2] / "agents" / "standup-wiki-page.yaml"


def test_writes_the_standup_as_a_wiki_page(run_agent_file, sandbox):
    result = run_agent_file(AGENT)
    assert result.status == "ok", result.error
    [page] = sandbox.wiki.created()
    assert page.space == "ENG" and page.title.startswith("Payments standup 20")
    assert page.body == result.answer and "PAY-3" in page.body  # the blocked issue
    [outcome] = result.outcomes
    assert outcome.kind == "wiki.create_page" and outcome.url == page.link(sandbox.wiki.base_url)
    assert sandbox.slack.writes() == [] and sandbox.jira.writes() == []


def test_a_dry_run_writes_no_page_and_records_what_it_would_have_sent(
    run_agent_file, sandbox, ledger
):
    model = ScriptedChatModel(responses=["PAY-3 is blocked on card-vault credentials."])
    result = run_agent_file(AGENT, model=model, dry_run=True)
    assert result.status == "ok", result.error
    assert sandbox.wiki.created() == []
    [plan] = result.outcomes
    assert plan.planned
    [event] = ledger.events(result.run_id)
    assert event.kind == "tool_planned" and event.name == "wiki.create_page"
    assert '"body": "PAY-3 is blocked on card-vault credentials."' in event.detail
