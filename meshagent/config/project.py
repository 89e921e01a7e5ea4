"""Config: the project's settings, every table of meshagent.toml in one validated model."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import parse_qs

from pydantic import AfterValidator, Field, ValidationInfo, field_validator

from meshagent.config.mcp import McpServerSettings, server_name
from meshagent.config.sections import (
    DEFAULT_VALUE_TAGS,
    DashboardSettings,
    FlagSettings,
    FollowupSettings,
    JiraSettings,
    ModelKey,
    PeopleSettings,
    PositiveFloat,
    PriceOverride,
    PrivacySettings,
    ServeSettings,
    SettingsModel,
    SlackSettings,
    ValueSettings,
)
from meshagent.config.urls import URL_HINT, default_ledger_url, mask_url, parse_url, sync_problem

# Fields of Config that describe where the settings came from; they are not settings themselves.
NOT_SETTINGS = ("source", "root")


class Config(SettingsModel):
    """Project settings: `meshagent.toml` with MESHAGENT_* environment overrides applied.

    Relative paths (agents_dir, a SQLite ledger file) are resolved against `root`.
    """

    source: Path | None = None
    """The settings file these settings came from; None when there was none."""
    root: Path = Field(default_factory=Path.cwd, validate_default=True)
    """Directory relative paths are resolved against: the file's directory, else the cwd."""
    agents_dir: Path = Field(Path("agents"), validate_default=True)
    """Directory of the agent files."""
    ledger_url: str = Field(default_factory=default_ledger_url, validate_default=True, repr=False)
    """SQLAlchemy URL of the ledger: sqlite:///file.db or postgresql+psycopg://user@host/db.
    Unset: .meshagent/ledger.db beside meshagent.toml, else in the user's data directory."""
    default_model: str = Field("offline", min_length=1)
    """Model of agents that name none, as provider:model; "offline" is the embedded model."""
    value_tags: tuple[str, ...] = DEFAULT_VALUE_TAGS
    """The value categories an agent may declare (value.tag)."""
    timeout_seconds: PositiveFloat = 600.0
    """Wall-clock limit of one run, in seconds."""
    max_concurrent_model_calls: int = Field(64, ge=1, le=100_000)
    """Model calls in flight at once per provider, across all runs of this process."""
    privacy: PrivacySettings = Field(default_factory=PrivacySettings)
    """Who may see what in reports."""
    people: PeopleSettings = Field(default_factory=PeopleSettings)
    """Who is at the keyboard: the CLI's default viewer and owner."""
    flags: FlagSettings = Field(default_factory=FlagSettings)
    """Thresholds of the tokenmaxxing flags."""
    value: ValueSettings = Field(default_factory=ValueSettings)
    """How evidenced minutes saved are credited."""
    followup: FollowupSettings = Field(default_factory=FollowupSettings)
    """How delivered outcomes are read back from Slack and Jira."""
    prices: dict[ModelKey, PriceOverride] = Field(default_factory=dict)
    """_Price overrides by "provider:model", for internal gateways and negotiated prices."""
    serve: ServeSettings = Field(default_factory=ServeSettings)
    """How `meshagent serve` runs the scheduled fleet."""
    dashboard: DashboardSettings = Field(default_factory=DashboardSettings)
    """Where the dashboard reads the viewer's identity."""
    slack: SlackSettings = Field(default_factory=SlackSettings)
    """Names of the environment variables of the Slack app."""
    jira: JiraSettings = Field(default_factory=JiraSettings)
    """Names of the environment variables of the Jira site."""
    connectors: dict[str, dict[str, Any]] = Field(default_factory=dict)
    """Settings of third-party connectors, by connector name; secrets go in the environment."""
    mcp: dict[Annotated[str, AfterValidator(server_name)], McpServerSettings] = Field(
        default_factory=dict
    )
    """MCP servers by name (`[mcp.NAME]`): their tools become the actions NAME.TOOL."""

    def connector_settings(self) -> dict[str, dict[str, Any]]:
        """Every connector's settings by its name: `[slack]`, `[jira]`, `[connectors.NAME]`,
        and each MCP server's `[mcp.NAME]`."""
        servers = {name: server.model_dump() for name, server in self.mcp.items()}
        return {
            **servers,
            **self.connectors,
            "slack": self.slack.model_dump(),
            "jira": self.jira.model_dump(),
        }

    @field_validator("root")
    @classmethod
    def _absolute_root(cls, value: Path) -> Path:
        return value.expanduser().absolute()

    @field_validator("agents_dir")
    @classmethod
    def _resolve_agents_dir(cls, value: Path, info: ValidationInfo) -> Path:
        root = info.data.get("root")
        value = value.expanduser()
        return root / value if root is not None and not value.is_absolute() else value

    @field_validator("ledger_url")
    @classmethod
    def _check_ledger_url(cls, value: str, info: ValidationInfo) -> str:
        url = parse_url(value)
        if url is None or url.backend not in ("sqlite", "postgresql"):
            raise ValueError(f"{mask_url(value)!r} is not a SQLite or PostgreSQL URL: {URL_HINT}")
        sync = parse_qs(url.query or "").get("sync")
        problem = sync_problem(url.backend, sync[0] if sync and len(sync) == 1 else sync)
        if problem:
            raise ValueError(problem)
        database = url.database
        root = info.data.get("root")
        if url.backend != "sqlite" or not database or root is None:
            return value
        if database == ":memory:" or database.startswith("file:"):
            return value
        path = Path(database).expanduser()
        if path.is_absolute() and str(path) == database:
            return value
        return url.with_database(str(root / path))

    @field_validator("value_tags")
    @classmethod
    def _check_value_tags(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value:
            raise ValueError("at least one value tag is needed")
        for tag in value:
            if not re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*", tag):
                raise ValueError(f"{tag!r} is not a tag: use lowercase letters, digits and dashes")
        if len(set(value)) != len(value):
            twice = next(tag for tag in value if value.count(tag) > 1)
            raise ValueError(f"{twice!r} is listed twice")
        return value
