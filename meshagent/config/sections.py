"""Project settings: `meshagent.toml` (found upward from the cwd), each setting overridable by a
MESHAGENT_* variable; every mistake is reported at once, each with its file:line or variable.
"""

from __future__ import annotations

import difflib
import os
import re
import tomllib
import types
from collections.abc import Iterator, Mapping
from decimal import Decimal
from functools import cache
from pathlib import Path
from typing import Annotated, Any, NamedTuple, Union, get_args, get_origin

import platformdirs
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
)
from pydantic.fields import FieldInfo
from pydantic_core import PydanticCustomError

from meshagent.exceptions import ConfigError
from meshagent.mcp.settings import McpServerSettings, server_name

__all__ = [
    "CONFIG_FILENAME",
    "DEFAULT_MIN_INTERVAL_SECONDS",
    "DEFAULT_VALUE_TAGS",
    "NON_SETTING_VARIABLES",
    "Config",
    "DashboardSettings",
    "FlagSettings",
    "JiraSettings",
    "PriceOverride",
    "PrivacySettings",
    "SlackSettings",
    "ValueSettings",
    "find_config",
    "load_config",
    "looks_secret",
    "mask_url",
    "setting_variables",
]

DEFAULT_VALUE_TAGS = (
    "toil-reduction",
    "incident-response",
    "customer-support",
    "code-quality",
    "knowledge-sharing",
    "planning",
    "experiment",
)
CONFIG_FILENAME = "meshagent.toml"
#: The shortest `every:` interval by default: a minute, the resolution of cron itself.
DEFAULT_MIN_INTERVAL_SECONDS = 60.0
ENV_PREFIX = "MESHAGENT_"
# MESHAGENT_* variables that are not settings, so they are not refused as misspelt ones.
NON_SETTING_VARIABLES = ("MESHAGENT_CONFIG", "MESHAGENT_HOME")
# Fields of Config that describe where the settings came from; they are not settings themselves.
_NOT_SETTINGS = ("source", "root")
_Loc = tuple[str | int, ...]  # a place in the settings: keys, and indexes of lists
_Lines = Mapping[_Loc, int]
_URL_HINT = "use sqlite:///path/to/ledger.db or postgresql+psycopg://user@host:5432/dbname"


def _no_bool(value: Any) -> Any:
    # In pydantic's lax mode TOML's true/false would pass as the numbers 1 and 0.
    if isinstance(value, bool):
        raise PydanticCustomError("bool_not_number", "a boolean is not a number")
    return value


def _env_name(value: str) -> str:
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", value):
        raise PydanticCustomError("env_name", "not the name of an environment variable")
    return value


def _model_key(key: str) -> str:
    if key in ("offline", "scripted"):  # the built-in models, priced to show what-if costs
        return key
    provider, _, model = key.partition(":")
    if not (provider and model):
        raise ValueError(f"{key!r} is not 'provider:model', such as 'openai:gpt-4.1-mini'")
    return key


_PositiveInt = Annotated[int, BeforeValidator(_no_bool), Field(ge=1)]
_PositiveFloat = Annotated[float, BeforeValidator(_no_bool), Field(gt=0)]
_Price = Annotated[Decimal, BeforeValidator(_no_bool), Field(ge=0)]
_EnvName = Annotated[str, AfterValidator(_env_name)]
_ModelKey = Annotated[str, AfterValidator(_model_key)]


class _Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)


class PrivacySettings(_Settings):
    """`[privacy]`: who may see what in reports."""

    min_group_size: _PositiveInt = 5
    """Team-level reports fold groups of fewer distinct people than this into "other"."""
    admins: tuple[str, ...] = ()
    """People (emails or Slack user ids) who see every row, including other people's."""


class PeopleSettings(_Settings):
    """`[people]`: who the people at this project's keyboards are."""

    me: str | None = Field(None, min_length=1)
    """Who runs the CLI here (email or Slack id): the ledger's default viewer, an agent's
    default owner. Unset: git's user.email, then $USER."""
    aliases: dict[str, tuple[str, ...]] = Field(default_factory=dict)
    """A person's other names, by one of their names: `"alice@example.com" = ["U012ABCDEF",
    "alice"]` (Slack user ids, emails, logins). The ledger counts each group as one person."""


