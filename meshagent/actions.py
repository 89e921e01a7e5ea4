"""The connector interface: actions with typed arguments and grants, and the registry of them.

A connector (``connectors/http.py``, ``connectors/slack.py``, or a third-party package) declares
actions. Each action has a dotted name, a kind (read or write), a pydantic model of its
arguments, a pydantic model of the grant a YAML file may give it, an async implementation, and a
scope check that says whether one call's arguments fall inside a grant. Connectors register
through the ``meshagent.connectors`` entry-point group, built-ins exactly as plugins do.
"""

from __future__ import annotations

import difflib
import logging
import os
import re
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from functools import lru_cache
from importlib.metadata import EntryPoint, entry_points
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, ValidationError, ValidationInfo
from pydantic_core import PydanticCustomError

from meshagent.exceptions import (
    ConnectorError,
    GrantDenied,
    MeshAgentError,
    RegistryError,
    RunError,
)

__all__ = [
    "ENTRY_POINT_GROUP",
    "ENV_ALLOWED",
    "IDENTIFIER_ERROR",
    "PLACEHOLDERS",
    "Action",
    "ActionArgs",
    "ActionContext",
    "ActionGrant",
    "ActionKind",
    "ActionResult",
    "Connector",
    "Outcome",
    "Registry",
    "closest",
    "describe_invalid",
    "default_registry",
    "identifier",
]

ENTRY_POINT_GROUP = "meshagent.connectors"
log = logging.getLogger(__name__)

#: Put in a field's ``json_schema_extra`` to allow ``${VAR}`` in it (for secrets such as headers).
ENV_ALLOWED = {"x-meshagent-env": True}
#: In a validation context, lets an ``identifier`` hold a ``{{placeholder}}`` (an agent file's
#: arguments, checked when it is loaded; the runtime validates them again once filled in).
PLACEHOLDERS = "meshagent.placeholders"
#: The pydantic error type of an ``identifier`` not in its service's format.
IDENTIFIER_ERROR = "identifier"


class ActionKind(StrEnum):
    """A read gathers context and changes nothing; a write changes something people see."""

    READ = "read"
    WRITE = "write"


class ActionArgs(BaseModel):
    """Base of an action's argument model: unknown arguments are mistakes."""

    model_config = ConfigDict(extra="forbid")


class ActionGrant(BaseModel):
    """Base of an action's grant model: the scope an agent file may give the model."""

    model_config = ConfigDict(extra="forbid")


@dataclass(frozen=True)
class Outcome:
    """Something a run produced that a person can look at: a message, an issue, a planned write."""

    kind: str
    reference: str
    url: str | None = None
    planned: bool = False
    #: Who could see it, as the connector knew at delivery (None: unknown): the audience
    #: (public, private, dm, thread, ephemeral, jira), its size, whether anyone but the owner
    #: and the triggerer can see it, and what else is known (a channel's name, Jira people).
    audience: str | None = None
    audience_size: int | None = None
    reaches_others: bool | None = None
    reach_detail: Mapping[str, Any] | None = field(default=None, compare=False)


@dataclass
class ActionResult:
    """What an action returns: compact data for the prompt, and outcomes for the ledger."""

    data: Any = None
    outcomes: list[Outcome] = field(default_factory=list)

    @classmethod
    def planned(cls, action: str, args: BaseModel, target: str) -> ActionResult:
        """A dry run's result: what the write would do, recorded as a planned outcome."""
        return cls(
            data={"planned": action, "target": target, "arguments": args.model_dump()},
            outcomes=[Outcome(kind="planned", reference=f"{action} {target}", planned=True)],
        )


@dataclass
class ActionContext:
    """What an action may use besides its arguments. Credentials come from ``env`` only."""

    dry_run: bool = False
    env: Mapping[str, str] = field(default_factory=lambda: os.environ)
    settings: Mapping[str, Any] = field(default_factory=dict)
    #: What the runtime lends to actions that need it: ``ledger``, ``config``, ``now``.
    services: Mapping[str, Any] = field(default_factory=dict)
    #: Settings by connector name (``meshagent.toml``'s ``[slack]``, ``[jira]``,
    #: ``[connectors.NAME]``); an action is handed its own connector's as ``settings``.
    connector_settings: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    def for_connector(self, name: str) -> ActionContext:
        """This context with connector ``name``'s settings, when there are any for it."""
        own = self.connector_settings.get(name)
        return self if own is None else replace(self, settings=own)


#: ``handler(context, args, grant)``; the grant is None for a call the agent file fixed
#: (context, deliver). A handler that makes further requests (redirects) checks them against it.
Handler = Callable[[ActionContext, Any, Any], Awaitable[ActionResult]]
ScopeCheck = Callable[[Any, Any], "str | None"]


