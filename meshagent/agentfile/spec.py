"""The agent file as pydantic models: every field typed, documented and checked.

``AgentSpec`` is what an agent YAML file becomes. Structure and single-field rules (names, cron,
timezones, intervals, models, value tags) are checked here; the loader adds file:line:column to
each problem and runs the checks that need the connector registry (``meshagent.agentfile.checks``).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Literal, Self

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    PrivateAttr,
    Tag,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from meshagent.actions import closest
from meshagent.agentfile.cron import CronError, CronExpression, check_timezone, parse_interval
from meshagent.config import DEFAULT_VALUE_TAGS
from meshagent.config.docstrings import describe_fields
from meshagent.models.providers import BUILTIN_MODELS, PROVIDERS

__all__ = [
    "ActionUse",
    "AgentSpec",
    "AllowList",
    "Approve",
    "Budget",
    "EveryTrigger",
    "InputSpec",
    "ModelSettings",
    "ScheduleTrigger",
    "SlashTrigger",
    "Trigger",
    "Value",
]

SLUG = re.compile(r"^[a-z][a-z0-9]*(-[a-z0-9]+)*$")
SLUG_HINT = "lowercase letters, digits and single dashes, starting with a letter"


def _error(message: str) -> PydanticCustomError:
    """An error whose message is shown as written (pydantic would otherwise prefix it)."""
    return PydanticCustomError("meshagent", "{message}", {"message": message})


def _checked(
    check: Callable[[str], object], value: str, error: type[ValueError] = ValueError
) -> str:
    """`value`, once `check` has taken it; its `error` as `_error`."""
    try:
        check(value)
    except error as exc:
        raise _error(str(exc)) from None
    return value


class StrictModel(BaseModel):
    # Each field's description is the docstring under it (`describe_fields`), set before the
    # model is first built: at its first use, not at import.
    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        describe_fields(cls)


class ModelSettings(StrictModel):
    temperature: float | None = Field(default=None, ge=0, le=2)
    """Sampling temperature, 0 to 2; unset leaves the provider's default."""
    max_output_tokens: int | None = Field(default=None, gt=0)
    """Cap on the tokens the model may write in one answer."""


class InputSpec(StrictModel):
    type: Literal["string", "integer", "number", "boolean", "list"] = "string"
    """The input's type: string, integer, number, boolean or list (of strings)."""
    description: str = ""
    """What the input is for; shown in `meshagent list` and Slack help."""
    default: Any = None
    """Value used when the caller gives none."""
    required: bool = False
    """The caller must give a value (a required input has no default)."""

    @model_validator(mode="after")
    def _default_fits(self) -> InputSpec:
        if self.required and self.default is not None:
            raise _error("a required input cannot have a default")
        if self.default is not None and not _fits(self.type, self.default):
            raise _error(f"default {self.default!r} is not a {self.type}")
        return self


def _fits(kind: str, value: Any) -> bool:
    if kind == "string":
        return isinstance(value, str)
    if kind == "boolean":
        return isinstance(value, bool)
    if kind == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "number":
        return isinstance(value, int | float) and not isinstance(value, bool)
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


class ActionUse(StrictModel):
    """One action in context/tools/deliver. YAML form: ``- jira.search: {jql: ...}``."""

    action: str
    """Dotted action name, e.g. jira.search."""
    params: dict[str, Any] = Field(default_factory=dict)
    """Arguments (context, deliver) or the grant (tools) of the action."""
    for_each: str | None = None
    """Deliver only: run once per item of this context action's result (``{{item.key}}``)."""
    grant: dict[str, Any] | None = None
    """Deliver only: the scope the call's arguments must stay inside once its {{inputs}} are
    filled in (an MCP tool's constraints by argument), checked before the call is made."""

    @model_validator(mode="before")
    @classmethod
    def _from_yaml(cls, data: Any) -> Any:
        if isinstance(data, str):
            return {"action": data, "params": {}}
        if isinstance(data, dict) and "action" not in data:
            data = dict(data)
            extra = {key: data.pop(key) for key in ("for_each", "grant") if key in data}
            if extra and len(data) == 1:
                ((name, params),) = data.items()
                return {"action": name, "params": params or {}, **extra}
            if len(data) != 1:
                keys = ", ".join(map(str, data)) or "none"
                raise _error(
                    "an action is a mapping with one key, the action name "
                    f"(e.g. `- jira.search: {{jql: ...}}`); got keys {keys}"
                )
            ((name, params),) = data.items()
            if params is None:
                params = {}
            if not isinstance(params, dict):
                raise _error(f"the parameters of {name} must be a mapping, got {params!r}")
            return {"action": name, "params": params}
        return data