class ServeSettings(_Settings):
    """`[serve]`: how `meshagent serve` runs the scheduled fleet."""

    misfire_grace_seconds: _PositiveFloat = 300.0
    """A fire that starts later than this is recorded as missed instead of run."""
    shutdown_timeout_seconds: _PositiveFloat = 30.0
    """On SIGTERM, running tasks get this long to finish before they are interrupted."""
    claim_lease_seconds: _PositiveFloat = 60.0
    """With several replicas: a claim not renewed for this long belongs to a dead replica."""
    reload_seconds: _PositiveFloat = 1.0
    """How often the agents directory is checked for added, changed and removed files."""
    backoff_after_failures: _PositiveInt = 3
    """An agent whose last N runs failed waits before its next run (doubling, up to an hour)."""
    min_interval_seconds: _PositiveFloat = DEFAULT_MIN_INTERVAL_SECONDS
    """The shortest `every:` interval an agent file may have (60: cron's own resolution)."""


class DashboardSettings(_Settings):
    """`[dashboard]`: who is looking at the ledger dashboard."""

    viewer_header: str = Field("X-Forwarded-User", pattern=r"^[A-Za-z0-9-]+$")
    """Request header in which the company's auth proxy names the signed-in person; only
    trustworthy when every request comes through that proxy, which sets or strips it."""


class FlagSettings(_Settings):
    """`[flags]`: the thresholds of the tokenmaxxing flags (`meshagent.ledger.flags`).

    Chosen from what a reasonable team would call waste, not fitted to any one organisation:
    a flag needs a volume no honest agent reaches by chance and a sum worth a conversation.
    """

    min_usd: Annotated[float, BeforeValidator(_no_bool), Field(ge=0)] = 0.5
    """Dollars at stake in the period below which a waste flag is raised only for a habit
    (`habit_runs`): a coffee's worth once is not worth a conversation; self-votes and
    rejections are raised whatever they cost."""
    history_days: _PositiveInt = 28
    """How far before the period the rules look for an agent's own cadence and past."""
    habit_runs: _PositiveInt = 20
    """A waste flag under `min_usd` is still raised when its pattern shows in this many runs
    over the `history_days` up to the period's end (about one each working day of four weeks),
    half of them before the period: a cheap habit is waste with evidence, and stays when prices
    fall; a one-week spree is not a habit."""
    burst_factor: _PositiveFloat = 5.0
    """A day's spend of an agent (or of one person's runs of it) over this factor times the
    agent's median day with runs is a burst."""
    burst_window_days: _PositiveInt = 14
    """An agent needs this many days of history (and 5 days with runs) before a burst counts."""
    burst_min_usd: Annotated[float, BeforeValidator(_no_bool), Field(ge=0)] = 1.0
    """A burst must spend at least this many dollars above the agent's median day."""
    burst_breadth_people: _PositiveInt = 3
    """A burst requested by this many people besides the owner is demand, not a burst."""
    no_outcome_min_runs: _PositiveInt = 10
    """No-outcome needs at least this many runs without an outcome in the period (dry runs,
    failures and declared quiet results left out)."""
    no_outcome_share: Annotated[float, BeforeValidator(_no_bool), Field(gt=0, le=1)] = 0.5
    """...and at least this share of the agent's runs that spent tokens."""
    failure_min_runs: _PositiveInt = 5
    """Reliability: at least this many failed, over-budget or interrupted runs in the period..."""
    failure_share: Annotated[float, BeforeValidator(_no_bool), Field(gt=0, le=1)] = 0.3
    """...making at least this share of the agent's runs."""
    no_reaction_runs: _PositiveInt = 40
    """Unread: this many delivered outputs within `history_days` with no engagement by anyone
    but the owner and the triggerer (most honest output draws none, so it takes a volume)."""
    audience_of_one_runs: _PositiveInt = 5
    """Unread: this many outputs in the period that nobody but the owner could see."""
    unchanged_rerun_min: _PositiveInt = 3
    """Flag this many runs in the period that spent tokens on the input of the agent's last ok
    run (a retry after a failure, or another person asking, left out)."""
    token_outlier_factor: _PositiveFloat = 4.0
    """Tokens per run with an outcome over this factor times the median of agents with the same
    value tag, and over `token_outlier_own_factor` times the agent's own past, are flagged."""
    token_outlier_own_factor: _PositiveFloat = 2.5
    """See token_outlier_factor; an agent without `history_days` of past is left alone."""
    negative_feedback_min_votes: _PositiveInt = 3
    """Flag a majority of rejections (votes, rejected outcomes) once there are this many."""
    self_vote_min: _PositiveInt = 3
    """Flag this many positive votes by a run's own owner or triggerer, at least one in the
    period and the rest in the `history_days` before it."""
    claimed_minutes_min: _PositiveInt = 600
    """Claimed value: flag claims over this many minutes in the period..."""
    claimed_factor: _PositiveFloat = 3.0
    """...and over this factor times what its fires and distinct requests could support
    (minutes_saved once per fire or request, at most `[value] weekly_cap_minutes`)."""
    split_min_runs: _PositiveInt = 10
    """One task split into many runs: this many runs by one person, each within
    `[value] request_gap_minutes` of the last."""
    loop_runs_per_day: _PositiveInt = 25
    """One person running one slash agent this many times in a day is looping it."""
    off_schedule_tolerance_minutes: Annotated[int, BeforeValidator(_no_bool), Field(ge=0)] = 10
    """Runs starting more than this many minutes away from the declared schedule are flagged."""
    off_schedule_min_runs: _PositiveInt = 3
    """...once there are this many in the period (one late start is a busy machine)."""


