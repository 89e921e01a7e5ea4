"""The `[people] aliases` of meshagent.toml are linked when the ledger commands open it."""

from __future__ import annotations

from typer.testing import CliRunner

from meshagent.cli.main import app
from meshagent.ledger.people import person_of
from meshagent.ledger.store import Ledger


def test_a_ledger_command_links_the_aliases(tmp_path, monkeypatch):
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    (tmp_path / "meshagent.toml").write_text(
        f'ledger_url = "{url}"\n'
        "[people]\n"
        'me = "alice@example.com"\n'
        'aliases = {"alice@example.com" = ["U0ALICE01", "alice"]}\n'
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MESHAGENT_LEDGER_URL", raising=False)
    done = CliRunner().invoke(app, ["ledger", "report"])
    assert done.exit_code == 0, done.output
    with Ledger.open(url) as ledger:
        person = person_of(ledger, "U0ALICE01")
        assert person is not None and person.name == "alice@example.com"
        assert person_of(ledger, "ALICE").id == person.id
