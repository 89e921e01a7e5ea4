"""Fuzzing the loader: any text gives a spec or a located SpecError, never another exception."""

from __future__ import annotations

from pathlib import Path

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from meshagent.agentfile.loader import parse_agent
from meshagent.agentfile.spec import AgentSpec
from meshagent.exceptions import SpecError

VALID = (Path(__file__).parent / "data" / "valid.yaml").read_text()
LINES = VALID.splitlines(keepends=True)

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def outcome(text: str) -> AgentSpec | SpecError:
    try:
        return parse_agent(text, filename="f.yaml", env={})
    except SpecError as exc:
        assert exc.issues, "a SpecError must carry at least one issue"
        for issue in exc.issues:
            assert issue.file == "f.yaml"
            lines = max(1, text.count("\n") + 1)
            assert 1 <= issue.line <= lines + 1, (issue, lines)
            assert issue.column >= 1
            assert issue.message
        return exc


yaml_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=20)
)
yaml_values = st.recursive(
    yaml_scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=20,
)


@FUZZ
@given(st.text(alphabet="abc:- \n{}[]&*!|>'\"#%@`0129.,?\t\\$", max_size=200))
def test_arbitrary_text(text):
    outcome(text)


@FUZZ
@given(yaml_values)
def test_arbitrary_yaml_documents(data):
    outcome(yaml.safe_dump(data))


@FUZZ
@given(
    st.dictionaries(
        st.sampled_from(
            [
                "name",
                "owner",
                "team",
                "model",
                "instructions",
                "context",
                "tools",
                "deliver",
                "triggers",
                "budget",
                "value",
                "inputs",
                "skip_if_unchanged",
                "enabled",
                "extra",
            ]
        ),
        yaml_values,
    )
)
def test_agent_shaped_documents(data):
    outcome(yaml.safe_dump(data))


mutation = st.tuples(
    st.sampled_from(["delete", "duplicate", "replace", "indent", "dedent", "insert"]),
    st.integers(min_value=0, max_value=len(LINES) - 1),
    st.text(alphabet="ab:- {}[]0#'\"\n*&", max_size=12),
)


@FUZZ
@given(st.lists(mutation, min_size=1, max_size=4))
def test_mutated_valid_files(mutations):
    lines = list(LINES)
    for kind, index, text in mutations:
        index %= len(lines) or 1
        if not lines:
            break
        if kind == "delete":
            del lines[index]
        elif kind == "duplicate":
            lines.insert(index, lines[index])
        elif kind == "replace":
            key = lines[index].split(":", 1)[0]
            lines[index] = f"{key}: {text}\n"
        elif kind == "indent":
            lines[index] = "  " + lines[index]
        elif kind == "dedent":
            lines[index] = lines[index].lstrip()
        else:
            lines.insert(index, text + "\n")
    outcome("".join(lines))