class ScheduleTrigger(StrictModel):
    schedule: str
    """5-field cron expression with crontab(5) meaning, e.g. '0 9 * * MON-FRI'."""
    timezone: str = "UTC"
    """IANA timezone the cron expression is read in, e.g. Europe/Berlin."""
    jitter: int | None = Field(default=None, ge=0, le=3600)
    """Up to this many seconds of random delay per fire, to spread load."""

    @field_validator("schedule")
    @classmethod
    def _cron(cls, value: str) -> str:
        return _checked(CronExpression.parse, value, CronError)

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, value: str) -> str:
        return _checked(check_timezone, value)

    @property
    def cron(self) -> CronExpression:
        return CronExpression.parse(self.schedule)

    def next_fire(self, after: datetime) -> datetime:
        """The first fire time after ``after``, in the trigger's timezone."""
        return self.cron.next_fire(after, self.timezone)

    def describe(self, now: datetime) -> str:
        upcoming = self.next_fire(now)
        return f"{self.schedule} {self.timezone}\nnext {upcoming:%a %d %b %H:%M %Z}"


class EveryTrigger(StrictModel):
    every: str
    """Run at a fixed interval: '15m', '2h', '1d', '30s' (at least 1 second)."""
    jitter: int | None = Field(default=None, ge=0, le=3600)
    """Up to this many seconds of random delay per fire."""

    @field_validator("every")
    @classmethod
    def _interval(cls, value: str) -> str:
        return _checked(parse_interval, value)

    @property
    def interval(self) -> timedelta:
        return parse_interval(self.every)

    def describe(self, now: datetime) -> str:
        return f"every {self.every}"


class AllowList(StrictModel):
    users: list[str] = Field(default_factory=list)
    """Slack users who may run it (@handle, user id or email); empty means anyone."""
    usergroups: list[str] = Field(default_factory=list)
    """Slack user groups whose members may run it (@group or id)."""
    channels: list[str] = Field(default_factory=list)
    """Channels it may be run from (#name or id); empty means any."""


class SlashTrigger(StrictModel):
    slash: str
    """Name under /meshagent (`/meshagent NAME`); also usable as its own command /NAME."""
    allow: AllowList = Field(default_factory=AllowList)
    """Who may run it and where; all lists empty means everyone everywhere."""

    @field_validator("slash")
    @classmethod
    def _slug(cls, value: str) -> str:
        value = value.removeprefix("/")
        if not SLUG.match(value):
            raise _error(f"{value!r} is not a valid command name: use {SLUG_HINT}")
        return value

    def describe(self, now: datetime) -> str:
        return f"/meshagent {self.slash}"


def _trigger_kind(data: Any) -> str | None:
    if isinstance(data, BaseModel):
        data = data.model_dump()
    if not isinstance(data, dict):
        return None
    kinds = [kind for kind in ("schedule", "every", "slash") if kind in data]
    return kinds[0] if len(kinds) == 1 else None


Trigger = Annotated[
    Annotated[ScheduleTrigger, Tag("schedule")]
    | Annotated[EveryTrigger, Tag("every")]
    | Annotated[SlashTrigger, Tag("slash")],
    Discriminator(
        _trigger_kind,
        custom_error_type="meshagent",
        custom_error_message="a trigger needs exactly one of the keys schedule, every or slash",
    ),
]
TRIGGER_TAGS = frozenset({"schedule", "every", "slash"})


class Budget(StrictModel):
    max_tokens_per_run: int | None = Field(default=None, gt=0)
    """Stop a run after this many tokens (input + output)."""
    max_model_calls: int | None = Field(default=None, gt=0)
    """Stop a run after this many model calls."""
    max_usd_per_run: Decimal | None = Field(default=None, gt=0)
    """Stop a run once it has cost this many dollars."""
    max_usd_per_day: Decimal | None = Field(default=None, gt=0)
    """Refuse to start once the agent has spent this many dollars today."""
    max_seconds_per_run: float | None = Field(default=None, gt=0)
    """Cancel a run that takes longer than this (wall clock)."""


