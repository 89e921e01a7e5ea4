"""The line of each key in a meshagent.toml text: tomllib keeps none, so the text is scanned."""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from typing import Any

Loc = tuple[str | int, ...]  # a place in the settings: keys, and indexes of lists
Lines = Mapping[Loc, int]

_SIMPLE_KEY = r"""(?:[A-Za-z0-9_-]+|"(?:[^"\\\n]|\\.)*"|'[^'\n]*')"""
_KEY = rf"{_SIMPLE_KEY}(?:[ \t]*\.[ \t]*{_SIMPLE_KEY})*"
_HEADER = re.compile(rf"[ \t]*(\[\[?)[ \t]*({_KEY})[ \t]*\]")
_ASSIGNMENT = re.compile(rf"[ \t]*({_KEY})[ \t]*=")


def _split_key(text: str) -> tuple[str, ...]:
    # tomllib itself unquotes the parts, escapes included.
    node: Any = tomllib.loads(f"{text} = 0")
    parts: list[str] = []
    while isinstance(node, dict):
        (part, node), *_ = node.items()
        parts.append(part)
    return tuple(parts)


class _ValueScan:
    """Where a value that spans lines ends: open multi-line strings and brackets."""

    def __init__(self) -> None:
        self.quote = ""
        self.depth = 0

    @property
    def open(self) -> bool:
        return bool(self.quote) or self.depth > 0

    def feed(self, text: str) -> None:
        i = 0
        while i < len(text):
            if self.quote:
                if self.quote == '"""' and text[i] == "\\":
                    i += 2
                elif text.startswith(self.quote, i):
                    run = len(text[i:]) - len(text[i:].lstrip(self.quote[0]))
                    i += min(run, 5)  # up to two quotes before the closing three are content
                    self.quote = ""
                else:
                    i += 1
                continue
            char = text[i]
            if char == "#":
                return
            if text.startswith(('"""', "'''"), i):
                self.quote = text[i : i + 3]
                i += 3
                continue
            if char == '"':
                match = re.match(r'"(?:[^"\\]|\\.)*"', text[i:])
                i += len(match[0]) if match else len(text)
                continue
            if char == "'":
                end = text.find("'", i + 1)
                i = end + 1 if end >= 0 else len(text)
                continue
            if char in "[{":
                self.depth += 1
            elif char in "]}":
                self.depth -= 1
            i += 1


def key_lines(text: str) -> dict[Loc, int]:
    """The line of every key path defined in a (valid) TOML text, tables included.

    Elements of arrays of tables get their index in the path, as in validation errors.
    """
    lines: dict[Loc, int] = {}
    table: Loc = ()
    arrays: dict[tuple[str, ...], int] = {}  # array of tables -> index of its last element
    value = _ValueScan()
    for number, line in enumerate(text.splitlines(), start=1):
        if value.open:
            value.feed(line)
            continue
        if header := _HEADER.match(line):
            raw = _split_key(header[2])
            if header[1] == "[[":
                arrays[raw] = arrays.get(raw, -1) + 1
            path: list[str | int] = []
            for i, part in enumerate(raw, start=1):
                path.append(part)
                lines.setdefault(tuple(path), number)
                if raw[:i] in arrays:
                    path.append(arrays[raw[:i]])
                    lines.setdefault(tuple(path), number)
            table = tuple(path)
        elif assignment := _ASSIGNMENT.match(line):
            key = _split_key(assignment[1])
            for i in range(1, len(key) + 1):
                lines.setdefault(table + key[:i], number)
            value.feed(line[assignment.end() :])
    return lines


def line_of(loc: Loc, lines: Lines) -> int | None:
    """The line of `loc`, else of the nearest table around it that is in the file."""
    for end in range(len(loc), 0, -1):
        if loc[:end] in lines:
            return lines[loc[:end]]
    return None