def identifier(
    what: str,
    pattern: str,
    expected: str,
    *,
    parse: Callable[[str], Any] | None = None,
) -> Any:
    """The type of an argument that reaches a request (a URL's path or query): a string that
    must match ``pattern`` whole (ASCII classes only; ``\\d`` and ``\\w`` match more than ASCII),
    then ``parse(text)`` (which may raise ValueError) turns it into the typed value that grants
    compare. A mismatch is a validation error of type ``IDENTIFIER_ERROR`` at the argument,
    ``'TEXT' is not WHAT; expected EXPECTED``: a call the runtime refuses, not one that failed.
    """
    compiled = re.compile(pattern)

    def check(value: str, info: ValidationInfo) -> Any:
        if info.context and info.context.get(PLACEHOLDERS) and "{{" in value:
            return value  # an agent file's {{item.key}}: checked once filled in, at run time
        try:
            if compiled.fullmatch(value) is None:
                raise ValueError(value)
            return parse(value) if parse is not None else value
        except ValueError:
            shown = repr(value) if len(value) <= 60 else repr(value[:57]) + "..."
            raise PydanticCustomError(
                IDENTIFIER_ERROR,
                "{value} is not {what}; expected {expected}",
                {"value": shown, "what": what, "expected": expected},
            ) from None

    # No "pattern" in the JSON Schema: an agent file's {{item.key}} would look wrong in editors.
    return Annotated[str, AfterValidator(check)]


def _inside_any_grant(args: Any, grant: Any) -> str | None:
    return None


@dataclass(frozen=True)
class Action:
    """One thing a connector can do, such as ``http.get`` or ``slack.post_message``.

    ``scope(args, grant)`` returns ``None`` when the call falls inside the grant, or the reason
    in plain words when it does not. ``answer_field`` names, for a write action, the argument
    that receives the agent's final answer when the action is used under ``deliver:``.
    """

    name: str
    kind: ActionKind
    description: str
    args: type[ActionArgs]
    grant: type[ActionGrant]
    handler: Handler
    scope: ScopeCheck = _inside_any_grant
    answer_field: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "kind", ActionKind(self.kind))
        if self.answer_field is not None and self.answer_field not in self.args.model_fields:
            raise RegistryError(
                f"action {self.name}: answer_field {self.answer_field!r} is not an argument"
            )

    def parse(self, params: Mapping[str, Any]) -> ActionArgs:
        """The arguments of a call the agent file fixed (context, deliver), its ``{{inputs}}``
        filled in: a value a slash command's user typed is checked like a model's argument.

        An identifier not in its service's format (``PAY-1/../OPS-1``) is refused (GrantDenied,
        the run ``denied``) before any request; any other mismatch fails the run, saying which
        argument and why."""
        try:
            return self.args.model_validate(params)
        except ValidationError as exc:
            problems = describe_invalid(exc)
            if any(error["type"] == IDENTIFIER_ERROR for error in exc.errors()):
                raise GrantDenied(self.name, problems) from None
            raise RunError(f"{self.name}: invalid arguments: {problems}") from None

    def check(self, args: ActionArgs, grant: ActionGrant) -> None:
        """Raise GrantDenied when the call's arguments fall outside the grant."""
        reason = self.scope(args, grant)
        if reason is not None:
            raise GrantDenied(self.name, reason)

    async def __call__(
        self, context: ActionContext, args: ActionArgs, grant: ActionGrant | None = None
    ) -> ActionResult:
        """Run the action; with a grant, refuse a call outside it before any request is made."""
        if grant is not None:
            self.check(args, grant)
        try:
            return await self.handler(context.for_connector(self.connector), args, grant)
        except Exception as exc:
            if _ours(exc):
                raise
            # A client library (or the connector's reading of an answer it did not expect)
            # failed: the call failed, with a reason the model and the ledger can read.
            log.warning("%s raised %s", self.name, type(exc).__name__, exc_info=True)
            raise ConnectorError(self.name, "", _unexpected(exc)) from exc

    @property
    def connector(self) -> str:
        """The name of the connector the action belongs to (``slack`` for slack.post_message)."""
        return self.name.partition(".")[0]


def describe_invalid(exc: ValidationError) -> str:
    """A validation error in a line: each argument and what is wrong with it, no URLs or
    inputs (an input may hold a secret; the message names its format instead)."""
    parts = []
    for error in exc.errors(include_url=False, include_input=False):
        where = ".".join(str(part) for part in error["loc"])
        parts.append(f"{where}: {error['msg']}" if where else error["msg"])
    return "; ".join(parts)


def _ours(exc: BaseException) -> bool:
    """MeshAgent's own exceptions (refusals, budgets, connector errors) keep their meaning."""
    return isinstance(exc, MeshAgentError) or type(exc).__module__.partition(".")[0] == "meshagent"


