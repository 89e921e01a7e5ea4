"""A process killed with SIGKILL mid-run leaves an entry that the next start marks interrupted,
with the tokens it had already spent."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

from meshagent.ledger.store import Ledger

CHILD = textwrap.dedent(
    """
    import asyncio, sys
    from meshagent.config import Config
    from meshagent.ledger.store import Ledger
    from meshagent.agentfile.loader import parse_agent
    from meshagent.models import ScriptedChatModel
    from meshagent.runtime.runner import Runtime
    from meshagent.sandbox import Sandbox

    class Stalls(ScriptedChatModel):
        async def _agenerate(self, messages, *args, **kwargs):
            if len(self.calls) >= 1:
                await asyncio.sleep(3600)  # the second call never returns
            return await super()._agenerate(messages, *args, **kwargs)

    spec = parse_agent('''
    name: reactor
    owner: bob@example.com
    team: payments
    model: scripted
    instructions: React to the newest message.
    tools:
      - slack.add_reaction: {channels: ["#payments"]}
    value: {tag: toil-reduction}
    ''')
    model = Stalls(responses=[
        {"tool_calls": [{"name": "slack_add_reaction",
                         "args": {"channel": "#payments", "ts": "1.0", "name": "eyes"}}],
         "usage": {"input_tokens": 512, "output_tokens": 16}},
        "never reached",
    ])
    url = sys.argv[1]
    with Sandbox() as box, Ledger.open(url) as ledger:
        runtime = Runtime(Config(ledger_url=url), ledger=ledger, env=box.env(), chat_model=model)
        asyncio.run(runtime.run(spec))
    """
)


def test_sigkill_mid_run_leaves_an_entry_marked_interrupted_with_its_tokens(tmp_path):
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    Ledger.open(url).close()  # migrated before the child starts
    child = subprocess.Popen([sys.executable, "-c", CHILD, url], cwd=os.getcwd())
    try:
        with Ledger.open(url) as ledger:
            deadline = time.monotonic() + 60
            spent = None
            while time.monotonic() < deadline and child.poll() is None:
                rows = _entries(ledger)
                if rows and rows[0]["input_tokens"]:
                    spent = rows[0]
                    break
                time.sleep(0.05)
            assert spent is not None, "the child never recorded its first model call"
            assert spent["status"] == "running"
            child.send_signal(signal.SIGKILL)
            child.wait(timeout=10)
            recovered = ledger.recover()
            [entry] = _entries(ledger)
            verified = ledger.verify()
    finally:
        if child.poll() is None:
            child.kill()
    assert recovered == [entry["run_id"]]
    assert entry["status"] == "interrupted"
    assert (entry["input_tokens"], entry["output_tokens"], entry["model_calls"]) == (512, 16, 1)
    assert verified.ok


def _entries(ledger):
    from sqlalchemy import select

    from meshagent.ledger.schema import entries

    return ledger.read(lambda c: [dict(r) for r in c.execute(select(entries)).mappings()])
