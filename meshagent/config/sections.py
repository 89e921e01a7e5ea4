"""The settings models of the tables of meshagent.toml: privacy, people, serve, flags, etc."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field

from meshagent.config.docstrings import describe_fields
from meshagent.config.fields import env_name, no_bool

DEFAULT_VALUE_TAGS = (
    "toil-reduction",
    "incident-response",
    "customer-support",
    "code-quality",
    "knowledge-sharing",
    "planning",
    "experiment",
)
#: The shortest `every:` interval by default: a minute, the resolution of cron itself.
DEFAULT_MIN_INTERVAL_SECONDS = 60.0


def _model_key(key: str) -> str:
    if key in ("offline", "scripted"):  # the built-in models, priced to show what-if costs
        return key
    provider, _, model = key.partition(":")
    if not (provider and model):
        raise ValueError(f"{key!r} is not 'provider:model', such as 'openai:gpt-4.1-mini'")
    return key


PositiveInt = Annotated[int, BeforeValidator(no_bool), Field(ge=1)]
PositiveFloat = Annotated[float, BeforeValidator(no_bool), Field(gt=0)]
Price = Annotated[Decimal, BeforeValidator(no_bool), Field(ge=0)]
EnvName = Annotated[str, AfterValidator(env_name)]
ModelKey = Annotated[str, AfterValidator(_model_key)]


class SettingsModel(BaseModel):
    # Each field's description is the docstring under it (`describe_fields`), set before the
    # model is first built: at its first use, not at import.
    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        describe_fields(cls)


class PrivacySettings(SettingsModel):
    """`[privacy]`: who may see what in reports."""

    min_group_size: PositiveInt = 5
    """Team-level reports fold groups of fewer distinct people than this into "other"."""
    admins: tuple[str, ...] = ()
    """People (emails or Slack user ids) who see every row, including other people's."""


class PeopleSettings(SettingsModel):
    """`[people]`: who the people at this project's keyboards are."""

    me: str | None = Field(None, min_length=1)
    """Who runs the CLI here (email or Slack id): the ledger's default viewer, an agent's
    default owner. Unset: git's user.email, then $USER."""
    aliases: dict[str, tuple[str, ...]] = Field(default_factory=dict)
    """A person's other names, by one of their names: `"alice@example.com" = ["U012ABCDEF",
    "alice"]` (Slack user ids, emails, logins). The ledger counts each group as one person."""


class ServeSettings(SettingsModel):
    """`[serve]`: how `meshagent serve` runs the scheduled fleet."""

    misfire_grace_seconds: PositiveFloat = 300.0
    """A fire that starts later than this is recorded as missed instead of run."""
    shutdown_timeout_seconds: PositiveFloat = 30.0
    """On SIGTERM, running tasks get this long to finish before they are interrupted."""
    claim_lease_seconds: PositiveFloat = 60.0
    """With several replicas: a claim not renewed for this long belongs to a dead replica."""
    reload_seconds: PositiveFloat = 1.0
    """How often the agents directory is checked for added, changed and removed files."""
    backoff_after_failures: PositiveInt = 3
    """An agent whose last N runs failed waits before its next run (doubling, up to an hour)."""
    min_interval_seconds: PositiveFloat = DEFAULT_MIN_INTERVAL_SECONDS
    """The shortest `every:` interval an agent file may have (60: cron's own resolution)."""


class DashboardSettings(SettingsModel):
    """`[dashboard]`: who is looking at the ledger dashboard."""

    viewer_header: str = Field("X-Forwarded-User", pattern=r"^[A-Za-z0-9-]+$")
    """Request header in which the company's auth proxy names the signed-in person; only
    trustworthy when every request comes through that proxy, which sets or strips it."""


