"""Project settings: which file, defaults, environment overrides, and every error with its place."""

from __future__ import annotations

import re
import textwrap
from decimal import Decimal
from pathlib import Path

import platformdirs
import pytest
from pydantic import BaseModel, ValidationError

from meshagent.config import (
    CONFIG_FILENAME,
    DEFAULT_VALUE_TAGS,
    NON_SETTING_VARIABLES,
    Config,
    FlagSettings,
    JiraSettings,
    PriceOverride,
    PrivacySettings,
    SlackSettings,
    find_config,
    load_config,
    mask_url,
    setting_variables,
)
from meshagent.exceptions import ConfigError

SETTINGS = ", ".join(
    ["agents_dir", "ledger_url", "default_model", "value_tags", "timeout_seconds"]
    + ["max_concurrent_model_calls"]
    + [
        "privacy",
        "people",
        "flags",
        "value",
        "followup",
        "prices",
        "serve",
        "dashboard",
        "slack",
        "jira",
        "connectors",
        "mcp",
    ]
)


def write(directory: Path, text: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / CONFIG_FILENAME
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


def exactly(message: str) -> str:
    return rf"\A{re.escape(message)}\Z"


def file_error(tmp_path: Path, text: str, message: str, **env: str) -> ConfigError:
    """Load ``text`` as meshagent.toml (shown by that name) and expect exactly ``message``."""
    write(tmp_path, text)
    with pytest.raises(ConfigError, match=exactly(message)) as caught:
        load_config(CONFIG_FILENAME, cwd=tmp_path, env=env)
    return caught.value


def env_error(tmp_path: Path, message: str, **env: str) -> None:
    with pytest.raises(ConfigError, match=exactly(message)):
        load_config(cwd=tmp_path, env=env)


# --- defaults and the file -----------------------------------------------------------------------


def test_defaults_without_a_file_or_environment(tmp_path):
    config = load_config(cwd=tmp_path, env={})
    data_dir = Path(platformdirs.user_data_dir("meshagent"))
    assert config.source is None
    assert config.root == tmp_path
    assert config.agents_dir == tmp_path / "agents"
    assert config.ledger_url == f"sqlite:///{data_dir / 'ledger.db'}"
    assert config.default_model == "offline"
    assert config.value_tags == DEFAULT_VALUE_TAGS
    assert config.timeout_seconds == 600
    assert config.privacy == PrivacySettings(min_group_size=5, admins=())
    assert config.flags == FlagSettings()
    assert config.flags.model_dump() == {
        "min_usd": 0.5,
        "history_days": 28,
        "habit_runs": 20,
        "burst_factor": 5.0,
        "burst_window_days": 14,
        "burst_min_usd": 1.0,
        "burst_breadth_people": 3,
        "no_outcome_min_runs": 10,
        "no_outcome_share": 0.5,
        "failure_min_runs": 5,
        "failure_share": 0.3,
        "no_reaction_runs": 40,
        "audience_of_one_runs": 5,
        "unchanged_rerun_min": 3,
        "token_outlier_factor": 4.0,
        "token_outlier_own_factor": 2.5,
        "negative_feedback_min_votes": 3,
        "self_vote_min": 3,
        "claimed_minutes_min": 600,
        "claimed_factor": 3.0,
        "split_min_runs": 10,
        "loop_runs_per_day": 25,
        "off_schedule_tolerance_minutes": 10,
        "off_schedule_min_runs": 3,
    }
    assert config.value.model_dump() == {
        "weekly_cap_minutes": 1200,
        "request_gap_minutes": 2,
        "prior_runs": 20,
        "peer_claim_factor": 2.0,
    }
    assert config.people.aliases == {}
    assert config.prices == {}
    assert config.slack.model_dump() == {
        "token_env": "SLACK_BOT_TOKEN",
        "api_url_env": "SLACK_API_URL",
        "app_token_env": "SLACK_APP_TOKEN",
        "signing_secret_env": "SLACK_SIGNING_SECRET",
        "admins": (),
    }
    assert config.jira == JiraSettings(
        url_env="JIRA_URL",
        email_env="JIRA_EMAIL",
        api_token_env="JIRA_API_TOKEN",
        token_env="JIRA_TOKEN",
    )
    assert config.connectors == {}


@pytest.mark.parametrize(
    "model", [Config, PrivacySettings, FlagSettings, PriceOverride, SlackSettings, JiraSettings]
)
def test_every_field_is_documented_and_models_are_strict(model: type[BaseModel]):
    assert model.__doc__
    for name, field in model.model_fields.items():
        assert field.description, f"{model.__name__}.{name} has no docstring"
    assert model.model_config["extra"] == "forbid"
    assert model.model_config["frozen"] is True


def test_config_is_frozen(tmp_path):
    config = load_config(cwd=tmp_path, env={})
    with pytest.raises(ValidationError):
        config.default_model = "openai:gpt-4.1"  # type: ignore[misc]


def test_file_is_found_upward_and_paths_resolve_against_its_directory(tmp_path):
    path = write(
        tmp_path,
        """
        agents_dir = "team/agents"
        ledger_url = "sqlite:///data/ledger.db"
        default_model = "openai:gpt-4.1-mini"
        value_tags = ["toil-reduction", "fun"]
        timeout_seconds = 30

        [privacy]
        min_group_size = 3
        admins = ["alice@example.com", "U123"]

        [flags]
        token_outlier_factor = 4.5
        burst_window_days = 7

        [prices."openai:gpt-4.1-mini"]
        input_per_mtok = 0.15
        output_per_mtok = 0.6

        [prices."internal:llama"]
        input_per_mtok = 0
        output_per_mtok = 0
        cache_read_per_mtok = 0.01
        cache_write_per_mtok = 0.02

        [slack]
        token_env = "MY_SLACK_TOKEN"
        admins = ["U999"]

        [jira]
        url_env = "MY_JIRA_URL"

        [connectors.github]
        org = "example"
        token_env = "GITHUB_TOKEN"
        max_tokens = 5
        """,
    )
    nested = tmp_path / "a" / "b"
    nested.mkdir(parents=True)
    assert find_config(nested) == path
    config = load_config(cwd=nested, env={})
    assert config.source == path
    assert config.root == tmp_path
    assert config.agents_dir == tmp_path / "team" / "agents"
    assert config.ledger_url == f"sqlite:///{tmp_path / 'data' / 'ledger.db'}"
    assert config.default_model == "openai:gpt-4.1-mini"
    assert config.value_tags == ("toil-reduction", "fun")
    assert config.timeout_seconds == 30.0
    assert config.privacy.model_dump() == {
        "min_group_size": 3,
        "admins": ("alice@example.com", "U123"),
    }
    assert config.flags.token_outlier_factor == 4.5
    assert config.flags.burst_window_days == 7
    assert config.flags.no_reaction_runs == 40
    assert config.prices["openai:gpt-4.1-mini"] == PriceOverride(
        input_per_mtok=Decimal("0.15"), output_per_mtok=Decimal("0.6")
    )
    assert config.prices["internal:llama"].cache_read_per_mtok == Decimal("0.01")
    assert config.prices["internal:llama"].cache_write_per_mtok == Decimal("0.02")
    assert config.slack.token_env == "MY_SLACK_TOKEN"
    assert config.slack.admins == ("U999",)
    assert config.jira.url_env == "MY_JIRA_URL"
    assert config.connectors == {
        "github": {"org": "example", "token_env": "GITHUB_TOKEN", "max_tokens": 5}
    }


def test_no_file_anywhere_up(tmp_path):
    assert find_config(tmp_path) is None
    assert load_config(cwd=tmp_path / "x", env={}).source is None


def test_meshagent_config_beats_the_search_and_an_explicit_path_beats_both(tmp_path):
    write(tmp_path, 'default_model = "found"\n')
    named = write(tmp_path / "elsewhere", 'default_model = "named"\n')
    explicit = write(tmp_path / "explicit", 'default_model = "explicit"\n')
    env = {"MESHAGENT_CONFIG": str(named)}
    assert load_config(cwd=tmp_path, env={}).default_model == "found"
    assert load_config(cwd=tmp_path, env=env).default_model == "named"
    assert load_config(cwd=tmp_path, env=env).root == tmp_path / "elsewhere"
    assert load_config(explicit, cwd=tmp_path, env=env).default_model == "explicit"
    # a relative path is relative to the working directory
    config = load_config("explicit/meshagent.toml", cwd=tmp_path, env=env)
    assert config.source == explicit
    relative = {"MESHAGENT_CONFIG": "elsewhere/meshagent.toml"}
    assert load_config(cwd=tmp_path, env=relative).source == named


def test_a_named_file_that_does_not_exist_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match=exactly("nope.toml: no such settings file")):
        load_config("nope.toml", cwd=tmp_path, env={})
    message = "gone.toml: no such settings file (named by MESHAGENT_CONFIG)"
    with pytest.raises(ConfigError, match=exactly(message)):
        load_config(cwd=tmp_path, env={"MESHAGENT_CONFIG": "gone.toml"})
    (tmp_path / "dir").mkdir()
    with pytest.raises(ConfigError, match=exactly("dir: is a directory, not a settings file")):
        load_config("dir", cwd=tmp_path, env={})


