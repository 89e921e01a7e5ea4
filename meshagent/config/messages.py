"""Settings errors as sentences: what was expected, the closest valid name, where secrets go."""

from __future__ import annotations

import difflib
import re
import types
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import BaseModel
from pydantic.fields import FieldInfo

from meshagent.config.lines import Loc
from meshagent.config.project import NOT_SETTINGS, Config


def dotted(loc: Loc) -> str:
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            name = part if re.fullmatch(r"[A-Za-z0-9_-]+", part) else f'"{part}"'
            text += f".{name}" if text else name
    return text


def unwrap(annotation: Any) -> tuple[Any, list[Any]]:
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


def field_at(loc: Loc) -> tuple[Any, list[Any], FieldInfo | None]:
    """The type, constraints and field (if `loc` ends at one) of a place in the settings."""
    annotation: Any = Config
    metadata: list[Any] = []
    info: FieldInfo | None = None
    for part in loc:
        annotation, _ = unwrap(annotation)
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
    annotation, more = unwrap(annotation)
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


def close_match(word: str, choices: list[str]) -> str | None:
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


def secret_message(loc: Loc, valid: list[str] | None) -> str:
    """For a secret-looking key; `valid` is None in free-form tables."""
    key = str(loc[-1])
    message = f"{dotted(loc)!r} looks like a secret: put secrets in the environment"
    env_keys = [name for name in valid or () if name.endswith("_env") and looks_secret(name[:-4])]
    if valid is None or f"{key}_env" in env_keys:
        message += f"; name the variable with {key}_env"
        default = None if valid is None else field_at((*loc[:-1], f"{key}_env"))[2]
        if default is not None:
            message += f' ({key}_env = "{default.default}")'
        return message
    if env_keys:
        return f"{message}; name the variable with one of {', '.join(env_keys)}"
    return f"{message}, never in the settings file"


def unknown_message(loc: Loc) -> str:
    model, _, _ = field_at(loc[:-1])
    valid = [name for name in model.model_fields if loc[:-1] or name not in NOT_SETTINGS]
    key = str(loc[-1])
    if looks_secret(key):
        return secret_message(loc, valid)
    message = f"unknown setting {dotted(loc)!r}"
    if best := close_match(key, valid):
        message += f"; did you mean {dotted((*loc[:-1], best))!r}?"
    return f"{message} (valid: {', '.join(valid)})"


def error_message(error: Any, loc: Loc, where: str, raw: str | None) -> str:
    """One pydantic error at `loc` as a sentence; `raw` is the value of an environment variable."""
    if error["type"] == "extra_forbidden":
        return unknown_message(loc)
    if error["type"] in ("value_error", "assertion_error"):
        return f"{where}: {error['ctx']['error']}"
    if error["type"] == "missing":
        return f"{where}: required setting is missing"
    annotation, metadata, info = field_at(loc)
    if str(loc[-1]).endswith("_env"):  # the value may well be the secret itself: never show it
        example = f", such as {info.default}" if info is not None else ""
        return f"{where}: expected the name of an environment variable{example} (value not shown)"
    got = repr(raw) if raw is not None else _shown(error["input"])
    return f"{where}: expected {_expected(annotation, metadata)}, got {got}"
