"""Fleet fixtures: an agents directory, a fleet over a temporary ledger, agent files as text."""

from __future__ import annotations

import textwrap
from pathlib import Path

from tests.ledger.conftest import pg_schema_url, pg_shared  # noqa: F401


def write_agent(
    directory: Path, name: str, body: str = "", every: str = "1s", model: str = "offline"
) -> Path:
    """An offline agent running every ``every``; ``body`` adds or overrides YAML lines."""
    text = textwrap.dedent(
        f"""\
        name: {name}
        owner: ops@example.com
        team: platform
        model: {model}
        instructions: Say what changed.
        triggers:
          - every: {every}
        value: {{tag: toil-reduction}}
        """
    ) + textwrap.dedent(body)
    path = directory / f"{name}.yaml"
    path.write_text(text, encoding="utf-8")
    return path