# --- environment ---------------------------------------------------------------------------------

# One value per setting variable; the test below checks that none is left out.
ENV_CASES = {
    "MESHAGENT_AGENTS_DIR": ("/srv/agents", ("agents_dir",), Path("/srv/agents")),
    "MESHAGENT_LEDGER_URL": (
        "postgresql+psycopg://meshagent:pw@db:5432/ledger",
        ("ledger_url",),
        "postgresql+psycopg://meshagent:pw@db:5432/ledger",
    ),
    "MESHAGENT_DEFAULT_MODEL": ("anthropic:claude", ("default_model",), "anthropic:claude"),
    "MESHAGENT_VALUE_TAGS": (" planning, fun ,,", ("value_tags",), ("planning", "fun")),
    "MESHAGENT_TIMEOUT_SECONDS": ("12.5", ("timeout_seconds",), 12.5),
    "MESHAGENT_MAX_CONCURRENT_MODEL_CALLS": ("8", ("max_concurrent_model_calls",), 8),
    "MESHAGENT_PRIVACY__MIN_GROUP_SIZE": ("2", ("privacy", "min_group_size"), 2),
    "MESHAGENT_SERVE__MISFIRE_GRACE_SECONDS": ("5", ("serve", "misfire_grace_seconds"), 5.0),
    "MESHAGENT_SERVE__SHUTDOWN_TIMEOUT_SECONDS": ("2", ("serve", "shutdown_timeout_seconds"), 2.0),
    "MESHAGENT_SERVE__CLAIM_LEASE_SECONDS": ("3", ("serve", "claim_lease_seconds"), 3.0),
    "MESHAGENT_SERVE__RELOAD_SECONDS": ("0.5", ("serve", "reload_seconds"), 0.5),
    "MESHAGENT_SERVE__BACKOFF_AFTER_FAILURES": ("2", ("serve", "backoff_after_failures"), 2),
    "MESHAGENT_SERVE__MIN_INTERVAL_SECONDS": ("30", ("serve", "min_interval_seconds"), 30.0),
    "MESHAGENT_PRIVACY__ADMINS": ("a@x.com,U1", ("privacy", "admins"), ("a@x.com", "U1")),
    "MESHAGENT_PEOPLE__ME": ("a@x.com", ("people", "me"), "a@x.com"),
    "MESHAGENT_DASHBOARD__VIEWER_HEADER": (
        "X-Auth-Request-Email",
        ("dashboard", "viewer_header"),
        "X-Auth-Request-Email",
    ),
    "MESHAGENT_FLAGS__NO_OUTCOME_MIN_RUNS": ("4", ("flags", "no_outcome_min_runs"), 4),
    "MESHAGENT_FLAGS__UNCHANGED_RERUN_MIN": ("5", ("flags", "unchanged_rerun_min"), 5),
    "MESHAGENT_FLAGS__NEGATIVE_FEEDBACK_MIN_VOTES": (
        "6",
        ("flags", "negative_feedback_min_votes"),
        6,
    ),
    "MESHAGENT_FLAGS__TOKEN_OUTLIER_FACTOR": ("7.5", ("flags", "token_outlier_factor"), 7.5),
    "MESHAGENT_FLAGS__MIN_USD": ("0.25", ("flags", "min_usd"), 0.25),
    "MESHAGENT_FLAGS__HISTORY_DAYS": ("14", ("flags", "history_days"), 14),
    "MESHAGENT_FLAGS__HABIT_RUNS": ("30", ("flags", "habit_runs"), 30),
    "MESHAGENT_FLAGS__BURST_MIN_USD": ("2", ("flags", "burst_min_usd"), 2.0),
    "MESHAGENT_FLAGS__BURST_BREADTH_PEOPLE": ("4", ("flags", "burst_breadth_people"), 4),
    "MESHAGENT_FLAGS__NO_OUTCOME_SHARE": ("0.8", ("flags", "no_outcome_share"), 0.8),
    "MESHAGENT_FLAGS__FAILURE_MIN_RUNS": ("9", ("flags", "failure_min_runs"), 9),
    "MESHAGENT_FLAGS__FAILURE_SHARE": ("0.5", ("flags", "failure_share"), 0.5),
    "MESHAGENT_FLAGS__AUDIENCE_OF_ONE_RUNS": ("3", ("flags", "audience_of_one_runs"), 3),
    "MESHAGENT_FLAGS__TOKEN_OUTLIER_OWN_FACTOR": (
        "3",
        ("flags", "token_outlier_own_factor"),
        3.0,
    ),
    "MESHAGENT_FLAGS__SELF_VOTE_MIN": ("2", ("flags", "self_vote_min"), 2),
    "MESHAGENT_FLAGS__CLAIMED_MINUTES_MIN": ("300", ("flags", "claimed_minutes_min"), 300),
    "MESHAGENT_FLAGS__CLAIMED_FACTOR": ("2", ("flags", "claimed_factor"), 2.0),
    "MESHAGENT_FLAGS__SPLIT_MIN_RUNS": ("20", ("flags", "split_min_runs"), 20),
    "MESHAGENT_FLAGS__LOOP_RUNS_PER_DAY": ("50", ("flags", "loop_runs_per_day"), 50),
    "MESHAGENT_FLAGS__OFF_SCHEDULE_MIN_RUNS": ("1", ("flags", "off_schedule_min_runs"), 1),
    "MESHAGENT_FOLLOWUP__ENABLED": ("false", ("followup", "enabled"), False),
    "MESHAGENT_FOLLOWUP__FINAL_CHECK_HOURS": ("72", ("followup", "final_check_hours"), 72.0),
    "MESHAGENT_FOLLOWUP__FIRST_CHECK_HOURS": ("12", ("followup", "first_check_hours"), 12.0),
    "MESHAGENT_FOLLOWUP__INTERVAL_MINUTES": ("30", ("followup", "interval_minutes"), 30),
    "MESHAGENT_FOLLOWUP__MAX_CALLS_PER_PASS": ("50", ("followup", "max_calls_per_pass"), 50),
    "MESHAGENT_VALUE__REQUEST_GAP_MINUTES": ("5", ("value", "request_gap_minutes"), 5),
    "MESHAGENT_VALUE__PRIOR_RUNS": ("10", ("value", "prior_runs"), 10),
    "MESHAGENT_VALUE__PEER_CLAIM_FACTOR": ("3", ("value", "peer_claim_factor"), 3.0),
    "MESHAGENT_VALUE__WEEKLY_CAP_MINUTES": ("600", ("value", "weekly_cap_minutes"), 600),
    "MESHAGENT_FLAGS__BURST_FACTOR": ("2", ("flags", "burst_factor"), 2.0),
    "MESHAGENT_FLAGS__BURST_WINDOW_DAYS": ("30", ("flags", "burst_window_days"), 30),
    "MESHAGENT_FLAGS__NO_REACTION_RUNS": ("8", ("flags", "no_reaction_runs"), 8),
    "MESHAGENT_FLAGS__OFF_SCHEDULE_TOLERANCE_MINUTES": (
        "0",
        ("flags", "off_schedule_tolerance_minutes"),
        0,
    ),
    "MESHAGENT_SLACK__TOKEN_ENV": ("BOT", ("slack", "token_env"), "BOT"),
    "MESHAGENT_SLACK__API_URL_ENV": ("API", ("slack", "api_url_env"), "API"),
    "MESHAGENT_SLACK__APP_TOKEN_ENV": ("APP", ("slack", "app_token_env"), "APP"),
    "MESHAGENT_SLACK__SIGNING_SECRET_ENV": ("SIGN", ("slack", "signing_secret_env"), "SIGN"),
    "MESHAGENT_SLACK__ADMINS": ("U1, U2", ("slack", "admins"), ("U1", "U2")),
    "MESHAGENT_JIRA__URL_ENV": ("J_URL", ("jira", "url_env"), "J_URL"),
    "MESHAGENT_JIRA__EMAIL_ENV": ("J_EMAIL", ("jira", "email_env"), "J_EMAIL"),
    "MESHAGENT_JIRA__API_TOKEN_ENV": ("J_API", ("jira", "api_token_env"), "J_API"),
    "MESHAGENT_JIRA__TOKEN_ENV": ("J_PAT", ("jira", "token_env"), "J_PAT"),
}