class Value(StrictModel):
    tag: str
    """Value category from the project's taxonomy (meshagent.toml value_tags)."""
    minutes_saved: float = Field(default=0, ge=0)
    """Estimated minutes of someone's work one useful run saves."""

    @field_validator("tag")
    @classmethod
    def _known_tag(cls, value: str, info: ValidationInfo) -> str:
        tags = (info.context or {}).get("value_tags") or DEFAULT_VALUE_TAGS
        if value not in tags:
            hint = closest(value, tags)
            suggestion = f"; did you mean {hint!r}?" if hint else ""
            raise _error(f"unknown value tag {value!r}{suggestion} (valid: {', '.join(tags)})")
        return value


# Who may decide an approval: the agent's owner, a person (email, @handle, Slack user id) or a
# Slack user group (@handle or id S...); "@name" is a person's handle or a group's, as in Slack.
_APPROVER = re.compile(
    r"^(owner|[A-Za-z0-9._+-]{1,64}@[A-Za-z0-9.-]{1,253}|@[a-z0-9][a-z0-9._-]{0,79}"
    r"|[UW][A-Z0-9]{6,20}|S[A-Z0-9]{6,20})$"
)


def _approver(entry: str) -> str:
    if not _APPROVER.match(entry):
        raise _error(
            f"{entry!r} is not an approver: use owner, an email, a Slack @handle, "
            "a user id (U...) or a user group (@group or S...)"
        )
    return entry


Approver = Annotated[str, AfterValidator(_approver)]
_ASK_CHANNEL = re.compile(r"^(#[a-z0-9_-]{1,80}|[CG][A-Z0-9]{6,20})$")


class Approve(StrictModel):
    """Writes that wait for a person: staged with their exact payload, asked in Slack."""

    writes: Literal["all"] | list[str] = "all"
    """Which writes need approval: all, or a list of write actions (e.g. [jira.add_comment])."""
    by: list[Approver] = Field(default_factory=lambda: ["owner"], min_length=1)
    """Who may decide: owner, people (email, @handle, user id), user groups (@group, S...)."""
    ask: str = "dm"
    """Where to ask: dm (a direct message to each approver) or a channel (#name or id)."""
    expires_after: str = "4h"
    """An unanswered request expires after this long: '30m', '4h', '2d' (1 minute to 30 days)."""

    @field_validator("writes")
    @classmethod
    def _writes(cls, value: str | list[str]) -> str | list[str]:
        if isinstance(value, list):
            if not value:
                raise _error("list at least one write action, or write `all`")
            seen = [v for i, v in enumerate(value) if v in value[:i]]
            if seen:
                raise _error(f"{seen[0]!r} is listed twice")
        return value

    @field_validator("ask")
    @classmethod
    def _ask(cls, value: str) -> str:
        if value != "dm" and not _ASK_CHANNEL.match(value):
            raise _error(
                f"{value!r} is not where to ask: use dm (each approver) or a channel "
                "(#name or an id such as C0123ABCD)"
            )
        return value

    @field_validator("expires_after")
    @classmethod
    def _expires(cls, value: str) -> str:
        try:
            seconds = parse_interval(value).total_seconds()
        except ValueError as exc:
            raise _error(str(exc)) from None
        if not 60 <= seconds <= 30 * 86400:
            raise _error(f"{value!r} is out of range: between 1m and 30d")
        return value

    @property
    def expiry(self) -> timedelta:
        return parse_interval(self.expires_after)

    def covers(self, action: str) -> bool:
        """Whether a write by ``action`` needs approval."""
        return self.writes == "all" or action in self.writes


