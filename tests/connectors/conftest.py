"""A fresh sandbox per test, and a helper that runs one action against it."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from meshagent.actions import ActionContext, ActionResult, default_registry
from meshagent.sandbox import Sandbox


@pytest.fixture
def cloud_sandbox():
    with Sandbox(jira_deployment="Cloud") as box:
        yield box


def run_action(
    box: Sandbox,
    name: str,
    args: dict[str, Any],
    grant: dict[str, Any] | None = None,
    *,
    dry_run: bool = False,
    env: dict[str, str] | None = None,
) -> ActionResult:
    """Run ``name`` through the registry, as the runtime does, against ``box``."""
    action = default_registry().get(name)
    parsed = action.args.model_validate(args)
    granted = action.grant.model_validate(grant) if grant is not None else None
    context = ActionContext(dry_run=dry_run, env=env if env is not None else box.env())
    return asyncio.run(action(context, parsed, granted))