def test_setting_variables_are_derived_from_every_field():
    assert {name: path for name, (_, path, _) in ENV_CASES.items()} == setting_variables()


def _value(config: Config, path: tuple[str, ...]):
    value = config
    for part in path:
        value = getattr(value, part)
    return value


@pytest.mark.parametrize("variable", sorted(ENV_CASES))
def test_every_setting_has_an_environment_override(tmp_path, variable):
    raw, path, expected = ENV_CASES[variable]
    config = load_config(cwd=tmp_path, env={variable: raw})
    assert _value(config, path) == expected


def test_the_environment_beats_the_file(tmp_path):
    write(
        tmp_path,
        """
        default_model = "from-file"
        agents_dir = "file-agents"

        [privacy]
        min_group_size = 7
        admins = ["file@example.com"]

        [flags]
        burst_factor = 9.0
        """,
    )
    env = {
        "MESHAGENT_DEFAULT_MODEL": "from-env",
        "MESHAGENT_AGENTS_DIR": "env-agents",
        "MESHAGENT_PRIVACY__MIN_GROUP_SIZE": "2",
        "MESHAGENT_FLAGS__TOKEN_OUTLIER_FACTOR": "8",
        "MESHAGENT_CONFIG": "",  # empty: as if unset
        "MESHAGENT_HOME": "/somewhere",  # not a setting, but known
        "OTHER_VARIABLE": "ignored",
    }
    config = load_config(cwd=tmp_path, env=env)
    assert config.default_model == "from-env"
    assert config.agents_dir == tmp_path / "env-agents"  # relative to the project root too
    assert config.privacy == PrivacySettings(min_group_size=2, admins=("file@example.com",))
    assert config.flags.burst_factor == 9.0
    assert config.flags.token_outlier_factor == 8.0