class AgentSpec(StrictModel):
    """An agent file: what it reads, what it may do, when it runs, what it may spend, its value."""

    name: str
    """Unique agent name: lowercase letters, digits and dashes (e.g. standup-digest)."""
    description: str = ""
    """One line on what the agent does, for people browsing the fleet."""
    owner: str
    """Who answers for this agent: an email or Slack handle."""
    team: str
    """Team the agent's cost and value are reported under."""
    model: str | None = None
    """LangChain model string 'provider:model' (e.g. openai:gpt-4.1-mini), or 'offline';
    unset uses the project's default_model."""
    model_settings: ModelSettings = Field(default_factory=ModelSettings)
    """Sampling settings passed to the model."""
    instructions: str
    """What the agent should do, written for the model."""
    inputs: dict[str, InputSpec] = Field(default_factory=dict)
    """Named parameters a caller may pass (Slack `key=value`, `meshagent run --input`)."""
    context: list[ActionUse] = Field(default_factory=list)
    """Read actions run before the model; their results go into the prompt."""
    tools: list[ActionUse] = Field(default_factory=list)
    """Actions the model may call itself (agent mode), each with the grant that scopes it."""
    deliver: list[ActionUse] = Field(default_factory=list)
    """Write actions that receive the final answer, run by the runtime."""
    skip_if_unchanged: bool = False
    """Skip the model (0 tokens) when the context is the same as at the last successful run."""
    quiet_answer: str | None = Field(None, min_length=1, max_length=100)
    """The answer that means "nothing to report" (e.g. NOTHING_TO_REPORT), as the instructions
    tell the model to give it: the run then delivers nothing and records a quiet result."""
    triggers: list[Trigger] = Field(default_factory=list)
    """When the agent runs: schedule (cron), every (interval) and slash (Slack command)."""
    budget: Budget = Field(default_factory=Budget)
    """Spending limits; a run that reaches one stops and is recorded as over_budget."""
    approve: Approve | None = None
    """Writes a person approves first: which, by whom, where to ask, when a request expires."""
    value: Value
    """What the agent is for, as a tag from the taxonomy and minutes saved per useful run."""
    enabled: bool = True
    """A disabled agent is validated but never scheduled or run."""

    _source: Path | None = PrivateAttr(default=None)
    _version: str | None = PrivateAttr(default=None)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not SLUG.match(value) or len(value) > 64:
            raise _error(f"{value!r} is not a valid agent name: use {SLUG_HINT} (at most 64)")
        return value

    @field_validator("owner", "team", "instructions")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise _error("must not be empty")
        return value

    @field_validator("quiet_answer")
    @classmethod
    def _quiet_answer(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None:
            return None
        if not value.strip() or "\n" in value:
            raise _error("must be one line of text, such as NOTHING_TO_REPORT")
        instructions = info.data.get("instructions") or ""
        if value.strip().lower() not in instructions.lower():
            raise _error(
                f"the instructions must tell the model when to answer {value.strip()!r} "
                f"(e.g. 'If nothing changed, answer exactly {value.strip()}.')"
            )
        return value.strip()

    @field_validator("model")
    @classmethod
    def _model(cls, value: str | None) -> str | None:
        if value is None or value in BUILTIN_MODELS:
            return value
        provider, sep, model = value.partition(":")
        if not sep or not provider or not model:
            raise _error(
                f"{value!r} is not a model string: use 'provider:model' "
                "(e.g. openai:gpt-4.1-mini) or 'offline'"
            )
        if provider not in PROVIDERS:
            hint = closest(provider, PROVIDERS)
            suggestion = f"; did you mean {hint!r}?" if hint else ""
            raise _error(
                f"unknown model provider {provider!r}{suggestion} "
                f"(known: {', '.join(sorted(PROVIDERS))})"
            )
        return value

    def fires_per_month(self, start: date) -> float:
        """Scheduled runs in the 30 days from ``start``: schedules and intervals, not slash."""
        total = 0.0
        for trigger in self.triggers if self.enabled else ():
            if isinstance(trigger, ScheduleTrigger):
                total += trigger.cron.fires_between(start, start + timedelta(days=30))
            elif isinstance(trigger, EveryTrigger):
                total += timedelta(days=30) / trigger.interval
        return total

    @property
    def source(self) -> Path | None:
        """The file this spec was loaded from, if any."""
        return self._source

    @property
    def version(self) -> str:
        """Hash of the spec's content: changes whenever the agent's behaviour may change.

        Computed once: the spec is frozen, and every run reads it several times (a model dump
        and a SHA-256, ~40 µs each time). A copy made with changes computes its own.
        """
        if self._version is None:
            dumped = self.model_dump(mode="json")
            canonical = json.dumps(dumped, sort_keys=True, separators=(",", ":"))
            self._version = hashlib.sha256(canonical.encode()).hexdigest()[:16]
        return self._version

    def model_copy(self, *, update: dict[str, Any] | None = None, deep: bool = False) -> Self:
        copied = super().model_copy(update=update, deep=deep)
        if update:
            copied._version = None
        return copied
