"""The sandbox's seed: a YAML fixture of Slack users, channels and messages, and Jira projects,
users, workflow and issues. Times are relative (``ago: 3h``, ``created: -12d``) so that a seed
always looks like this week's data.
"""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from meshagent.exceptions import ConfigError

__all__ = ["DEFAULT_SEED", "ago_seconds", "load_seed"]

DEFAULT_SEED = "seed.yaml"
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_AGO = re.compile(r"^(?:\d+(?:\.\d+)?[smhdw])+$")
_PART = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")


def ago_seconds(text: str | int | float) -> float:
    """Seconds in ``3h``, ``2d``, ``5h50m`` (a plain number is seconds)."""
    if isinstance(text, int | float):
        return float(text)
    compact = str(text).replace(" ", "")
    if not _AGO.match(compact):
        raise ValueError(f"expected a duration such as 3h, 2d or 5h50m, got {text!r}")
    return sum(float(n) * _UNITS[unit] for n, unit in _PART.findall(compact))


def load_seed(path: str | Path | None = None) -> dict[str, Any]:
    """The seed at ``path``, or the built-in one; its ``slack:`` and ``jira:`` sections."""
    if path is None:
        text = resources.files("meshagent.sandbox").joinpath(DEFAULT_SEED).read_text("utf-8")
        where = f"<built-in {DEFAULT_SEED}>"
    else:
        where = str(path)
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"cannot read the sandbox seed {where}: {exc.strerror}") from None
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f":{mark.line + 1}:{mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{where}{at}: invalid YAML: {problem}") from None
    if not isinstance(data, dict) or not set(data) <= {"slack", "jira"}:
        raise ConfigError(f"{where}: a seed has a 'slack:' and/or a 'jira:' section, nothing else")
    return data