class ValueSettings(_Settings):
    """`[value]`: how minutes saved are credited from evidence (`meshagent.ledger.value`)."""

    weekly_cap_minutes: _PositiveInt = 1200
    """At most this many evidenced minutes per agent per week (20 hours: half a person)."""
    request_gap_minutes: _PositiveInt = 2
    """Runs of one agent by one person each within this many minutes of the last are one
    request: credited once, however many runs it was split into."""
    prior_runs: _PositiveInt = 20
    """The value figure that ranks agents (`value_per_dollar`) weighs a group's own evidenced
    minutes per dollar by its judged runs against this many runs of the typical group's: people
    engage with about one in 10-20 useful outputs, so silence over fewer runs says little."""


class FollowupSettings(_Settings):
    """`[followup]`: the pass that reads delivered outcomes back (`meshagent.followup`)."""

    first_check_hours: _PositiveFloat = 24.0
    """An outcome is first read back this long after delivery (a day)."""
    final_check_hours: _PositiveFloat = 168.0
    """And finally this long after (a week): without engagement by then it is ignored."""
    max_calls_per_pass: _PositiveInt = 200
    """At most this many Slack and Jira API calls per pass; the rest wait for the next."""
    interval_minutes: _PositiveInt = 15
    """How often `meshagent serve` runs a pass (one replica at a time)."""
    enabled: bool = True
    """`false`: `meshagent serve` runs no pass (`meshagent ledger follow-up` still does)."""


class PriceOverride(_Settings):
    """`[prices."provider:model"]`: our own price, in USD per million tokens."""

    input_per_mtok: _Price
    """USD per million input tokens."""
    output_per_mtok: _Price
    """USD per million output tokens."""
    cache_read_per_mtok: _Price | None = None
    """USD per million tokens read from the prompt cache; None prices them as input."""
    cache_write_per_mtok: _Price | None = None
    """USD per million tokens written to the prompt cache; None prices them as input."""


class SlackSettings(_Settings):
    """`[slack]`: the names of the variables that hold Slack secrets, never the secrets."""

    token_env: _EnvName = "SLACK_BOT_TOKEN"
    """Variable holding the bot token (xoxb-...)."""
    api_url_env: _EnvName = "SLACK_API_URL"
    """Variable holding the Web API base URL, set to point at a sandbox."""
    app_token_env: _EnvName = "SLACK_APP_TOKEN"
    """Variable holding the app-level token (xapp-...) for Socket Mode."""
    signing_secret_env: _EnvName = "SLACK_SIGNING_SECRET"
    """Variable holding the signing secret that HTTP requests are checked with."""
    admins: tuple[str, ...] = ()
    """Slack user ids allowed to run admin commands of /meshagent."""