def _unexpected(exc: BaseException) -> str:
    detail = " ".join(str(exc).split())[:200]
    where = type(exc).__module__.partition(".")[0]
    source = "" if where in ("builtins", "connectors") else f" from {where}"
    name = type(exc).__name__
    return f"unexpected {name}{source}: {detail}" if detail else f"unexpected {name}{source}"


@dataclass(frozen=True)
class Connector:
    """A workplace tool: a name (``slack``) and the actions it offers (``slack.post_message``)."""

    name: str
    description: str
    actions: tuple[Action, ...]
    #: ``missing(context, action)``: what ``action`` lacks in ``context.env`` to run (the
    #: variables to set, in words), or None. The runtime asks before a run opens its entry,
    #: so a run that could not deliver spends nothing and says why, as a missing model key does.
    missing: Callable[[ActionContext, Action], str | None] | None = None

    def __post_init__(self) -> None:
        for action in self.actions:
            if not action.name.startswith(self.name + "."):
                raise RegistryError(
                    f"connector {self.name!r}: action {action.name!r} must be named "
                    f"'{self.name}.<action>'"
                )


def closest(name: str, candidates: Iterable[str]) -> str | None:
    """The candidate most like ``name``, or None when nothing is close."""
    candidates = list(candidates)
    matches = difflib.get_close_matches(name, candidates, n=1, cutoff=0.6)
    if matches:
        return matches[0]
    # A short form of one name ('toil' for 'toil-reduction') is close too.
    containing = [c for c in candidates if name and name.lower() in c.lower()]
    return containing[0] if len(containing) == 1 else None


class Registry:
    """Action names to actions. Duplicates are refused, naming both sources."""

    def __init__(self) -> None:
        self._actions: dict[str, Action] = {}
        self._sources: dict[str, str] = {}
        self._connectors: dict[str, tuple[Connector, str]] = {}

    def register(self, connector: Connector, *, source: str = "<code>") -> None:
        if connector.name in self._connectors:
            raise RegistryError(
                f"connector {connector.name!r} from {source} is already registered by "
                f"{self._connectors[connector.name][1]}"
            )
        for action in connector.actions:
            if action.name in self._actions:
                raise RegistryError(
                    f"action {action.name!r} from {source} is already registered by "
                    f"{self._sources[action.name]}"
                )
        self._connectors[connector.name] = (connector, source)
        for action in connector.actions:
            self._actions[action.name] = action
            self._sources[action.name] = source

    def get(self, name: str) -> Action:
        """The action called ``name``; an unknown name lists the valid ones and the closest."""
        try:
            return self._actions[name]
        except KeyError:
            raise RegistryError(self.unknown_message(name)) from None

    def unknown_message(self, name: str, kind: ActionKind | None = None) -> str:
        valid = self.names(kind)
        suggestion = closest(name, valid)
        hint = f"; did you mean {suggestion!r}?" if suggestion else ""
        what = f"{kind} action" if kind else "action"
        return f"unknown {what} {name!r}{hint} (valid: {', '.join(valid) or 'none'})"

    def missing(self, action: Action, context: ActionContext) -> str | None:
        """What ``action`` lacks in the environment to run under ``context``, or None."""
        found = self._connectors.get(action.connector)
        if found is None or found[0].missing is None:
            return None
        return found[0].missing(context.for_connector(action.connector), action)

    def __contains__(self, name: object) -> bool:
        return name in self._actions

    def names(self, kind: ActionKind | None = None) -> list[str]:
        return sorted(n for n, a in self._actions.items() if kind is None or a.kind == kind)

    def actions(self) -> list[Action]:
        return [self._actions[name] for name in self.names()]

    @property
    def connectors(self) -> dict[str, Connector]:
        return {name: connector for name, (connector, _) in self._connectors.items()}

    @classmethod
    def from_entry_points(cls, group: str = ENTRY_POINT_GROUP) -> Registry:
        """A registry of every connector installed under the entry-point group."""
        registry = cls()
        for entry_point in sorted(entry_points(group=group), key=lambda ep: ep.name):
            registry.register(_load(entry_point), source=_describe(entry_point))
        return registry


def _describe(entry_point: EntryPoint) -> str:
    dist = entry_point.dist.name if entry_point.dist is not None else "unknown distribution"
    return f"entry point {entry_point.name!r} ({entry_point.value}) of {dist}"


def _load(entry_point: EntryPoint) -> Connector:
    try:
        obj = entry_point.load()
    except Exception as exc:
        raise RegistryError(
            f"cannot load connector {_describe(entry_point)}: {type(exc).__name__}: {exc}"
        ) from exc
    if callable(obj) and not isinstance(obj, Connector):
        obj = obj()
    if not isinstance(obj, Connector):
        raise RegistryError(
            f"{_describe(entry_point)} is a {type(obj).__name__}, not a meshagent Connector"
        )
    return obj


@lru_cache(maxsize=1)
def default_registry() -> Registry:
    """The registry of installed connectors, built once per process."""
    return Registry.from_entry_points()
