"""Loading meshagent.toml: which file, reading it, and every problem at once with its line."""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, NamedTuple

from pydantic import ValidationError

from meshagent.config.environment import environment_overrides, merge_overrides
from meshagent.config.lines import Lines, Loc, key_lines, line_of
from meshagent.config.messages import (
    dotted,
    error_message,
    looks_secret,
    secret_message,
    unknown_message,
)
from meshagent.config.project import NOT_SETTINGS, Config
from meshagent.config.urls import has_password, project_ledger_url
from meshagent.exceptions import ConfigError

CONFIG_FILENAME = "meshagent.toml"


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


def _read(file: Path, shown: str) -> tuple[dict[str, Any], dict[Loc, int]]:
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
    return data, key_lines(text)


class _Issue(NamedTuple):
    line: int  # 0 when not known
    detail: str


def _secret_keys(value: Any, loc: Loc) -> Iterator[Loc]:
    if isinstance(value, dict):
        for key, item in value.items():
            if looks_secret(key):
                yield (*loc, key)
            else:
                yield from _secret_keys(item, (*loc, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _secret_keys(item, (*loc, index))


def _file_problems(data: dict[str, Any], lines: Lines) -> list[_Issue]:
    """What validation of the models cannot see: non-settings and secrets in the file."""
    issues = [
        _Issue(lines.get((key,), 0), unknown_message((key,))) for key in NOT_SETTINGS if key in data
    ]
    url = data.get("ledger_url")
    if isinstance(url, str) and has_password(url):
        detail = (
            "ledger_url: the URL holds a password: put secrets in the environment; set "
            "MESHAGENT_LEDGER_URL, or leave the password to the driver (PGPASSWORD, ~/.pgpass)"
        )
        issues.append(_Issue(lines.get(("ledger_url",), 0), detail))
    connectors = data.get("connectors")
    for name, settings in connectors.items() if isinstance(connectors, dict) else ():
        for loc in _secret_keys(settings, ("connectors", name)):
            issues.append(_Issue(line_of(loc, lines) or 0, secret_message(loc, None)))
    return issues


def _loc(error: Any) -> Loc:
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
    settings = {key: value for key, value in data.items() if key not in NOT_SETTINGS}
    if file is not None:
        settings.setdefault("ledger_url", project_ledger_url(file))
    file_issues = _file_problems(data, lines)
    config = None
    try:
        config = Config.model_validate({**settings, **where})
    except ValidationError as exc:
        for error in exc.errors(include_url=False):
            loc = _loc(error)
            detail = error_message(error, loc, dotted(loc), None)
            file_issues.append(_Issue(line_of(loc, lines) or 0, detail))
    overrides, env_issues = environment_overrides(env)
    if overrides:
        try:
            config = Config.model_validate({**merge_overrides(settings, overrides), **where})
        except ValidationError as exc:
            for error in exc.errors(include_url=False):
                loc = _loc(error)
                # Errors elsewhere are the file's own, reported above.
                for setting, override in overrides.items():
                    if loc[: len(setting)] == setting:
                        detail = error_message(error, loc, override.variable, override.raw)
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