class JiraSettings(_Settings):
    """`[jira]`: the names of the variables that hold the Jira site and credentials."""

    url_env: _EnvName = "JIRA_URL"
    """Variable holding the site URL, such as https://example.atlassian.net."""
    email_env: _EnvName = "JIRA_EMAIL"
    """Variable holding the account email used with an API token (Jira Cloud)."""
    api_token_env: _EnvName = "JIRA_API_TOKEN"
    """Variable holding the API token of that account (Jira Cloud)."""
    token_env: _EnvName = "JIRA_TOKEN"
    """Variable holding a personal access token (Jira Data Center), used when set."""


def default_ledger_url() -> str:
    """The SQLite file in the user's data directory, used when no ledger URL is configured."""
    return f"sqlite:///{Path(platformdirs.user_data_dir('meshagent')) / 'ledger.db'}"


def _project_ledger_url(settings_file: Path) -> str:
    """The default ledger of a project: beside its meshagent.toml, so that two projects on one
    machine never share a ledger."""
    return f"sqlite:///{settings_file.absolute().parent / '.meshagent' / 'ledger.db'}"


class Config(_Settings):
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
    timeout_seconds: _PositiveFloat = 600.0
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
    prices: dict[_ModelKey, PriceOverride] = Field(default_factory=dict)
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
        url = _parse_url(value)
        if url is None or url.backend not in ("sqlite", "postgresql"):
            raise ValueError(f"{mask_url(value)!r} is not a SQLite or PostgreSQL URL: {_URL_HINT}")
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


# --- URLs ---------------------------------------------------------------------------------------

_SECRET_QUERY = re.compile(r"([?&](?:password|passwd|pwd|secret|token)=)[^&]*", re.IGNORECASE)


# scheme[+driver]://[user[:password]@][host][:port][/database][?query], as SQLAlchemy reads a
# URL: read here without SQLAlchemy, whose import costs more than a light command's whole run;
# the engine parses the URL again when the ledger is opened.
_URL = re.compile(
    r"(?P<scheme>[A-Za-z][\w+]*)://"
    r"(?:(?P<user>[^:/@]*)(?::(?P<password>[^@]*))?@)?"
    r"(?P<host>\[[^\]/?]*\]|[^/:?]*)(?::(?P<port>[^/?]*))?"
    r"(?:/(?P<database>[^?]*))?(?:\?(?P<query>.*))?",
    re.DOTALL,
)


class _UrlParts(NamedTuple):
    scheme: str
    backend: str
    password: str | None
    database: str | None
    query: str | None

    def with_database(self, database: str) -> str:
        """The URL of a SQLite database at ``database`` (its query kept as written)."""
        return f"{self.scheme}:///{database}" + (f"?{self.query}" if self.query else "")


def _parse_url(value: str) -> _UrlParts | None:
    found = _URL.fullmatch(value) if isinstance(value, str) else None
    if found is None or (found["port"] and not found["port"].isdigit()):
        return None
    backend = found["scheme"].partition("+")[0]
    return _UrlParts(
        found["scheme"], backend, found["password"], found["database"] or None, found["query"]
    )


def mask_url(url: str) -> str:
    """`url` with any password (user:password@, ?password=) replaced by ***, fit for messages.

    The rest of the URL is kept as written, parsable or not.
    """
    # The userinfo pattern is SQLAlchemy's own, so what it would read as a password is masked;
    # the second catches URLs that lost their scheme, such as user:password@host/db.
    url, count = re.subn(r"^([\w+]+://[^:/]*:)[^@]*@", r"\1***@", url)
    if not count and "://" not in url:
        url = re.sub(r"^([^:/@]*:)[^@]*@", r"\1***@", url)
    return _SECRET_QUERY.sub(r"\1***", url)


def _has_password(url: str) -> bool:
    parsed = _parse_url(url)
    return bool(parsed is not None and parsed.password) or bool(_SECRET_QUERY.search(url))


# --- which file ---------------------------------------------------------------------------------


def find_config(start: Path | None = None) -> Path | None:
    """The nearest `meshagent.toml` in `start` (default: the cwd) or a directory above it."""
    start = (start or Path.cwd()).absolute()
    for directory in (start, *start.parents):
        candidate = directory / CONFIG_FILENAME
        if candidate.is_file():
            return candidate
    return None


