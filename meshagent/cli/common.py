"""What the `meshagent` command's modules share: the consoles, the settings of the invocation,
and how an error is shown (a located list for agent files, one line otherwise, never a
traceback)."""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from meshagent.cli.printer import print_error
from meshagent.exceptions import MeshAgentError, SpecError

if TYPE_CHECKING:
    from meshagent.config import Config

__all__ = [
    "LazyConsole",
    "agent_paths",
    "err",
    "exits_on_error",
    "out",
    "collector_paused",
    "command_is_the_process",
    "project_registry",
    "report_issues",
    "resume_collector",
    "settings",
    "shown",
]


class LazyConsole:
    """A Rich console made when first printed to: `meshagent --version` does without Rich."""

    def __init__(self, **options: Any) -> None:
        self._options = options
        self._made: Any = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self.made(), name)

    def made(self) -> Any:
        if self._made is None:
            from rich.console import Console

            self._made = Console(**self._options)
        return self._made

    def __enter__(self) -> Any:  # `with console:` (the demo's progress) is looked up on the type
        return self.made().__enter__()

    def __exit__(self, *exc: object) -> None:
        self.made().__exit__(*exc)


out: Any = LazyConsole()
err: Any = LazyConsole(stderr=True)


def settings(ctx: typer.Context) -> Config:
    """The project settings the top-level callback loaded for this invocation."""
    return ctx.obj["config"]


def report_issues(error: SpecError, files: int) -> None:
    """Every issue of ``error`` by file:line, then how many errors in how many files."""
    for issue in error.issues:
        err.print(str(issue), highlight=False, markup=False, soft_wrap=True)
    bad_files = len({issue.file for issue in error.issues})
    noun = "error" if len(error.issues) == 1 else "errors"
    err.print(
        f"[red]{len(error.issues)} {noun}[/red] in {bad_files} of {files} "
        f"file{'s' if files != 1 else ''}",
        highlight=False,
    )


@contextlib.contextmanager
def exits_on_error(code: int = 2) -> Iterator[None]:
    """A SpecError is listed by file:line and exits 1; another MeshAgentError says what went
    wrong on one line and exits `code`. Neither shows a traceback."""
    try:
        yield
    except SpecError as exc:
        report_issues(exc, 1)
        raise typer.Exit(1) from None
    except MeshAgentError as exc:
        print_error(err, exc)
        raise typer.Exit(code) from None


def shown(path: Path) -> Path:
    """A path as the user would type it: relative to the working directory when below it."""
    here = Path.cwd()
    return path.relative_to(here) if path.is_absolute() and path.is_relative_to(here) else path


def project_registry(config: Config) -> Any:
    """The installed connectors and the MCP tools of the project's mcp.lock.json."""
    from meshagent.mcp.tools import project_registry as registry

    return registry(config)


def agent_paths(config: Config, paths: list[Path] | None) -> list[Path]:
    """The agent files and directories named on the command line, else the agents directory."""
    return list(paths) if paths else [shown(config.agents_dir)]


#: Whether the collector was on when `collector_paused` turned it off, whether
#: `resume_collector` set the objects of the start aside since, and whether the command is the
#: whole process (`command_is_the_process`).
_PAUSED: dict[str, bool] = {}


def command_is_the_process() -> None:
    """The command runs as the `meshagent` script, and the process ends with it: what its start
    set aside for the collector stays aside then, as handing it back would cost a full pass over
    it just before the process exits (0.05 s of `meshagent validate`)."""
    _PAUSED["process"] = True


@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    """The cyclic garbage collector off while a command starts, until `resume_collector`.

    Starting a command creates a few hundred thousand objects that live as long as the process
    (modules, classes, pydantic and SQLAlchemy schemas), and the collector walks all of them again
    at each full pass: about 370 passes and 0.13 s of the 1.1 s of CPU of a `meshagent run`
    (issue 20). On leaving, the collector is as it was and gets back what was set aside (the
    command may have run inside another program, such as a test)."""
    was_on = gc.isenabled()
    gc.disable()
    _PAUSED["was_on"] = was_on
    try:
        yield
    finally:
        if _PAUSED.pop("frozen", False) and not _PAUSED.get("process"):
            gc.unfreeze()
        _PAUSED.pop("was_on", None)
        if was_on:
            gc.enable()


def resume_collector() -> None:
    """The start is over: what exists now lives as long as the process, so the collector sets
    it aside (``gc.freeze``) and is on again for the work that follows, which then pays only for
    its own objects. Nothing to do when the collector was not paused by `collector_paused`."""
    if _PAUSED.get("was_on") and not gc.isenabled():
        # Only when nothing is set aside yet: handing back is all or nothing (``gc.unfreeze``),
        # and what another part of the program set aside stays aside.
        if not gc.get_freeze_count():
            gc.freeze()
            _PAUSED["frozen"] = True
        gc.enable()