class FlagSettings(SettingsModel):
    """`[flags]`: the thresholds of the tokenmaxxing flags (`meshagent.ledger.flags`).

    Chosen from what a reasonable team would call waste, not fitted to any one organisation:
    a flag needs a volume no honest agent reaches by chance and a sum worth a conversation.
    """

    min_usd: Annotated[float, BeforeValidator(no_bool), Field(ge=0)] = 0.5
    """Dollars at stake in the period below which a waste flag is raised only for a habit
    (`habit_runs`): a coffee's worth once is not worth a conversation; self-votes and
    rejections are raised whatever they cost."""
    history_days: PositiveInt = 28
    """How far before the period the rules look for an agent's own cadence and past."""
    habit_runs: PositiveInt = 20
    """A waste flag under `min_usd` is still raised when its pattern shows in this many runs
    over the `history_days` up to the period's end (about one each working day of four weeks),
    half of them before the period: a cheap habit is waste with evidence, and stays when prices
    fall; a one-week spree is not a habit."""
    burst_factor: PositiveFloat = 5.0
    """A day's spend of an agent (or of one person's runs of it) over this factor times the
    agent's median day with runs is a burst."""
    burst_window_days: PositiveInt = 14
    """An agent needs this many days of history (and 5 days with runs) before a burst counts."""
    burst_min_usd: Annotated[float, BeforeValidator(no_bool), Field(ge=0)] = 1.0
    """A burst must spend at least this many dollars above the agent's median day."""
    burst_breadth_people: PositiveInt = 3
    """A burst requested by this many people besides the owner is demand, not a burst."""
    no_outcome_min_runs: PositiveInt = 10
    """No-outcome needs at least this many runs without an outcome in the period (dry runs,
    failures and declared quiet results left out)."""
    no_outcome_share: Annotated[float, BeforeValidator(no_bool), Field(gt=0, le=1)] = 0.5
    """...and at least this share of the agent's runs that spent tokens."""
    failure_min_runs: PositiveInt = 5
    """Reliability: at least this many failed, over-budget or interrupted runs in the period..."""
    failure_share: Annotated[float, BeforeValidator(no_bool), Field(gt=0, le=1)] = 0.3
    """...making at least this share of the agent's runs."""
    no_reaction_runs: PositiveInt = 40
    """Unread: this many delivered outputs within `history_days` with no engagement by anyone
    but the owner and the triggerer (most honest output draws none, so it takes a volume)."""
    audience_of_one_runs: PositiveInt = 5
    """Unread: this many outputs in the period that nobody but the owner could see."""
    unchanged_rerun_min: PositiveInt = 3
    """Flag this many runs in the period that spent tokens on the input of the agent's last ok
    run (a retry after a failure, or another person asking, left out)."""
    token_outlier_factor: PositiveFloat = 4.0
    """Tokens per run with an outcome over this factor times the median of agents with the same
    value tag, and over `token_outlier_own_factor` times the agent's own past, are flagged."""
    token_outlier_own_factor: PositiveFloat = 2.5
    """See token_outlier_factor; an agent without `history_days` of past is left alone."""
    negative_feedback_min_votes: PositiveInt = 3
    """Flag a majority of rejections (votes, rejected outcomes) once there are this many."""
    self_vote_min: PositiveInt = 3
    """Flag this many positive votes by a run's own owner or triggerer, at least one in the
    period and the rest in the `history_days` before it."""
    claimed_minutes_min: PositiveInt = 600
    """Claimed value: flag claims over this many minutes in the period..."""
    claimed_factor: PositiveFloat = 3.0
    """...and over this factor times what its fires and distinct requests could support
    (minutes_saved once per fire or request, at most `[value] weekly_cap_minutes`)."""
    split_min_runs: PositiveInt = 10
    """One task split into many runs: this many runs by one person, each within
    `[value] request_gap_minutes` of the last."""
    loop_runs_per_day: PositiveInt = 25
    """One person running one slash agent this many times in a day is looping it."""
    off_schedule_tolerance_minutes: Annotated[int, BeforeValidator(no_bool), Field(ge=0)] = 10
    """Runs starting more than this many minutes away from the declared schedule are flagged."""
    off_schedule_min_runs: PositiveInt = 3
    """...once there are this many in the period (one late start is a busy machine)."""