def _choose_file(
    path: str | Path | None, cwd: Path, env: Mapping[str, str]
) -> tuple[Path | None, str]:
    """The file to read and the name errors show it by."""
    named_by = ""
    if path is None and env.get("MESHAGENT_CONFIG"):
        path, named_by = env["MESHAGENT_CONFIG"], " (named by MESHAGENT_CONFIG)"
    if path is None:
        found = find_config(cwd)
        return found, str(found)
    file = cwd / Path(path).expanduser()
    if file.is_dir():
        raise ConfigError(f"is a directory, not a settings file{named_by}", source=str(path))
    if not file.is_file():
        raise ConfigError(f"no such settings file{named_by}", source=str(path))
    return file, str(path)


def _read(file: Path, shown: str) -> tuple[dict[str, Any], dict[_Loc, int]]:
    """The file's settings and the line of each key path in it."""
    try:
        raw = file.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read: {exc.strerror}", source=shown) from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise ConfigError("not UTF-8 text", source=shown, line=line) from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        message = str(exc)
        at = re.search(r" \(at line (\d+), column (\d+)\)$", message)
        if at:
            detail = f"invalid TOML: {message[: at.start()]} (column {at[2]})"
            raise ConfigError(detail, source=shown, line=int(at[1])) from None
        detail = f"invalid TOML: {message.replace(' (at end of document)', '')} (at the end)"
        raise ConfigError(detail, source=shown, line=max(1, len(text.splitlines()))) from None
    return data, _key_lines(text)


# --- lines of keys: tomllib keeps none, so the text is scanned for headers and `key =` ---------

_SIMPLE_KEY = r"""(?:[A-Za-z0-9_-]+|"(?:[^"\\\n]|\\.)*"|'[^'\n]*')"""
_KEY = rf"{_SIMPLE_KEY}(?:[ \t]*\.[ \t]*{_SIMPLE_KEY})*"
_HEADER = re.compile(rf"[ \t]*(\[\[?)[ \t]*({_KEY})[ \t]*\]")
_ASSIGNMENT = re.compile(rf"[ \t]*({_KEY})[ \t]*=")


def _split_key(text: str) -> tuple[str, ...]:
    # tomllib itself unquotes the parts, escapes included.
    node: Any = tomllib.loads(f"{text} = 0")
    parts: list[str] = []
    while isinstance(node, dict):
        (part, node), *_ = node.items()
        parts.append(part)
    return tuple(parts)


class _ValueScan:
    """Where a value that spans lines ends: open multi-line strings and brackets."""

    def __init__(self) -> None:
        self.quote = ""
        self.depth = 0

    @property
    def open(self) -> bool:
        return bool(self.quote) or self.depth > 0

    def feed(self, text: str) -> None:
        i = 0
        while i < len(text):
            if self.quote:
                if self.quote == '"""' and text[i] == "\\":
                    i += 2
                elif text.startswith(self.quote, i):
                    run = len(text[i:]) - len(text[i:].lstrip(self.quote[0]))
                    i += min(run, 5)  # up to two quotes before the closing three are content
                    self.quote = ""
                else:
                    i += 1
                continue
            char = text[i]
            if char == "#":
                return
            if text.startswith(('"""', "'''"), i):
                self.quote = text[i : i + 3]
                i += 3
                continue
            if char == '"':
                match = re.match(r'"(?:[^"\\]|\\.)*"', text[i:])
                i += len(match[0]) if match else len(text)
                continue
            if char == "'":
                end = text.find("'", i + 1)
                i = end + 1 if end >= 0 else len(text)
                continue
            if char in "[{":
                self.depth += 1
            elif char in "]}":
                self.depth -= 1
            i += 1


def _key_lines(text: str) -> dict[_Loc, int]:
    """The line of every key path defined in a (valid) TOML text, tables included.

    Elements of arrays of tables get their index in the path, as in validation errors.
    """
    lines: dict[_Loc, int] = {}
    table: _Loc = ()
    arrays: dict[tuple[str, ...], int] = {}  # array of tables -> index of its last element
    value = _ValueScan()
    for number, line in enumerate(text.splitlines(), start=1):
        if value.open:
            value.feed(line)
            continue
        if header := _HEADER.match(line):
            raw = _split_key(header[2])
            if header[1] == "[[":
                arrays[raw] = arrays.get(raw, -1) + 1
            path: list[str | int] = []
            for i, part in enumerate(raw, start=1):
                path.append(part)
                lines.setdefault(tuple(path), number)
                if raw[:i] in arrays:
                    path.append(arrays[raw[:i]])
                    lines.setdefault(tuple(path), number)
            table = tuple(path)
        elif assignment := _ASSIGNMENT.match(line):
            key = _split_key(assignment[1])
            for i in range(1, len(key) + 1):
                lines.setdefault(table + key[:i], number)
            value.feed(line[assignment.end() :])
    return lines


