"""How to run `meshagent` again from here: the commands the CLI prints must work when pasted.

After the README's quickstart the virtualenv is not activated, so `meshagent` alone is often not
on PATH; the command printed is the one that was typed (`.venv/bin/meshagent`), or one that
reaches the same installation.
"""

from __future__ import annotations

import os
import shlex
import shutil
import socket
import sys
from pathlib import Path

from meshagent.exceptions import ConfigError

__all__ = ["ensure_can_listen", "meshagent_command", "shell_line"]


def _shown(path: Path, cwd: Path) -> str:
    """A path as short as it can be pasted from `cwd`: relative when below it."""
    path = path.absolute()
    if path.is_relative_to(cwd):
        relative = path.relative_to(cwd).as_posix()
        return relative if "/" in relative else f"./{relative}"
    return path.as_posix()


def _same(a: str | Path, b: str | Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def meshagent_command(
    *,
    cwd: Path | None = None,
    argv0: str | None = None,
    executable: str | None = None,
    path: str | None = None,
) -> str:
    """The shell words that run this installation's `meshagent` from `cwd`."""
    cwd = (cwd or Path.cwd()).absolute()
    argv0 = sys.argv[0] if argv0 is None else argv0
    executable = sys.executable if executable is None else executable
    on_path = shutil.which("meshagent", path=path)
    script = Path(argv0) if Path(argv0).is_absolute() else cwd / argv0
    if script.name in ("meshagent", "meshagent.exe") and script.is_file():
        if on_path and _same(on_path, script):
            return "meshagent"
        return shlex.quote(_shown(script, cwd))
    # Run another way (python -m meshagent, a test runner): the script beside this Python.
    beside = Path(executable).parent / "meshagent"
    if beside.is_file():
        if on_path and _same(on_path, beside):
            return "meshagent"
        return shlex.quote(_shown(beside, cwd))
    return f"{shlex.quote(executable)} -m meshagent"


def shell_line(*words: str | Path, command: str | None = None) -> str:
    """`meshagent WORDS...` as one line to paste: the words quoted for a POSIX shell."""
    quoted = [shlex.quote(str(word)) for word in words]
    return " ".join([command or meshagent_command(), *quoted])


def ensure_can_listen(host: str, port: int) -> None:
    """Raise ConfigError, saying why, when nothing can listen on host:port (a busy port, a
    host that is not this machine's), so a server fails before it announces a URL."""
    if port == 0:
        return
    shown = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
            probe.bind(address)
    except OSError as exc:
        reason = (exc.strerror or str(exc)).lower()
        raise ConfigError(
            f"cannot listen on {shown}: {reason}; stop what is using it, or choose another "
            "--port (or --host)"
        ) from None
