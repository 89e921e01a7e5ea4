"""`describe_fields` gives a model the field descriptions that pydantic's
``use_attribute_docstrings`` gives it, and the settings and agent-file models use it."""

from __future__ import annotations

import importlib.util
import sys

import pytest

from meshagent.agentfile.spec import AgentSpec, Budget
from meshagent.config import Config, FlagSettings

MODELS = '''
from typing import ClassVar

from pydantic import BaseModel, ConfigDict, Field

from meshagent.config.docstrings import describe_fields


class Ours(BaseModel):
    model_config = ConfigDict(defer_build=True)

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs):
        super().__pydantic_init_subclass__(**kwargs)
        describe_fields(cls)


class Theirs(BaseModel):
    model_config = ConfigDict(use_attribute_docstrings=True)


class Sample(BASE):
    a: int = 1
    """First."""
    b: str = Field("x", description="given")
    """Not this one: the field says it."""
    c: int
    """Third,
        over two lines."""
    d: int = Field(default_factory=lambda: 2)
    e: ClassVar[int] = 3
    """A class variable, not a field."""

    def method(self) -> None:
        """A method."""

    f: float = 0.5
    """After a method."""

    class Inner(BASE):
        g: int = 0
        """Inside."""


class Child(Sample):
    a: int = 2
    h: int = 0
    """The child's own."""
'''


def load(tmp_path, base: str):
    path = tmp_path / f"models_{base.lower()}.py"
    path.write_text(
        MODELS.replace("class Sample(BASE)", f"class Sample({base})").replace(
            "class Inner(BASE)", f"class Inner({base})"
        )
    )
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[path.stem] = module
    try:
        spec.loader.exec_module(module)
    finally:
        del sys.modules[path.stem]
    return module


@pytest.mark.parametrize("model", ["Sample", "Child", "Sample.Inner"])
def test_the_descriptions_and_schemas_are_pydantics(tmp_path, model):
    ours, theirs = load(tmp_path, "Ours"), load(tmp_path, "Theirs")

    def find(module):
        found = module
        for part in model.split("."):
            found = getattr(found, part)
        return found

    mine, reference = find(ours), find(theirs)
    described = {name: field.description for name, field in mine.model_fields.items()}
    assert described == {name: field.description for name, field in reference.model_fields.items()}
    assert any(described.values())  # the comparison can fail: there are descriptions to get
    assert mine.model_json_schema() == reference.model_json_schema()


@pytest.mark.parametrize("model", [Config, FlagSettings, AgentSpec, Budget])
def test_the_projects_models_have_their_docstrings_as_descriptions(model):
    schema = model.model_json_schema()
    described = [name for name, field in model.model_fields.items() if field.description]
    assert described
    for name in described:
        assert schema["properties"][name]["description"] == model.model_fields[name].description