class ValueSettings(SettingsModel):
    """`[value]`: how minutes saved are credited from evidence (`meshagent.ledger.value`)."""

    weekly_cap_minutes: PositiveInt = 1200
    """At most this many evidenced minutes per agent per week (20 hours: half a person)."""
    request_gap_minutes: PositiveInt = 2
    """Runs of one agent by one person each within this many minutes of the last are one
    request: credited once, however many runs it was split into."""
    prior_runs: PositiveInt = 20
    """The value figure that ranks agents (`value_per_dollar`) weighs a group's own evidenced
    minutes per dollar by its judged runs against this many runs of the typical group's (the
    median of the groups with evidenced value): people engage with about one in 10-20 useful
    outputs, so silence over fewer runs says little."""
    peer_claim_factor: PositiveFloat = 2.0
    """A scheduled fire that claims more minutes than there are between the agent's fires earns
    that share of its claim, the claim held to this factor times the median minutes_saved of the
    agents with the same value tag: a claim the schedule shows false is not trusted beyond its
    peers' either."""


class FollowupSettings(SettingsModel):
    """`[followup]`: the pass that reads delivered outcomes back (`meshagent.fleet.followup`)."""

    first_check_hours: PositiveFloat = 24.0
    """An outcome is first read back this long after delivery (a day)."""
    final_check_hours: PositiveFloat = 168.0
    """And finally this long after (a week): without engagement by then it is ignored."""
    max_calls_per_pass: PositiveInt = 200
    """At most this many Slack and Jira API calls per pass; the rest wait for the next."""
    interval_minutes: PositiveInt = 15
    """How often `meshagent serve` runs a pass (one replica at a time)."""
    enabled: bool = True
    """`false`: `meshagent serve` runs no pass (`meshagent ledger follow-up` still does)."""


class PriceOverride(SettingsModel):
    """`[prices."provider:model"]`: our own price, in USD per million tokens."""

    input_per_mtok: Price
    """USD per million input tokens."""
    output_per_mtok: Price
    """USD per million output tokens."""
    cache_read_per_mtok: Price | None = None
    """USD per million tokens read from the prompt cache; None prices them as input."""
    cache_write_per_mtok: Price | None = None
    """USD per million tokens written to the prompt cache; None prices them as input."""


class SlackSettings(SettingsModel):
    """`[slack]`: the names of the variables that hold Slack secrets, never the secrets."""

    token_env: EnvName = "SLACK_BOT_TOKEN"
    """Variable holding the bot token (xoxb-...)."""
    api_url_env: EnvName = "SLACK_API_URL"
    """Variable holding the Web API base URL, set to point at a sandbox."""
    app_token_env: EnvName = "SLACK_APP_TOKEN"
    """Variable holding the app-level token (xapp-...) for Socket Mode."""
    signing_secret_env: EnvName = "SLACK_SIGNING_SECRET"
    """Variable holding the signing secret that HTTP requests are checked with."""
    admins: tuple[str, ...] = ()
    """Slack user ids allowed to run admin commands of /meshagent."""


class JiraSettings(SettingsModel):
    """`[jira]`: the names of the variables that hold the Jira site and credentials."""

    url_env: EnvName = "JIRA_URL"
    """Variable holding the site URL, such as https://example.atlassian.net."""
    email_env: EnvName = "JIRA_EMAIL"
    """Variable holding the account email used with an API token (Jira Cloud)."""
    api_token_env: EnvName = "JIRA_API_TOKEN"
    """Variable holding the API token of that account (Jira Cloud)."""
    token_env: EnvName = "JIRA_TOKEN"
    """Variable holding a personal access token (Jira Data Center), used when set."""
