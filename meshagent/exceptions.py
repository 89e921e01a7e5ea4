"""Every error MeshAgent raises, in one hierarchy.

    MeshAgentError
    ├── SpecError            a mistake in an agent file (carries every located issue at once)
    ├── ConfigError          a mistake in meshagent.toml or a MESHAGENT_* variable
    ├── RegistryError        a connector that cannot be registered or an action that does not exist
    ├── LedgerError          the ledger cannot be opened, written or verified
    └── RunError             a task that failed while running
        ├── BudgetExceeded   a limit of the agent's budget was reached
        ├── GrantDenied      an action call fell outside the agent's grant
        └── ConnectorError   a workplace tool answered with an error

Mistakes in what a user wrote (SpecError, ConfigError) are kept apart from failures at run time,
so a CLI can tell "fix your file" from "try again later". Messages are built from the fields.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal

__all__ = [
    "BudgetExceeded",
    "ConfigError",
    "ConnectorError",
    "GrantDenied",
    "LedgerError",
    "MeshAgentError",
    "RegistryError",
    "RunError",
    "SpecError",
    "SpecIssue",
]


class MeshAgentError(Exception):
    """Base class of every error MeshAgent raises on purpose."""


@dataclass(frozen=True, order=True)
class SpecIssue:
    """One located problem in an agent file."""

    file: str
    line: int
    column: int
    path: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}:{self.column}" if self.line else self.file
        return f"{where}: {self.path}: {self.message}" if self.path else f"{where}: {self.message}"


class SpecError(MeshAgentError):
    """One or more mistakes in agent files, each with file:line:column and the field path."""

    def __init__(self, issues: Iterable[SpecIssue]):
        self.issues: list[SpecIssue] = sorted(issues)
        super().__init__("\n".join(str(issue) for issue in self.issues))


class ConfigError(MeshAgentError):
    """A mistake in project configuration: meshagent.toml or a MESHAGENT_* variable."""

    def __init__(self, message: str, *, source: str | None = None, line: int | None = None):
        self.source = source
        self.line = line
        self.detail = message
        where = f"{source}:{line}: " if source and line else f"{source}: " if source else ""
        super().__init__(f"{where}{message}")


class RegistryError(MeshAgentError):
    """A connector could not be registered, or an action name is not known."""


class LedgerError(MeshAgentError):
    """The ledger could not be opened, written or verified."""


class RunError(MeshAgentError):
    """A task failed while it ran."""


class BudgetExceeded(RunError):
    """A limit of the agent's budget was reached; names the limit and the value seen."""

    def __init__(self, limit: str, *, allowed: int | Decimal, seen: int | Decimal):
        self.limit = limit
        self.allowed = allowed
        self.seen = seen
        super().__init__(f"budget {limit} exceeded: {seen} > {allowed}")


class GrantDenied(RunError):
    """An action call fell outside the scope the agent was granted."""

    def __init__(self, action: str, reason: str):
        self.action = action
        self.reason = reason
        super().__init__(f"{action} refused: {reason}")


class ConnectorError(RunError):
    """A workplace tool answered with an error: names the action, the target and the code."""

    def __init__(self, action: str, target: str, code: str):
        self.action = action
        self.target = target
        self.code = code
        target_text = f" {target}" if target else ""
        super().__init__(f"{action}{target_text}: {code}")
