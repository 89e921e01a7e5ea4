"""`meshagent run NAME` reads only the agent files that can define NAME or take its slash
commands first (issue 20), and finds what reading every file finds: the same agent, the same
errors. The reference is the rule itself, applied to a scan of every file."""

from __future__ import annotations

import gc
from pathlib import Path

import pytest

from meshagent.agentfile.loader import files_for_agent, scan_agents
from meshagent.cli.agents import find_agent
from meshagent.cli.common import collector_paused, resume_collector
from meshagent.config import load_config
from meshagent.exceptions import ConfigError, SpecError


def agent(name: str, *, slash: str | None = None, team: str = "payments") -> str:
    trigger = f"triggers:\n  - slash: {slash}\n" if slash else ""
    return (
        f"name: {name}\nowner: alice@example.com\nteam: {team}\nmodel: offline\n"
        f"instructions: Say hello.\n{trigger}value: {{tag: toil-reduction, minutes_saved: 1}}\n"
    )


def by_every_file(directory: Path, name: str) -> tuple[str, object]:
    """What a scan of every file says about ``name``: its team, or the error it raises."""
    result = scan_agents([directory])
    for spec in result.agents:
        if spec.name == name:
            return "agent", (spec.team, spec.source)
    for issue in result.issues:
        if Path(issue.file).stem == name:
            return "error", sorted(str(i) for i in result.issues if i.file == issue.file)
    return "missing", sorted(spec.name for spec in result.agents)


def found(directory: Path, name: str) -> tuple[str, object]:
    config = load_config(None).model_copy(update={"agents_dir": directory})
    try:
        spec = find_agent(config, name)
    except SpecError as exc:
        return "error", sorted(str(i) for i in exc.issues)
    except ConfigError as exc:
        assert f"no agent named {name!r}" in str(exc)
        return "missing", sorted(str(exc).rpartition("(agents: ")[2].rstrip(")").split(", "))
    return "agent", (spec.team, spec.source)


LAYOUTS = {
    "alone among others": {
        "a-first.yaml": agent("other"),
        "digest.yaml": agent("digest"),
        "z-last.yaml": agent("last", slash="last"),
    },
    "twice: the first file wins": {
        "a.yaml": agent("digest", team="first"),
        "b.yaml": agent("digest", team="second"),
    },
    "its command taken by an earlier file": {
        "a.yaml": agent("early", slash="standup"),
        "digest.yaml": agent("digest", slash="standup"),
    },
    "its command taken by an earlier file that does not load": {
        "a.yaml": agent("early", slash="standup") + "unknown_key: 1\n",
        "b.yaml": agent("digest", slash="standup"),
    },
    "its command only mentioned by an earlier file": {
        "a.yaml": agent("early", slash="standup-page"),
        "digest.yaml": agent("digest", slash="standup"),
    },
    "its command taken again by a later file": {
        "digest.yaml": agent("digest", slash="standup"),
        "later.yaml": agent("later", slash="standup"),
    },
    "its file is broken": {
        "digest.yaml": agent("digest") + "unknown_key: 1\n",
        "other.yaml": agent("other"),
    },
    "named behind a YAML escape": {
        "a.yaml": agent('"\\x64igest"', team="escaped"),
        "b.yaml": agent("digest", team="plain"),
    },
    "not there": {"a.yaml": agent("alpha"), "b.yaml": agent("beta")},
}


@pytest.mark.parametrize("layout", LAYOUTS, ids=list(LAYOUTS))
def test_finds_what_reading_every_file_finds(tmp_path, layout):
    for filename, text in LAYOUTS[layout].items():
        (tmp_path / filename).write_text(text)
    assert found(tmp_path, "digest") == by_every_file(tmp_path, "digest")


def test_reads_only_the_files_that_can_define_the_agent_or_take_its_commands(tmp_path):
    (tmp_path / "digest.yaml").write_text(agent("digest", slash="standup"))
    (tmp_path / "other.yaml").write_text(agent("other", slash="other"))
    (tmp_path / "page.yaml").write_text(agent("page", slash="standup-page"))
    names = [path.name for path in files_for_agent([tmp_path], "digest")]
    assert names == ["digest.yaml"]
    names = [path.name for path in files_for_agent([tmp_path], "digest", ["standup"])]
    assert names == ["digest.yaml", "page.yaml"]


def test_a_quick_command_leaves_the_collector_as_it_found_it():
    gc.unfreeze()  # whatever an earlier test in this process set aside
    assert gc.isenabled()
    with collector_paused():
        assert not gc.isenabled()
        kept = [object() for _ in range(10)]
        resume_collector()  # the start is over: the collector is on for the work
        assert gc.isenabled()
        assert gc.get_freeze_count() > 0
    assert gc.isenabled()
    assert gc.get_freeze_count() == 0  # what was set aside is collectable again
    assert kept


def test_a_command_leaves_aside_what_the_program_around_it_set_aside():
    gc.freeze()  # the program that runs the command (a server, a test) set its objects aside
    frozen = gc.get_freeze_count()
    try:
        with collector_paused():
            resume_collector()
            assert gc.isenabled()
        assert gc.get_freeze_count() == frozen  # still aside: not handed back by the command
    finally:
        gc.unfreeze()