def _line_of(loc: _Loc, lines: _Lines) -> int | None:
    """The line of `loc`, else of the nearest table around it that is in the file."""
    for end in range(len(loc), 0, -1):
        if loc[:end] in lines:
            return lines[loc[:end]]
    return None


# --- messages -----------------------------------------------------------------------------------


def _dotted(loc: _Loc) -> str:
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            name = part if re.fullmatch(r"[A-Za-z0-9_-]+", part) else f'"{part}"'
            text += f".{name}" if text else name
    return text


def _unwrap(annotation: Any) -> tuple[Any, list[Any]]:
    """The type under Annotated[...] and `| None`, with the constraints found on the way."""
    metadata: list[Any] = []
    while True:
        if get_origin(annotation) is Annotated:
            annotation, *extra = get_args(annotation)
            for item in extra:
                metadata.extend(item.metadata if isinstance(item, FieldInfo) else [item])
        elif get_origin(annotation) in (Union, types.UnionType):
            members = [arg for arg in get_args(annotation) if arg is not type(None)]
            if len(members) != 1:
                return annotation, metadata
            annotation = members[0]
        else:
            return annotation, metadata


def _field_at(loc: _Loc) -> tuple[Any, list[Any], FieldInfo | None]:
    """The type, constraints and field (if `loc` ends at one) of a place in the settings."""
    annotation: Any = Config
    metadata: list[Any] = []
    info: FieldInfo | None = None
    for part in loc:
        annotation, _ = _unwrap(annotation)
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            info = annotation.model_fields.get(str(part))
            if info is None:
                return Any, [], None
            annotation, metadata = info.annotation, list(info.metadata)
        elif get_origin(annotation) in (dict, tuple):
            annotation = get_args(annotation)[-1 if get_origin(annotation) is dict else 0]
            metadata, info = [], None
        else:
            return Any, [], None
    annotation, more = _unwrap(annotation)
    return annotation, metadata + more, info


def _expected(annotation: Any, metadata: list[Any]) -> str:
    if annotation is int:
        text = "an integer"
    elif annotation in (float, Decimal):
        text = "a number"
    elif annotation is str:
        text = "a string"
        if any(getattr(item, "min_length", 0) for item in metadata):
            text = "a non-empty string"
    elif annotation is Path:
        text = "a path"
    elif get_origin(annotation) is tuple:
        text = "a list of strings"
    elif get_origin(annotation) is dict or (
        isinstance(annotation, type) and issubclass(annotation, BaseModel)
    ):
        text = "a table"
    else:
        text = "a valid value"
    for item in metadata:  # annotated_types' Ge and Gt, as pydantic keeps them
        if getattr(item, "ge", None) is not None:
            text += f" >= {item.ge}"
        elif getattr(item, "gt", None) is not None:
            text += f" > {item.gt}"
    return text


def _shown(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return repr(value)
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list | tuple):
        return "a list"
    return str(value)


def _close(word: str, choices: list[str]) -> str | None:
    found = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    return found[0] if found else None