def test_the_environment_is_os_environ_by_default(tmp_path, monkeypatch):
    monkeypatch.setenv("MESHAGENT_DEFAULT_MODEL", "from-os")
    assert load_config(cwd=tmp_path).default_model == "from-os"
    monkeypatch.chdir(tmp_path)
    write(tmp_path, 'default_model = "file"\nagents_dir = "x"\n')
    config = load_config()
    assert (config.default_model, config.agents_dir) == ("from-os", tmp_path / "x")


def test_non_setting_variables_are_known():
    assert NON_SETTING_VARIABLES == ("MESHAGENT_CONFIG", "MESHAGENT_HOME")


def test_unknown_variables_are_refused_with_a_suggestion(tmp_path):
    top = (
        "MESHAGENT_AGENTS_DIR, MESHAGENT_LEDGER_URL, MESHAGENT_DEFAULT_MODEL, "
        "MESHAGENT_VALUE_TAGS, MESHAGENT_TIMEOUT_SECONDS, MESHAGENT_MAX_CONCURRENT_MODEL_CALLS, "
        "MESHAGENT_DASHBOARD__<KEY>, MESHAGENT_FLAGS__<KEY>, MESHAGENT_FOLLOWUP__<KEY>, "
        "MESHAGENT_JIRA__<KEY>, MESHAGENT_PEOPLE__<KEY>, MESHAGENT_PRIVACY__<KEY>, "
        "MESHAGENT_SERVE__<KEY>, "
        "MESHAGENT_SLACK__<KEY>, MESHAGENT_VALUE__<KEY>"
    )
    env_error(
        tmp_path,
        "MESHAGENT_LEDGER_UR: not a setting variable; did you mean MESHAGENT_LEDGER_URL? "
        f"(valid: {top})",
        MESHAGENT_LEDGER_UR="sqlite://",
    )
    env_error(
        tmp_path,
        "MESHAGENT_PRIVACY__MIN_GROUP: not a setting variable; did you mean "
        "MESHAGENT_PRIVACY__MIN_GROUP_SIZE? (valid: MESHAGENT_PRIVACY__MIN_GROUP_SIZE, "
        "MESHAGENT_PRIVACY__ADMINS)",
        MESHAGENT_PRIVACY__MIN_GROUP="3",
    )
    env_error(
        tmp_path, f"MESHAGENT_XYZZY: not a setting variable (valid: {top})", MESHAGENT_XYZZY="1"
    )


