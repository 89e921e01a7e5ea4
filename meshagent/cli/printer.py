"""The CLI's printer: messages are text, never Rich markup, and commands are never wrapped.

A message may hold brackets of its own (`pip install 'meshagent[anthropic]'`, `[privacy]
admins`, a path); Rich would read them as markup and drop them. Only the label is styled.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # Rich is imported when something is printed: --version does without it
    from rich.console import Console

__all__ = ["print_command", "print_error", "print_note", "print_text"]


def print_error(console: Console, message: object, *, label: str = "error") -> None:
    """`error: MESSAGE` on one logical line (the terminal may wrap it, Rich does not)."""
    from rich.text import Text

    console.print(
        Text.assemble((f"{label}:", "red"), " ", str(message)), soft_wrap=True, highlight=False
    )


def print_note(console: Console, label: str, message: object, *, style: str = "yellow") -> None:
    """`LABEL MESSAGE` with only the label styled (`skipped ...`, `warning ...`)."""
    from rich.text import Text

    console.print(Text.assemble((label, style), " ", str(message)), soft_wrap=True, highlight=False)


def print_text(console: Console, message: object, *, style: str = "") -> None:
    """Plain text, wrapped by Rich at the terminal's width but never read as markup."""
    from rich.text import Text

    console.print(Text(str(message), style=style), highlight=False)


def print_command(console: Console, line: str, *, indent: str = "  ") -> None:
    """A command to paste: one line whatever the terminal's width, exactly as given."""
    from rich.text import Text

    console.print(Text(indent + line), soft_wrap=True, highlight=False, crop=False)
