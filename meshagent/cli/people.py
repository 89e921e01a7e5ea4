"""Who is at the keyboard: the person the CLI views the ledger as and names as an owner.

One place to answer it, so that it can grow (a person table joining a Slack id, emails and a
login is planned); today it reads `[people] me`, then git's user.email, then $USER.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from meshagent.config import Config

__all__ = ["Person", "current_person", "git_email"]


@dataclass(frozen=True)
class Person:
    """A person's name as the ledger knows it, and where it came from (said on screen)."""

    name: str
    source: str

    def __str__(self) -> str:
        return f"{self.name} ({self.source})"


def git_email(cwd: Path | None = None) -> str | None:
    """git's user.email for `cwd`, or None without git or without the setting."""
    try:
        found = subprocess.run(
            ["git", "config", "user.email"],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    email = found.stdout.strip()
    return email if found.returncode == 0 and email else None


def current_person(config: Config, *, env: Mapping[str, str] | None = None) -> Person | None:
    """`[people] me`, else git's user.email, else $USER; None when none of them is set."""
    env = os.environ if env is None else env
    if config.people.me:
        where = config.source.name if config.source is not None else "settings"
        return Person(config.people.me, f"[people] me in {where}")
    email = git_email(config.root)
    if email:
        return Person(email, "git's user.email")
    user = env.get("USER", "").strip()
    if user:
        return Person(user, "$USER")
    return None
