"""The connector interface and registry: registration, lookup, entry points, grant checks."""

from __future__ import annotations

import asyncio
import re
import sys
import textwrap
from pathlib import Path

import pytest

from meshagent.actions import (
    Action,
    ActionArgs,
    ActionContext,
    ActionGrant,
    ActionKind,
    ActionResult,
    Connector,
    Registry,
    default_registry,
)
from meshagent.exceptions import GrantDenied, RegistryError


class EchoArgs(ActionArgs):
    room: str
    text: str = ""


class EchoGrant(ActionGrant):
    rooms: list[str]


async def _echo(context: ActionContext, args: EchoArgs, grant: EchoGrant | None) -> ActionResult:
    return ActionResult(data={"room": args.room, "text": args.text, "dry_run": context.dry_run})


def _room_inside(args: EchoArgs, grant: EchoGrant) -> str | None:
    return None if args.room in grant.rooms else f"room {args.room} is not in {grant.rooms}"


def echo_connector(name: str = "echo") -> Connector:
    action = Action(
        name=f"{name}.say",
        kind=ActionKind.WRITE,
        description="Say something in a room.",
        args=EchoArgs,
        grant=EchoGrant,
        handler=_echo,
        scope=_room_inside,
        answer_field="text",
    )
    return Connector(name=name, description="Echo for tests.", actions=(action,))


def test_registered_action_is_found_by_name():
    registry = Registry()
    registry.register(echo_connector())
    assert registry.get("echo.say").kind is ActionKind.WRITE
    assert registry.names() == ["echo.say"]
    assert registry.names(ActionKind.READ) == []
    assert "echo.say" in registry


def test_unknown_action_lists_valid_names_and_suggests_closest():
    registry = Registry()
    registry.register(echo_connector())
    message = "unknown action 'echo.sya'; did you mean 'echo.say'? (valid: echo.say)"
    with pytest.raises(RegistryError, match=re.escape(message)):
        registry.get("echo.sya")


def test_unknown_action_without_close_match_has_no_suggestion():
    registry = Registry()
    registry.register(echo_connector())
    with pytest.raises(RegistryError, match=re.escape("unknown action 'zzz' (valid: echo.say)")):
        registry.get("zzz")


def test_duplicate_connector_names_both_sources():
    registry = Registry()
    registry.register(echo_connector(), source="pkg-a")
    message = "connector 'echo' from pkg-b is already registered by pkg-a"
    with pytest.raises(RegistryError, match=re.escape(message)):
        registry.register(echo_connector(), source="pkg-b")


def test_action_must_be_named_after_its_connector():
    with pytest.raises(RegistryError, match=re.escape("must be named 'other.<action>'")):
        Connector(name="other", description="", actions=echo_connector().actions)


def test_answer_field_must_be_an_argument():
    with pytest.raises(RegistryError, match="answer_field 'body' is not an argument"):
        Action(
            name="echo.bad",
            kind=ActionKind.WRITE,
            description="",
            args=EchoArgs,
            grant=EchoGrant,
            handler=_echo,
            answer_field="body",
        )


def test_call_outside_grant_is_refused_before_the_handler_runs():
    action = echo_connector().actions[0]
    calls = []

    async def handler(context, args, grant):
        calls.append(args)
        return ActionResult()

    guarded = Action(**{**action.__dict__, "handler": handler})
    grant = EchoGrant(rooms=["ops"])
    with pytest.raises(GrantDenied, match=re.escape("echo.say refused: room general is not in")):
        asyncio.run(guarded(ActionContext(), EchoArgs(room="general"), grant))
    assert calls == []
    asyncio.run(guarded(ActionContext(), EchoArgs(room="ops"), grant))
    assert len(calls) == 1


def test_builtin_http_connector_registers_through_its_entry_point():
    assert "http.get" in default_registry()
    assert default_registry().get("http.get").kind is ActionKind.READ


def _install_plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, target: str) -> None:
    """A third-party distribution on sys.path, as pip would install it."""
    (tmp_path / "acme_connector.py").write_text(
        textwrap.dedent(
            """
            from meshagent.actions import Action, ActionArgs, ActionGrant, ActionResult, Connector

            class Args(ActionArgs):
                query: str

            async def run(context, args, grant):
                return ActionResult(data=args.query)

            def make():
                action = Action(name="acme.find", kind="read", description="Find.", args=Args,
                                grant=ActionGrant, handler=run)
                return Connector(name="acme", description="Acme.", actions=(action,))

            connector = make()
            not_a_connector = 42
            """
        )
    )
    dist = tmp_path / "acme_connector-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: acme-connector\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(f"[meshagent.connectors]\nacme = {target}\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "acme_connector", raising=False)


@pytest.mark.parametrize("target", ["acme_connector:connector", "acme_connector:make"])
def test_third_party_connector_registers_like_builtins(tmp_path, monkeypatch, target):
    _install_plugin(tmp_path, monkeypatch, target)
    registry = Registry.from_entry_points()
    assert registry.get("acme.find").kind is ActionKind.READ
    assert "http.get" in registry


def test_plugin_that_is_not_a_connector_is_named_in_the_error(tmp_path, monkeypatch):
    _install_plugin(tmp_path, monkeypatch, "acme_connector:not_a_connector")
    message = (
        "entry point 'acme' (acme_connector:not_a_connector) of acme-connector is a int, "
        "not a meshagent Connector"
    )
    with pytest.raises(RegistryError, match=re.escape(message)):
        Registry.from_entry_points()


def test_plugin_that_fails_to_import_is_named_in_the_error(tmp_path, monkeypatch):
    _install_plugin(tmp_path, monkeypatch, "acme_missing:connector")
    with pytest.raises(RegistryError, match=re.escape("cannot load connector entry point 'acme'")):
        Registry.from_entry_points()


def test_planned_result_records_the_write_without_doing_it():
    result = ActionResult.planned("echo.say", EchoArgs(room="ops", text="hi"), "ops")
    assert result.data == {
        "planned": "echo.say",
        "target": "ops",
        "arguments": {"room": "ops", "text": "hi"},
    }
    (outcome,) = result.outcomes
    assert (outcome.kind, outcome.reference, outcome.planned) == ("planned", "echo.say ops", True)


def test_an_action_gets_its_own_connectors_settings_and_says_what_it_misses():
    async def settings_of(context: ActionContext, args: EchoArgs, grant: object) -> ActionResult:
        return ActionResult(data=dict(context.settings))

    def missing(context: ActionContext, action: Action) -> str | None:
        name = context.settings.get("key_env", "ECHO_KEY")
        return None if context.env.get(name) else f"set {name} for {action.name}"

    action = Action("echo.say", ActionKind.READ, "Settings.", EchoArgs, EchoGrant, settings_of)
    registry = Registry()
    registry.register(Connector("echo", "Echo.", (action,), missing=missing))
    context = ActionContext(
        env={"ACME_KEY": "k"},
        connector_settings={"echo": {"key_env": "ACME_KEY"}, "other": {"key_env": "NO"}},
    )
    result = asyncio.run(action(context, EchoArgs(room="r")))
    assert result.data == {"key_env": "ACME_KEY"}
    assert registry.missing(action, context) is None
    assert registry.missing(action, ActionContext(env={})) == "set ECHO_KEY for echo.say"
    # A connector without settings keeps what the context was given.
    plain = ActionContext(settings={"key_env": "GIVEN"})
    assert asyncio.run(action(plain, EchoArgs(room="r"))).data == {"key_env": "GIVEN"}
