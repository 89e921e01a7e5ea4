"""The public surface is what `meshagent/__init__.py` says it is, and nothing else."""

from __future__ import annotations

import meshagent


def test_exported_names_are_the_intended_ones():
    public = {name for name in dir(meshagent) if not name.startswith("_")}
    modules = {name for name in public if type(getattr(meshagent, name)).__name__ == "module"}
    assert public - modules - {"annotations"} == (set(meshagent.__all__) - {"__version__"})


def test_every_export_is_documented():
    for name in meshagent.__all__:
        obj = getattr(meshagent, name)
        if callable(obj):
            assert obj.__doc__, name
