"""MeshAgent: AI agents defined in YAML, with a ledger of what each task cost and delivered.

The public names below are imported when first used (PEP 562), so that ``meshagent --version``
and other light commands do not pay for pydantic models, connectors and their client libraries.
"""

from __future__ import annotations

import typing as _typing
from importlib import import_module as _import_module

if _typing.TYPE_CHECKING:
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
    from meshagent.agentfile.loader import load_agent, load_agents, parse_agent, scan_agents
    from meshagent.agentfile.spec import AgentSpec
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

    __version__: str

#: Where the public names live, lightest first: a name is imported from the first that has it.
_HOMES = (
    "meshagent.exceptions",
    "meshagent.config",
    "meshagent.actions",
    "meshagent.agentfile.spec",
    "meshagent.agentfile.loader",
)

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


def __getattr__(name: str) -> _typing.Any:
    """A public name, or a submodule (``meshagent.config``), imported on first use."""
    if name == "__version__":
        from importlib import metadata

        try:
            value: _typing.Any = metadata.version("meshagent")
        except metadata.PackageNotFoundError:  # a source tree that was not installed
            value = "0.0.0"
    elif name in __all__:
        homes = (_import_module(home) for home in _HOMES)
        value = next(getattr(home, name) for home in homes if hasattr(home, name))
    elif not name.startswith("_"):
        try:
            value = _import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"{__name__}.{name}":
                raise
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