def looks_secret(key: str) -> bool:
    """True for keys such as token, bot_token, apiKey, client_secret, password (not *_env)."""
    words = re.split(r"[^a-z0-9]+", re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", key).lower())
    if words[-1] == "env":
        return False
    if {"password", "passwd", "passphrase", "secret"} & set(words):
        return True
    if words[-1] in ("token", "apikey", "credential", "credentials"):
        return True
    return words[-1] == "key" and len(words) > 1 and words[-2] in ("api", "private", "access")


def _secret_message(loc: _Loc, valid: list[str] | None) -> str:
    """For a secret-looking key; `valid` is None in free-form tables."""
    key = str(loc[-1])
    message = f"{_dotted(loc)!r} looks like a secret: put secrets in the environment"
    env_keys = [name for name in valid or () if name.endswith("_env") and looks_secret(name[:-4])]
    if valid is None or f"{key}_env" in env_keys:
        message += f"; name the variable with {key}_env"
        default = None if valid is None else _field_at((*loc[:-1], f"{key}_env"))[2]
        if default is not None:
            message += f' ({key}_env = "{default.default}")'
        return message
    if env_keys:
        return f"{message}; name the variable with one of {', '.join(env_keys)}"
    return f"{message}, never in the settings file"


def _unknown_message(loc: _Loc) -> str:
    model, _, _ = _field_at(loc[:-1])
    valid = [name for name in model.model_fields if loc[:-1] or name not in _NOT_SETTINGS]
    key = str(loc[-1])
    if looks_secret(key):
        return _secret_message(loc, valid)
    message = f"unknown setting {_dotted(loc)!r}"
    if best := _close(key, valid):
        message += f"; did you mean {_dotted((*loc[:-1], best))!r}?"
    return f"{message} (valid: {', '.join(valid)})"


def _error_message(error: Any, loc: _Loc, where: str, raw: str | None) -> str:
    """One pydantic error at `loc` as a sentence; `raw` is the value of an environment variable."""
    if error["type"] == "extra_forbidden":
        return _unknown_message(loc)
    if error["type"] in ("value_error", "assertion_error"):
        return f"{where}: {error['ctx']['error']}"
    if error["type"] == "missing":
        return f"{where}: required setting is missing"
    annotation, metadata, info = _field_at(loc)
    if str(loc[-1]).endswith("_env"):  # the value may well be the secret itself: never show it
        example = f", such as {info.default}" if info is not None else ""
        return f"{where}: expected the name of an environment variable{example} (value not shown)"
    got = repr(raw) if raw is not None else _shown(error["input"])
    return f"{where}: expected {_expected(annotation, metadata)}, got {got}"


# --- environment --------------------------------------------------------------------------------


@cache
def _variables() -> dict[str, tuple[str, ...]]:
    variables: dict[str, tuple[str, ...]] = {}
    for name, info in Config.model_fields.items():
        annotation, _ = _unwrap(info.annotation)
        if name in _NOT_SETTINGS or get_origin(annotation) is dict:
            continue  # tables keyed by free names (prices, connectors) are set in the file only
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            for sub, field in annotation.model_fields.items():
                if get_origin(_unwrap(field.annotation)[0]) is dict:
                    continue  # such as [people] aliases: keyed by free names, file only
                variables[f"{ENV_PREFIX}{name}__{sub}".upper()] = (name, sub)
        else:
            variables[f"{ENV_PREFIX}{name}".upper()] = (name,)
    return variables


def setting_variables() -> dict[str, tuple[str, ...]]:
    """Every MESHAGENT_* variable that overrides a setting, with the setting's path.

    Derived from the models: MESHAGENT_<FIELD> and MESHAGENT_<TABLE>__<FIELD>.
    """
    return dict(_variables())


def _unknown_variable(name: str) -> str:
    variables = list(_variables())
    message = f"{name}: not a setting variable"
    names = [variable.removeprefix(ENV_PREFIX) for variable in variables]
    if best := _close(name.removeprefix(ENV_PREFIX), names):
        message += f"; did you mean {ENV_PREFIX}{best}?"
    table, nested, _ = name.partition("__")
    valid = [variable for variable in variables if nested and variable.startswith(table + "__")]
    if not valid:
        valid = [variable for variable in variables if "__" not in variable]
        tables = sorted({variable.partition("__")[0] for variable in variables} - set(valid))
        valid += [f"{table}__<KEY>" for table in tables]
    return f"{message} (valid: {', '.join(valid)})"


class _Override(NamedTuple):
    variable: str
    raw: str
    value: str | tuple[str, ...]


def _environment(env: Mapping[str, str]) -> tuple[dict[tuple[str, ...], _Override], list[str]]:
    """The settings set by `env`, by path, and the problems with its MESHAGENT_* names."""
    overrides: dict[tuple[str, ...], _Override] = {}
    problems: list[str] = []
    for name in sorted(env):
        if not name.startswith(ENV_PREFIX) or name in NON_SETTING_VARIABLES:
            continue
        path = _variables().get(name)
        if path is None:
            problems.append(_unknown_variable(name))
            continue
        raw = env[name]
        value: str | tuple[str, ...] = raw
        if get_origin(_field_at(path)[0]) is tuple:  # lists are comma-separated
            value = tuple(part.strip() for part in raw.split(",") if part.strip())
        overrides[path] = _Override(name, raw, value)
    return overrides, problems


def _merge(settings: dict[str, Any], overrides: Mapping[tuple[str, ...], _Override]) -> dict:
    merged = dict(settings)
    for path, override in overrides.items():
        if len(path) == 1:
            merged[path[0]] = override.value
        else:
            table = merged.get(path[0])
            merged[path[0]] = {
                **(table if isinstance(table, dict) else {}),
                path[1]: override.value,
            }
    return merged


# --- loading ------------------------------------------------------------------------------------


class _Issue(NamedTuple):
    line: int  # 0 when not known
    detail: str


def _secret_keys(value: Any, loc: _Loc) -> Iterator[_Loc]:
    if isinstance(value, dict):
        for key, item in value.items():
            if looks_secret(key):
                yield (*loc, key)
            else:
                yield from _secret_keys(item, (*loc, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _secret_keys(item, (*loc, index))


def _file_problems(data: dict[str, Any], lines: _Lines) -> list[_Issue]:
    """What validation of the models cannot see: non-settings and secrets in the file."""
    issues = [
        _Issue(lines.get((key,), 0), _unknown_message((key,)))
        for key in _NOT_SETTINGS
        if key in data
    ]
    url = data.get("ledger_url")
    if isinstance(url, str) and _has_password(url):
        detail = (
            "ledger_url: the URL holds a password: put secrets in the environment; set "
            "MESHAGENT_LEDGER_URL, or leave the password to the driver (PGPASSWORD, ~/.pgpass)"
        )
        issues.append(_Issue(lines.get(("ledger_url",), 0), detail))
    connectors = data.get("connectors")
    for name, settings in connectors.items() if isinstance(connectors, dict) else ():
        for loc in _secret_keys(settings, ("connectors", name)):
            issues.append(_Issue(_line_of(loc, lines) or 0, _secret_message(loc, None)))
    return issues


def _loc(error: Any) -> _Loc:
    return tuple(part for part in error["loc"] if part != "[key]")


def load_config(
    path: str | Path | None = None,
    *,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
) -> Config:
    """The project settings, with every MESHAGENT_* variable of `env` (default: os.environ) applied.

    The file is `path` (the CLI's --config), else $MESHAGENT_CONFIG, else the nearest
    meshagent.toml from `cwd` upward; with none, the defaults. Raises ConfigError listing every
    problem of the file and the environment, each with its line or its variable.
    """
    env = os.environ if env is None else env
    cwd = (cwd or Path.cwd()).absolute()
    file, shown = _choose_file(path, cwd, env)
    data, lines = _read(file, shown) if file is not None else ({}, {})
    where = {"source": file, "root": file.parent if file is not None else cwd}
    settings = {key: value for key, value in data.items() if key not in _NOT_SETTINGS}
    if file is not None:
        settings.setdefault("ledger_url", _project_ledger_url(file))
    file_issues = _file_problems(data, lines)
    config = None
    try:
        config = Config.model_validate({**settings, **where})
    except ValidationError as exc:
        for error in exc.errors(include_url=False):
            loc = _loc(error)
            detail = _error_message(error, loc, _dotted(loc), None)
            file_issues.append(_Issue(_line_of(loc, lines) or 0, detail))
    overrides, env_issues = _environment(env)
    if overrides:
        try:
            config = Config.model_validate({**_merge(settings, overrides), **where})
        except ValidationError as exc:
            for error in exc.errors(include_url=False):
                loc = _loc(error)
                # Errors elsewhere are the file's own, reported above.
                for setting, override in overrides.items():
                    if loc[: len(setting)] == setting:
                        detail = _error_message(error, loc, override.variable, override.raw)
                        env_issues.append(detail)
    if file_issues or env_issues:
        raise _config_error(shown, sorted(file_issues), sorted(env_issues))
    assert config is not None
    return config


def _config_error(shown: str, file_issues: list[_Issue], env_issues: list[str]) -> ConfigError:
    errors = [ConfigError(issue.detail, source=shown, line=issue.line) for issue in file_issues]
    errors += [ConfigError(detail) for detail in env_issues]
    first = errors[0]
    message = "\n".join([first.detail, *(str(error) for error in errors[1:])])
    return ConfigError(message, source=first.source, line=first.line)