@pytest.mark.parametrize(
    ("variable", "raw", "message"),
    [
        (
            "MESHAGENT_PRIVACY__MIN_GROUP_SIZE",
            "five",
            "MESHAGENT_PRIVACY__MIN_GROUP_SIZE: expected an integer >= 1, got 'five'",
        ),
        (
            "MESHAGENT_PRIVACY__MIN_GROUP_SIZE",
            "0",
            "MESHAGENT_PRIVACY__MIN_GROUP_SIZE: expected an integer >= 1, got '0'",
        ),
        (
            "MESHAGENT_TIMEOUT_SECONDS",
            "10m",
            "MESHAGENT_TIMEOUT_SECONDS: expected a number > 0, got '10m'",
        ),
        (
            "MESHAGENT_FLAGS__OFF_SCHEDULE_TOLERANCE_MINUTES",
            "-1",
            "MESHAGENT_FLAGS__OFF_SCHEDULE_TOLERANCE_MINUTES: expected an integer >= 0, got '-1'",
        ),
        (
            "MESHAGENT_DEFAULT_MODEL",
            "",
            "MESHAGENT_DEFAULT_MODEL: expected a non-empty string, got ''",
        ),
        (
            "MESHAGENT_VALUE_TAGS",
            "planning,Big Wins",
            "MESHAGENT_VALUE_TAGS: 'Big Wins' is not a tag: use lowercase letters, digits and "
            "dashes",
        ),
        ("MESHAGENT_VALUE_TAGS", " , ", "MESHAGENT_VALUE_TAGS: at least one value tag is needed"),
        (
            "MESHAGENT_SLACK__TOKEN_ENV",
            "xoxb-1234-secret",
            "MESHAGENT_SLACK__TOKEN_ENV: expected the name of an environment variable, such as "
            "SLACK_BOT_TOKEN (value not shown)",
        ),
        (
            "MESHAGENT_LEDGER_URL",
            "mysql://root:hunter2@db/ledger",
            "MESHAGENT_LEDGER_URL: 'mysql://root:***@db/ledger' is not a SQLite or PostgreSQL "
            "URL: use sqlite:///path/to/ledger.db or postgresql+psycopg://user@host:5432/dbname",
        ),
        (
            "MESHAGENT_LEDGER_URL",
            "postgresql://root:hunter2@db:port/ledger",
            "MESHAGENT_LEDGER_URL: 'postgresql://root:***@db:port/ledger' is not a SQLite or "
            "PostgreSQL URL: use sqlite:///path/to/ledger.db or "
            "postgresql+psycopg://user@host:5432/dbname",
        ),
        (
            "MESHAGENT_LEDGER_URL",
            "root:hunter2@db/ledger",
            "MESHAGENT_LEDGER_URL: 'root:***@db/ledger' is not a SQLite or PostgreSQL URL: use "
            "sqlite:///path/to/ledger.db or postgresql+psycopg://user@host:5432/dbname",
        ),
    ],
)
def test_bad_environment_values_name_the_variable_and_value(tmp_path, variable, raw, message):
    env_error(tmp_path, message, **{variable: raw})


