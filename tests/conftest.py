"""Hermetic tests: no MESHAGENT_* settings leak in, and the user's data directory is a temp one."""

from __future__ import annotations

import os

import pytest


@pytest.fixture(autouse=True)
def _hermetic(tmp_path_factory, monkeypatch):
    for name in list(os.environ):
        if name.startswith("MESHAGENT_"):
            monkeypatch.delenv(name)
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_DATA_HOME", str(home / ".local" / "share"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / ".config"))
