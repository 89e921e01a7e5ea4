"""MeshAgent: AI agents defined in YAML, with a ledger of what each task cost and delivered."""

from __future__ import annotations

from importlib import metadata as _metadata

from meshagent.actions import (
    Action,
    ActionArgs,
    ActionContext,
    ActionGrant,
    ActionKind,
    ActionResult,
    Connector,
    Outcome,
    Registry,
    default_registry,
)
from meshagent.config import Config, load_config
from meshagent.exceptions import (
    BudgetExceeded,
    ConfigError,
    ConnectorError,
    GrantDenied,
    LedgerError,
    MeshAgentError,
    RegistryError,
    RunError,
    SpecError,
    SpecIssue,
)
from meshagent.loader import load_agent, load_agents, parse_agent, scan_agents
from meshagent.spec import AgentSpec

try:
    __version__ = _metadata.version("meshagent")
except _metadata.PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0"

__all__ = [
    "Action",
    "ActionArgs",
    "ActionContext",
    "ActionGrant",
    "ActionKind",
    "ActionResult",
    "AgentSpec",
    "BudgetExceeded",
    "Config",
    "ConfigError",
    "Connector",
    "ConnectorError",
    "GrantDenied",
    "LedgerError",
    "MeshAgentError",
    "Outcome",
    "Registry",
    "RegistryError",
    "RunError",
    "SpecError",
    "SpecIssue",
    "__version__",
    "default_registry",
    "load_agent",
    "load_agents",
    "load_config",
    "parse_agent",
    "scan_agents",
]