def test_environment_errors_come_after_the_file_errors(tmp_path):
    error = file_error(
        tmp_path,
        """
        timeout_seconds = "long"
        """,
        "meshagent.toml:1: timeout_seconds: expected a number > 0, got 'long'\n"
        "MESHAGENT_LEDGER_UR: not a setting variable; did you mean MESHAGENT_LEDGER_URL? "
        "(valid: MESHAGENT_AGENTS_DIR, MESHAGENT_LEDGER_URL, MESHAGENT_DEFAULT_MODEL, "
        "MESHAGENT_VALUE_TAGS, MESHAGENT_TIMEOUT_SECONDS, MESHAGENT_MAX_CONCURRENT_MODEL_CALLS, "
        "MESHAGENT_DASHBOARD__<KEY>, MESHAGENT_FLAGS__<KEY>, MESHAGENT_FOLLOWUP__<KEY>, "
        "MESHAGENT_JIRA__<KEY>, MESHAGENT_PEOPLE__<KEY>, MESHAGENT_PRIVACY__<KEY>, "
        "MESHAGENT_SERVE__<KEY>, "
        "MESHAGENT_SLACK__<KEY>, MESHAGENT_VALUE__<KEY>)\n"
        "MESHAGENT_PRIVACY__MIN_GROUP_SIZE: expected an integer >= 1, got 'x'",
        MESHAGENT_PRIVACY__MIN_GROUP_SIZE="x",
        MESHAGENT_LEDGER_UR="y",
        MESHAGENT_TIMEOUT_SECONDS="5",  # overrides the bad value, which is still reported
    )
    assert (error.source, error.line) == ("meshagent.toml", 1)


# --- errors in the file --------------------------------------------------------------------------


def test_unknown_setting_with_its_line_and_a_suggestion(tmp_path):
    error = file_error(
        tmp_path,
        """
        # project settings
        agents_dir = "agents"

        ledger_ur = "sqlite:///x.db"
        """,
        "meshagent.toml:4: unknown setting 'ledger_ur'; did you mean 'ledger_url'? "
        f"(valid: {SETTINGS})",
    )
    assert (error.source, error.line) == ("meshagent.toml", 4)
    assert error.detail.startswith("unknown setting 'ledger_ur'")


def test_unknown_tables_and_nested_keys(tmp_path):
    file_error(
        tmp_path,
        """
        [privacy]
        min_group_size = 5
        min_grup_size = 4

        [flag]
        burst_factor = 2
        """,
        "meshagent.toml:3: unknown setting 'privacy.min_grup_size'; did you mean "
        "'privacy.min_group_size'? (valid: min_group_size, admins)\n"
        "meshagent.toml:5: unknown setting 'flag'; did you mean 'flags'? "
        f"(valid: {SETTINGS})",
    )


def test_source_and_root_are_not_settings(tmp_path):
    file_error(
        tmp_path,
        """
        root = "/elsewhere"
        source = "x"
        """,
        f"meshagent.toml:1: unknown setting 'root' (valid: {SETTINGS})\n"
        f"meshagent.toml:2: unknown setting 'source' (valid: {SETTINGS})",
    )


def test_wrong_types_are_located(tmp_path):
    file_error(
        tmp_path,
        """
        default_model = "offline"
        value_tags = "planning"
        timeout_seconds = true
        agents_dir = 3

        [privacy]
        admins = ["alice@example.com", 42]

        min_group_size = "five"

        [flags]
        token_outlier_factor = 0
        no_reaction_runs = 2.5
        """,
        "meshagent.toml:2: value_tags: expected a list of strings, got 'planning'\n"
        "meshagent.toml:3: timeout_seconds: expected a number > 0, got true\n"
        "meshagent.toml:4: agents_dir: expected a path, got 3\n"
        "meshagent.toml:7: privacy.admins[1]: expected a string, got 42\n"
        "meshagent.toml:9: privacy.min_group_size: expected an integer >= 1, got 'five'\n"
        "meshagent.toml:12: flags.token_outlier_factor: expected a number > 0, got 0\n"
        "meshagent.toml:13: flags.no_reaction_runs: expected an integer >= 1, got 2.5",
    )


def test_tables_of_the_wrong_type(tmp_path):
    file_error(
        tmp_path,
        """
        privacy = 5
        prices = ["openai:gpt"]
        connectors = { github = "yes" }
        """,
        "meshagent.toml:1: privacy: expected a table, got 5\n"
        "meshagent.toml:2: prices: expected a table, got a list\n"
        "meshagent.toml:3: connectors.github: expected a table, got 'yes'",
    )


def test_price_overrides_are_checked(tmp_path):
    file_error(
        tmp_path,
        """
        [prices."openai:gpt-4.1"]
        input_per_mtok = -1

        [prices.gpt4]
        input_per_mtok = 1
        output_per_mtok = 2

        [prices."x:y"]
        input_per_mtok = 1
        output_per_mtok = "cheap"
        cache_write_per_mtok = -0.5
        cache_read = 1
        """,
        'meshagent.toml:1: prices."openai:gpt-4.1".output_per_mtok: required setting is '
        "missing\n"
        'meshagent.toml:2: prices."openai:gpt-4.1".input_per_mtok: expected a number >= 0, '
        "got -1\n"
        "meshagent.toml:4: prices.gpt4: 'gpt4' is not 'provider:model', such as "
        "'openai:gpt-4.1-mini'\n"
        "meshagent.toml:10: prices.\"x:y\".output_per_mtok: expected a number >= 0, got 'cheap'\n"
        'meshagent.toml:11: prices."x:y".cache_write_per_mtok: expected a number >= 0, got '
        "-0.5\n"
        "meshagent.toml:12: unknown setting 'prices.\"x:y\".cache_read'; did you mean "
        "'prices.\"x:y\".cache_read_per_mtok'? (valid: input_per_mtok, output_per_mtok, "
        "cache_read_per_mtok, cache_write_per_mtok)",
    )


