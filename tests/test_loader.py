"""Agent files: every validation rule, valid and invalid, with its exact location and message."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest

from meshagent.agentfile.loader import (
    MAX_FILE_BYTES,
    load_agent,
    load_agents,
    parse_agent,
    scan_agents,
)
from meshagent.agentfile.spec import AgentSpec, EveryTrigger, ScheduleTrigger, SlashTrigger
from meshagent.exceptions import SpecError

VALID = (Path(__file__).parent / "data" / "valid.yaml").read_text()


def issues(text: str, **options) -> list[str]:
    """The located error lines parse_agent reports for ``text`` (file name x.yaml)."""
    with pytest.raises(SpecError) as caught:
        parse_agent(textwrap.dedent(text), filename="x.yaml", env={}, **options)
    return [str(issue) for issue in caught.value.issues]


def replace(old: str, new: str) -> str:
    assert old in VALID, old
    return VALID.replace(old, new)


def test_valid_file_gives_a_typed_spec():
    spec = parse_agent(VALID, env={})
    assert isinstance(spec, AgentSpec)
    assert spec.name == "status-digest"
    assert [type(t) for t in spec.triggers] == [ScheduleTrigger, EveryTrigger, SlashTrigger]
    assert spec.triggers[2].allow.channels == ["#platform"]
    assert spec.context[0].action == "http.get"
    assert spec.context[0].params == {"url": "https://status.example.com/api/v2/incidents.json"}
    assert str(spec.budget.max_usd_per_day) == "2.0"
    assert spec.value.minutes_saved == 15


def test_version_hash_changes_with_content_only():
    first = parse_agent(VALID, env={})
    again = parse_agent(VALID.replace("team: platform", "team:   platform"), env={})
    changed = parse_agent(replace("minutes_saved: 15", "minutes_saved: 16"), env={})
    assert first.version == again.version
    assert first.version != changed.version


def test_a_copy_with_changes_has_its_own_version():
    spec = parse_agent(VALID, env={})
    before = spec.version  # computed once and kept
    copied = spec.model_copy(update={"instructions": "something else entirely"})
    assert copied.version != before
    fresh = type(spec).model_validate(copied.model_dump())
    assert copied.version == fresh.version
    assert spec.model_copy().version == before == spec.version


def test_minimal_agent_needs_only_the_required_fields():
    spec = parse_agent(
        "name: a\nowner: o\nteam: t\ninstructions: do it\nvalue: {tag: planning}\n", env={}
    )
    assert spec.model is None and spec.triggers == [] and spec.enabled


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        (
            "name: status-digest",
            "name: Status Digest",
            "x.yaml:1:7: name: 'Status Digest' is not a valid agent name: use lowercase "
            "letters, digits and single dashes, starting with a letter (at most 64)",
        ),
        (
            'schedule: "0 9 * * MON-FRI"',
            'schedule: "0 25 * * *"',
            "x.yaml:14:15: triggers[0].schedule: '0 25 * * *' is not a valid cron "
            "expression: hour 25 is out of range 0-23",
        ),
        (
            "timezone: Europe/Berlin",
            "timezone: Europe/Berln",
            "x.yaml:15:15: triggers[0].timezone: 'Europe/Berln' is not a valid IANA timezone; "
            "did you mean 'Europe/Berlin'?",
        ),
        (
            "every: 2h",
            "every: 0s",
            "x.yaml:16:12: triggers[1].every: '0s' is too short: an interval must be at "
            "least 1 second",
        ),
        (
            "slash: status",
            "slash: Status Page",
            "x.yaml:17:12: triggers[2].slash: 'Status Page' is not a valid command name: use "
            "lowercase letters, digits and single dashes, starting with a letter",
        ),
        (
            "  - every: 2h\n",
            "  - every: 2h\n    schedule: '0 * * * *'\n",
            "x.yaml:16:5: triggers[1]: a trigger needs exactly one of the keys schedule, "
            "every or slash",
        ),
        (
            "model: openai:gpt-4.1-mini",
            "model: gpt-4.1-mini",
            "x.yaml:5:8: model: 'gpt-4.1-mini' is not a model string: use 'provider:model' "
            "(e.g. openai:gpt-4.1-mini) or 'offline'",
        ),
        (
            "model: openai:gpt-4.1-mini",
            "model: opneai:gpt-4.1-mini",
            "x.yaml:5:8: model: unknown model provider 'opneai'; did you mean 'openai'? (known: ",
        ),
        (
            "tag: toil-reduction",
            "tag: toil",
            "x.yaml:20:14: value.tag: unknown value tag 'toil'; did you mean 'toil-reduction'? "
            "(valid: toil-reduction, incident-response, customer-support, code-quality, "
            "knowledge-sharing, planning, experiment)",
        ),
        (
            "max_tokens_per_run: 20000",
            "max_tokens_per_run: -5",
            "x.yaml:19:30: budget.max_tokens_per_run: input should be greater than 0, got -5",
        ),
        (
            "max_usd_per_day: 2.0",
            "max_usd_per_day: lots",
            "x.yaml:19:74: budget.max_usd_per_day: input should be a valid decimal, got 'lots'",
        ),
        (
            "minutes_saved: 15",
            "minutes_saved: -1",
            "x.yaml:20:45: value.minutes_saved: input should be greater than or equal to 0, got -1",
        ),
        (
            "skip_if_unchanged: true",
            "skip_if_unchanged: sometimes",
            "x.yaml:12:20: skip_if_unchanged: input should be a valid boolean, unable to interpret "
            "input, got 'sometimes'",
        ),
        (
            "owner: alice@example.com",
            "owner: ' '",
            "x.yaml:3:8: owner: must not be empty",
        ),
    ],
)
def test_field_rules_name_the_place_the_path_and_the_value(old, new, expected):
    (found,) = issues(replace(old, new))
    assert found.startswith(expected), found


def test_unknown_field_points_at_the_key_and_suggests_the_closest():
    (found,) = issues(replace("skip_if_unchanged: true", "skip_if_unchangd: true"))
    assert found.startswith(
        "x.yaml:12:1: skip_if_unchangd: unknown field 'skip_if_unchangd'; did you mean "
        "'skip_if_unchanged'? (valid: name, description, owner, team, model,"
    )


def test_unknown_field_inside_a_trigger_lists_that_triggers_fields():
    (found,) = issues(replace("    timezone: Europe/Berlin", "    timezon: Europe/Berlin"))
    assert found == (
        "x.yaml:15:5: triggers[0].timezon: unknown field 'timezon'; did you mean 'timezone'? "
        "(valid: schedule, timezone, jitter)"
    )


def test_missing_required_field_points_at_the_mapping_that_lacks_it():
    text = VALID.replace("instructions: |\n  Summarise the incidents below in five lines.\n", "")
    assert issues(text) == ["x.yaml:1:1: instructions: required field is missing"]


def test_unknown_action_lists_valid_ones_and_suggests_the_closest():
    (found,) = issues(replace("  - http.get: {url: ", "  - http.gte: {url: "))
    assert found == (
        "x.yaml:9:5: context[0]: unknown read action 'http.gte'; did you mean 'http.get'? "
        "(valid: http.get, jira.issue, jira.search, ledger.report, "
        "slack.history, slack.thread, slack.user)"
    )


def test_deliver_takes_write_actions_only():
    text = VALID + 'deliver:\n  - http.get: {url: "https://x.example.com/"}\n'
    (found,) = issues(text)
    assert found.startswith(
        "x.yaml:22:5: deliver[0]: http.get is a read action; deliver takes write actions"
    )


def test_action_arguments_validate_against_the_action_model():
    missing, unknown = issues(replace('{url: "https://status', '{urll: "https://status'))
    assert unknown.startswith("x.yaml:9:16: context[0].http.get.urll: unknown field 'urll'; did ")
    assert missing == "x.yaml:9:15: context[0].http.get.url: required field is missing"


def test_grant_parameters_validate_against_the_grant_model():
    (found,) = issues(replace('{url_prefixes: ["https://status.example.com/api/"]}', "{}"))
    assert found == "x.yaml:11:15: tools[0].http.get.url_prefixes: required field is missing"


def test_action_entry_must_have_one_key():
    text = replace("  - http.get: {url: ", "  - other: 1\n    http.get: {url: ")
    (found,) = issues(text)
    assert found.startswith("x.yaml:9:5: context[0]: an action is a mapping with one key")


def test_skip_if_unchanged_needs_context():
    text = VALID.replace(
        'context:\n  - http.get: {url: "https://status.example.com/api/v2/incidents.json"}\n', ""
    )
    (found,) = issues(text)
    assert found.startswith("x.yaml:10:20: skip_if_unchanged: needs context actions")


def test_env_reference_refused_outside_secret_fields():
    (found,) = issues(replace("in five lines.", "in ${LINES} lines."))
    assert found == (
        "x.yaml:6:15: instructions: ${LINES}: environment variables are only allowed in "
        "fields that take secrets, such as headers; write $${...} for a literal ${...}"
    )


def test_env_reference_in_a_secret_field_must_be_set():
    text = replace(
        '{url: "https://status.example.com/api/v2/incidents.json"}',
        '{url: "https://status.example.com/api/v2/incidents.json",\n'
        '     headers: {Authorization: "Bearer ${STATUS_TOKEN}"}}',
    )
    (found,) = issues(text)
    assert (
        found == "x.yaml:10:31: context[0].http.get.headers.Authorization: environment "
        "variable STATUS_TOKEN is not set"
    )
    spec = parse_agent(text, env={"STATUS_TOKEN": "s3cret"})
    # The secret is resolved when the action runs, never stored in the spec.
    assert "s3cret" not in spec.model_dump_json()
    assert spec.context[0].params["headers"]["Authorization"] == "Bearer ${STATUS_TOKEN}"


def test_escaped_env_reference_is_literal_text():
    spec = parse_agent(replace("in five lines.", "in $${LINES} lines."), env={})
    assert "$${LINES}" in spec.instructions


def test_input_rules():
    text = (
        VALID
        + "inputs:\n  days: {type: integer, default: two}\n  who: {required: true, default: x}\n"
    )
    assert issues(text) == [
        "x.yaml:22:9: inputs.days: default 'two' is not a integer",
        "x.yaml:23:8: inputs.who: a required input cannot have a default",
    ]


def test_custom_value_taxonomy():
    text = replace("tag: toil-reduction", "tag: compliance")
    assert parse_agent(text, env={}, value_tags=["compliance"]).value.tag == "compliance"
    (found,) = issues(VALID, value_tags=["compliance"])
    assert (
        found == "x.yaml:20:14: value.tag: unknown value tag 'toil-reduction' (valid: compliance)"
    )


def test_several_mistakes_in_one_file_are_all_reported_in_file_order():
    text = replace("name: status-digest", "name: X").replace("every: 2h", "every: 0m")
    found = issues(text.replace("tag: toil-reduction", "tag: nope"))
    assert [line.split(": ")[1] for line in found] == ["name", "triggers[1].every", "value.tag"]


# --- the YAML layer ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", "x.yaml:1:1: the file is empty: an agent file is a mapping of fields"),
        ("- a\n- b\n", "x.yaml:1:1: the document is a list: an agent file is a mapping of fields"),
        ("just text\n", "x.yaml:1:1: the document is a single value: an agent file is a mapping"),
        ("name: a\nname: b\n", "x.yaml:2:1: name: duplicate key 'name' (first at line 1)"),
        (  # located where the bracket opens, not where the file ends
            "name: [a\n",
            "x.yaml:1:7: invalid YAML: while parsing a flow sequence did not find expected ','",
        ),
        (
            'name: a\ndescription: "unclosed\nowner: a\nteam: b\n',
            "x.yaml:2:14: invalid YAML: a quoted string opens here and is never closed (read up "
            "to the end of the file)",
        ),
        (
            "name: a\ndescription: 'unclosed\nowner: a\nteam: b\n",
            "x.yaml:2:14: invalid YAML: a quoted string opens here and is never closed",
        ),
        ("name: a\n---\nname: b\n", "x.yaml:2:1: invalid YAML: a file holds one agent: found a "),
        ("a: !!python/object:os.system x\n", "x.yaml:1:4: invalid YAML: could not determine a "),
        ("a: &x [*x]\n", "x.yaml:1:4: a[0]: an alias refers to its own ancestor; refused"),
    ],
)
def test_yaml_problems_are_refused_with_their_place(text, expected):
    found = issues(text)
    assert found[0].startswith(expected), found


def test_alias_bomb_is_refused():
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    for i in range(1, 9):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]")
    (found,) = issues("\n".join(lines) + "\n")
    assert re.match(r"x\.yaml:\d+:\d+: (a\d+(\[\d+\])*: )?the file expands to more than", found)


def test_oversized_file_is_refused(tmp_path):
    big = tmp_path / "big.yaml"
    big.write_text(VALID + "#" * MAX_FILE_BYTES)
    with pytest.raises(SpecError, match=re.escape(f"agent files are limited to {MAX_FILE_BYTES}")):
        load_agent(big, env={})


def test_file_that_is_not_utf8_is_refused(tmp_path):
    path = tmp_path / "bin.yaml"
    path.write_bytes(b"name: \xff\xfe\n")
    with pytest.raises(SpecError, match=re.escape(f"{path}: not UTF-8 text (byte 6)")):
        load_agent(path, env={})


# --- many files --------------------------------------------------------------------------------


def write(directory: Path, name: str, text: str) -> Path:
    path = directory / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_directory_tree_loads_yaml_and_yml_and_skips_hidden(tmp_path):
    write(tmp_path, "a.yaml", VALID)
    write(
        tmp_path, "team/b.yml", replace("status-digest", "b").replace("slash: status", "slash: b")
    )
    write(tmp_path, ".hidden/c.yaml", "not: valid")
    write(tmp_path, "notes.txt", "ignored")
    names = [spec.name for spec in load_agents(tmp_path, env={})]
    assert names == ["status-digest", "b"]
    assert load_agents(tmp_path, env={})[0].source == tmp_path / "a.yaml"


def test_duplicate_names_and_commands_across_files_name_both_files(tmp_path):
    first = write(tmp_path, "a.yaml", VALID)
    second = write(tmp_path, "b.yaml", VALID)
    with pytest.raises(SpecError) as caught:
        load_agents(tmp_path, env={})
    assert [str(i) for i in caught.value.issues] == [
        f"{second}:1:7: name: duplicate agent name 'status-digest': also defined at {first}:1:7",
        f"{second}:17:12: triggers[2].slash: slash command 'status' is already taken at "
        f"{first}:17:12",
    ]


def test_one_bad_file_does_not_hide_the_good_ones(tmp_path):
    write(tmp_path, "good.yaml", VALID)
    write(tmp_path, "bad.yaml", "name: [")
    result = scan_agents(tmp_path, env={})
    assert [a.name for a in result.agents] == ["status-digest"]
    assert len(result.issues) == 1 and result.issues[0].file.endswith("bad.yaml")


def test_empty_directory_is_an_error(tmp_path):
    with pytest.raises(SpecError, match="no agent files"):
        load_agents(tmp_path, env={})


def test_missing_file_is_an_error(tmp_path):
    with pytest.raises(SpecError, match=re.escape(f"{tmp_path / 'nope.yaml'}: no such file")):
        load_agent(tmp_path / "nope.yaml", env={})
