"""Project settings: meshagent.toml (found upward from the cwd) with MESHAGENT_* overrides."""

from __future__ import annotations

from meshagent.config.environment import NON_SETTING_VARIABLES, setting_variables
from meshagent.config.loader import CONFIG_FILENAME, find_config, load_config
from meshagent.config.messages import looks_secret
from meshagent.config.project import Config
from meshagent.config.sections import (
    DEFAULT_MIN_INTERVAL_SECONDS,
    DEFAULT_VALUE_TAGS,
    DashboardSettings,
    FlagSettings,
    FollowupSettings,
    JiraSettings,
    PeopleSettings,
    PriceOverride,
    PrivacySettings,
    ServeSettings,
    SlackSettings,
    ValueSettings,
)
from meshagent.config.urls import default_ledger_url, mask_url

__all__ = [
    "CONFIG_FILENAME",
    "DEFAULT_MIN_INTERVAL_SECONDS",
    "DEFAULT_VALUE_TAGS",
    "NON_SETTING_VARIABLES",
    "Config",
    "DashboardSettings",
    "FlagSettings",
    "FollowupSettings",
    "JiraSettings",
    "PeopleSettings",
    "PriceOverride",
    "PrivacySettings",
    "ServeSettings",
    "SlackSettings",
    "ValueSettings",
    "default_ledger_url",
    "find_config",
    "load_config",
    "looks_secret",
    "mask_url",
    "setting_variables",
]