def test_value_tags_are_checked(tmp_path):
    file_error(
        tmp_path,
        'value_tags = ["planning", "planning"]\n',
        "meshagent.toml:1: value_tags: 'planning' is listed twice",
    )
    file_error(
        tmp_path,
        "value_tags = []\n",
        "meshagent.toml:1: value_tags: at least one value tag is needed",
    )


def test_ledger_url_in_the_file_is_checked(tmp_path):
    file_error(
        tmp_path,
        """
        default_model = "offline"
        ledger_url = "mongodb://db/ledger"
        """,
        "meshagent.toml:2: ledger_url: 'mongodb://db/ledger' is not a SQLite or PostgreSQL URL: "
        "use sqlite:///path/to/ledger.db or postgresql+psycopg://user@host:5432/dbname",
    )


@pytest.mark.parametrize(
    ("url", "sync"),
    [
        ("sqlite:///ledger.db?sync=fast", "'fast'"),
        ("sqlite:///ledger.db?sync=full&sync=normal", "['full', 'normal']"),
        ("postgresql://db/ledger?sync=full", "'full'"),
    ],
)
def test_the_sync_of_a_ledger_url_is_checked_where_it_is_written(tmp_path, url, sync):
    file_error(
        tmp_path,
        f"""
        default_model = "offline"
        ledger_url = "{url}"
        """,
        f"meshagent.toml:2: ledger_url: sync={sync} is not a setting of it; a SQLite ledger "
        "takes ?sync=normal (the default: commits reach the disk within 0.5 s) or ?sync=full "
        "(each close waits for the disk)",
    )
    write(tmp_path, 'ledger_url = "sqlite:///l.db?sync=full"\n')
    url = load_config(CONFIG_FILENAME, cwd=tmp_path, env={}).ledger_url
    assert url.endswith("l.db?sync=full")


def test_invalid_toml_reports_the_line_tomllib_gives(tmp_path):
    file_error(
        tmp_path,
        """
        agents_dir = "agents"
        [privacy]
        min_group_size = = 5
        """,
        "meshagent.toml:3: invalid TOML: Invalid value (column 18)",
    )
    file_error(
        tmp_path,
        'agents_dir = "agents"\ndefault_model = "open',
        "meshagent.toml:2: invalid TOML: Unterminated string (at the end)",
    )


def test_a_file_that_is_not_utf8(tmp_path):
    (tmp_path / CONFIG_FILENAME).write_bytes(b'agents_dir = "a"\ndefault_model = "\xff"\n')
    with pytest.raises(ConfigError, match=exactly("meshagent.toml:2: not UTF-8 text")):
        load_config(CONFIG_FILENAME, cwd=tmp_path, env={})


def test_lines_are_found_past_multiline_values_dotted_and_quoted_keys(tmp_path):
    file_error(
        tmp_path,
        '''
        value_tags = [
          "planning",
          "experiment",  # ] not the end
        ]
        default_model = """
        [privacy]
        min_group_size = 'not a key'
        """
        privacy.admins = ["a"]
        privacy.min_group_size = 0
        "flags".'burst_factor' = -1
        slack = { token_env = "ok", tokn_env = "X" }

        [[connectors.hooks]]
        url = "https://a"
        [[connectors.hooks]]
        url = "https://b"
        secret = "s3"
        ''',
        "meshagent.toml:10: privacy.min_group_size: expected an integer >= 1, got 0\n"
        "meshagent.toml:11: flags.burst_factor: expected a number > 0, got -1\n"
        "meshagent.toml:12: unknown setting 'slack.tokn_env'; did you mean 'slack.token_env'? "
        "(valid: token_env, api_url_env, app_token_env, signing_secret_env, admins)\n"
        "meshagent.toml:14: connectors.hooks: expected a table, got a list\n"
        "meshagent.toml:18: 'connectors.hooks[1].secret' looks like a secret: put secrets in the "
        "environment; name the variable with secret_env",
    )


# --- secrets -------------------------------------------------------------------------------------


