"""`meshagent init`: a starter agent file that validates, with the editor schema beside it."""

from __future__ import annotations

import json
import os
from importlib import resources
from pathlib import Path

from meshagent.agentfile.loader import parse_agent
from meshagent.agentfile.schema import SCHEMA_FILENAME, schema_text
from meshagent.agentfile.spec import SLUG, SLUG_HINT
from meshagent.config import Config
from meshagent.exceptions import SpecError, SpecIssue

__all__ = ["TEMPLATE", "write_agent"]

TEMPLATE = """\
# yaml-language-server: $schema={schema}
name: {name}
description: One line on what this agent does and for whom.
owner: {owner}
team: {team}
model: {model}
instructions: |
  Summarise the context below in at most five lines for the team.
  Put anything that needs a decision or is blocked first. Be brief.
# It reads nothing and delivers nothing yet. Uncomment and adapt (these work against the
# sandbox: `meshagent sandbox`, its exports pasted into your shell):
# context:                        # read before the model runs; results go into the prompt
#   - jira.search: {{jql: "project = PAY AND statusCategory != Done"}}
# deliver:                        # where the answer goes
#   - slack.post_message: {{channel: "#payments"}}
# Then give it a trigger, so that `meshagent serve` runs it (a scheduled agent that delivers
# nothing is flagged as waste):
# triggers:
#   - schedule: "0 9 * * MON-FRI"   # crontab(5): 09:00 on weekdays
#     timezone: UTC
budget: {{max_tokens_per_run: 20000, max_model_calls: 4, max_usd_per_day: 1.0}}
value: {{tag: {tag}, minutes_saved: 10}}
"""


def write_agent(config: Config, *, name: str, team: str, owner: str) -> list[Path]:
    """Write ``agents/NAME.yaml``, its starter test ``agents/test_NAME.py`` (and the schema if
    the project has none); returns the paths."""
    if not SLUG.match(name):
        raise SpecError([SpecIssue("<name>", 0, 0, "name", f"{name!r}: use {SLUG_HINT}")])
    path = config.agents_dir / f"{name}.yaml"
    if path.exists():
        raise SpecError([SpecIssue(str(path), 0, 0, "", "already exists; not overwritten")])
    written: list[Path] = []
    schema_path = config.root / SCHEMA_FILENAME
    tag = "toil-reduction" if "toil-reduction" in config.value_tags else config.value_tags[0]
    text = TEMPLATE.format(
        schema=Path(os.path.relpath(schema_path, config.agents_dir)).as_posix(),
        name=name,
        owner=json.dumps(owner),  # quoted: an owner or team may hold YAML's special characters
        team=json.dumps(team),
        model=config.default_model,
        tag=tag,
    )
    # Validate before writing anything, so a bad --team or --owner leaves no file behind.
    parse_agent(text, filename=str(path), value_tags=config.value_tags)
    if not schema_path.exists():
        schema_path.write_text(schema_text(value_tags=config.value_tags), encoding="utf-8")
        written.append(schema_path)
    config.agents_dir.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    test = config.agents_dir / f"test_{name.replace('-', '_')}.py"
    if not test.exists():
        template = resources.files("meshagent").joinpath("templates/test_agent.py.txt")
        shown = Path(os.path.relpath(test, Path.cwd())).as_posix()
        test.write_text(template.read_text("utf-8").format(name=name, test=shown), encoding="utf-8")
        written.insert(0, test)
    return [path, *written]
