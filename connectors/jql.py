"""Confining a JQL query to granted projects: `project in (...) AND (<query>) ORDER BY ...`.

The query is scanned, not trusted: strings are skipped, parentheses must balance, and a
top-level ORDER BY is moved after the wrapper. A query that would close the wrapper's
parenthesis early (and so escape it with OR) is refused instead of wrapped.
"""

from __future__ import annotations

import re

__all__ = ["JqlError", "confine", "split_order_by"]

_ORDER_BY = re.compile(r"order\s+by\b", re.IGNORECASE)
_PROJECT_KEY = re.compile(r"^[A-Z][A-Z0-9_]*$")
_FIELD = r"(?:[\w.]+|\"[^\"]+\"|cf\[\d+\])"
_ORDER_CLAUSE = re.compile(
    rf"^order\s+by\s+{_FIELD}(?:\s+(?:asc|desc))?(?:\s*,\s*{_FIELD}(?:\s+(?:asc|desc))?)*$",
    re.IGNORECASE,
)


class JqlError(ValueError):
    """A query that cannot be confined safely."""


def split_order_by(jql: str) -> tuple[str, str]:
    """``(condition, order_by)``: the query before its top-level ORDER BY, and that clause."""
    depth, index, quote = 0, 0, ""
    while index < len(jql):
        char = jql[index]
        if quote:
            if char == "\\":
                index += 1
            elif char == quote:
                quote = ""
        elif char in "\"'":
            quote = char
        elif char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
            if depth < 0:
                raise JqlError(f"unbalanced ')' at position {index + 1} of the JQL")
        elif (
            depth == 0 and _ORDER_BY.match(jql, index) and (index == 0 or jql[index - 1].isspace())
        ):
            return jql[:index].strip(), jql[index:].strip()
        index += 1
    if quote:
        raise JqlError("the JQL has a string that is never closed")
    if depth:
        raise JqlError("the JQL has an unclosed '('")
    return jql.strip(), ""


def confine(jql: str, projects: list[str]) -> str:
    """``jql`` limited to ``projects``; raises JqlError for a query that cannot be confined."""
    keys = [p.upper() for p in projects]
    bad = [k for k in keys if not _PROJECT_KEY.match(k)]
    if bad or not keys:
        raise JqlError(f"invalid project keys in the grant: {', '.join(bad) or 'none'}")
    condition, order_by = split_order_by(jql)
    if order_by and not _ORDER_CLAUSE.match(order_by):
        raise JqlError(f"ORDER BY takes only fields and ASC/DESC, got {order_by!r}")
    scope = f"project in ({', '.join(keys)})"
    confined = f"{scope} AND ({condition})" if condition else scope
    return f"{confined} {order_by}".strip()