def test_secrets_in_the_file_are_refused(tmp_path):
    file_error(
        tmp_path,
        """
        api_key = "sk-123"
        ledger_url = "postgresql+psycopg://meshagent:hunter2@db/ledger"

        [slack]
        token = "xoxb-123"
        signingSecret = "abc"
        token_env = "xoxb-123"

        [jira]
        password = "pw"

        [connectors.github]
        org = "example"
        token_env = "GITHUB_TOKEN"
        max_tokens = 100
        auth = { access_token = "ghp_x", private_key = "k", client_secret = "c" }
        """,
        "meshagent.toml:1: 'api_key' looks like a secret: put secrets in the environment, never "
        "in the settings file\n"
        "meshagent.toml:2: ledger_url: the URL holds a password: put secrets in the environment; "
        "set MESHAGENT_LEDGER_URL, or leave the password to the driver (PGPASSWORD, ~/.pgpass)\n"
        "meshagent.toml:5: 'slack.token' looks like a secret: put secrets in the environment; "
        'name the variable with token_env (token_env = "SLACK_BOT_TOKEN")\n'
        "meshagent.toml:6: 'slack.signingSecret' looks like a secret: put secrets in the "
        "environment; name the variable with one of token_env, app_token_env, "
        "signing_secret_env\n"
        "meshagent.toml:7: slack.token_env: expected the name of an environment variable, such "
        "as SLACK_BOT_TOKEN (value not shown)\n"
        "meshagent.toml:10: 'jira.password' looks like a secret: put secrets in the environment; "
        "name the variable with one of api_token_env, token_env\n"
        "meshagent.toml:16: 'connectors.github.auth.access_token' looks like a secret: put "
        "secrets in the environment; name the variable with access_token_env\n"
        "meshagent.toml:16: 'connectors.github.auth.client_secret' looks like a secret: put "
        "secrets in the environment; name the variable with client_secret_env\n"
        "meshagent.toml:16: 'connectors.github.auth.private_key' looks like a secret: put "
        "secrets in the environment; name the variable with private_key_env",
    )


def test_a_password_in_the_ledger_url_may_come_from_the_environment(tmp_path):
    url = "postgresql+psycopg://meshagent:hunter2@db/ledger"
    write(tmp_path, 'ledger_url = "postgresql+psycopg://meshagent@db/ledger"\n')
    assert load_config(cwd=tmp_path, env={"MESHAGENT_LEDGER_URL": url}).ledger_url == url
    config = load_config(cwd=tmp_path, env={})
    assert config.ledger_url == "postgresql+psycopg://meshagent@db/ledger"
    assert "hunter2" not in repr(load_config(cwd=tmp_path, env={"MESHAGENT_LEDGER_URL": url}))


# --- paths and URLs ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("written", "expected"),
    [
        ("sqlite:///ledger.db", "sqlite:///{root}/ledger.db"),
        ("sqlite:///../shared/ledger.db", "sqlite:///{root}/../shared/ledger.db"),
        ("sqlite+pysqlite:///data/l.db", "sqlite+pysqlite:///{root}/data/l.db"),
        ("sqlite:////var/lib/ledger.db", "sqlite:////var/lib/ledger.db"),
        ("sqlite:///~/ledger.db", "sqlite:///{home}/ledger.db"),
        ("sqlite://", "sqlite://"),
        ("sqlite:///:memory:", "sqlite:///:memory:"),
        (
            "postgresql+psycopg://meshagent@db:5432/ledger",
            "postgresql+psycopg://meshagent@db:5432/ledger",
        ),
        ("postgresql://db/ledger?sslmode=require", "postgresql://db/ledger?sslmode=require"),
    ],
)
def test_sqlite_paths_resolve_against_the_root(tmp_path, written, expected):
    write(tmp_path, f'ledger_url = "{written}"\n')
    config = load_config(cwd=tmp_path / "sub", env={})
    assert config.ledger_url == expected.format(root=tmp_path, home=Path.home())


@pytest.mark.parametrize(
    ("written", "expected"),
    [("agents", "{root}/agents"), ("/srv/agents", "/srv/agents"), ("~/agents", "{home}/agents")],
)
def test_agents_dir_resolves_against_the_root(tmp_path, written, expected):
    write(tmp_path, f'agents_dir = "{written}"\n')
    config = load_config(cwd=tmp_path / "sub", env={})
    assert config.agents_dir == Path(expected.format(root=tmp_path, home=Path.home()))


def test_a_config_built_in_code_resolves_the_same_way(tmp_path):
    config = Config(root=tmp_path, ledger_url="sqlite:///l.db")
    assert config.agents_dir == tmp_path / "agents"
    assert config.ledger_url == f"sqlite:///{tmp_path}/l.db"


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        (
            "postgresql+psycopg://u:hunter2@db:5432/ledger",
            "postgresql+psycopg://u:***@db:5432/ledger",
        ),
        ("postgresql://u:p%40ss:w@db/ledger", "postgresql://u:***@db/ledger"),
        ("postgresql://u@db/ledger", "postgresql://u@db/ledger"),
        ("postgresql://db:5432/ledger", "postgresql://db:5432/ledger"),
        (
            "postgresql://db/ledger?sslmode=require&password=pw",
            "postgresql://db/ledger?sslmode=require&password=***",
        ),
        ("sqlite:///:memory:", "sqlite:///:memory:"),
        ("sqlite:///data/me@home.db", "sqlite:///data/me@home.db"),
        ("u:hunter2@db/ledger", "u:***@db/ledger"),
        ("not a url", "not a url"),
    ],
)
def test_mask_url_hides_passwords_only(url, masked):
    assert mask_url(url) == masked
