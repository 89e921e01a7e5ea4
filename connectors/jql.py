"""Confining a JQL query to granted projects: `project in (...) AND (<query>) ORDER BY ...`.

The query is tokenized, not trusted, and whatever the tokenizer does not fully understand is
refused rather than wrapped: a backslash outside a string (Jira's lexer escapes the next
character with it, even a quote or a parenthesis, so a naive scanner and Jira would disagree on
where strings and groups end), a character outside the small set JQL's grammar gives a meaning
to (fullwidth parentheses, a no-break space, ';', '#', control characters), an ORDER BY that is
not the last clause of the top level, and functions other than the built-in ones that take no
query of their own. Parentheses must balance, so the query cannot close the wrapper early and
escape it with OR.
"""

from __future__ import annotations

import re

__all__ = ["JqlError", "confine", "split_order_by"]

MAX_LENGTH = 10_000
_PROJECT_KEY = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,49}")
# An unquoted word: field names, values, dates (2026/12/01, -1d), cf[10010], issue keys.
_WORD = re.compile(r"[A-Za-z0-9_.:/@+*\-\[\]]+")
_OPERATOR = re.compile(r"!=|!~|>=|<=|&&|\|\||[=~<>!]")
_SPACE = " \t\r\n"
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x0c\x0e-\x1f\x7f]")
#: Jira's built-in functions: none runs a query of its own (ScriptRunner's issueFunction and
#: the like do, and leak what they match), so only these may be called.
FUNCTIONS = frozenset(
    """
    approved approver cascadeOption closedSprints componentsLeadByUser currentLogin currentUser
    earliestUnreleasedVersion endOfDay endOfMonth endOfWeek endOfYear futureSprints issueHistory
    lastLogin latestReleasedVersion membersOf myApproval myPending now openSprints pending
    pendingBy projectsLeadByUser projectsWhereUserHasPermission projectsWhereUserHasRole
    releasedVersions standardIssueTypes startOfDay startOfMonth startOfWeek startOfYear
    subtaskIssueTypes unreleasedVersions updatedBy votedIssues watchedIssues
    """.lower().split()  # noqa: SIM905
)
_ORDER_FIELD = re.compile(r"[A-Za-z0-9_.]+|cf\[[0-9]+\]")
#: Words a parenthesis may follow without making them a function call.
_KEYWORDS = frozenset(
    ("and", "or", "not", "in", "was", "during", "before", "after", "on", "by", "from")
    + ("to", "changed", "is")
)


class JqlError(ValueError):
    """A query that cannot be confined safely."""


def _tokens(jql: str) -> list[tuple[str, str, int]]:
    """``(kind, text, position)`` for each token: word, string, op, '(', ')', ','."""
    tokens: list[tuple[str, str, int]] = []
    control = _CONTROL.search(jql)
    if control:
        raise JqlError(f"a control character at position {control.start() + 1}")
    index = 0
    while index < len(jql):
        char = jql[index]
        if char in _SPACE:
            index += 1
        elif char in "\"'":
            end = index + 1
            while end < len(jql) and jql[end] != char:
                if ord(jql[end]) < 0x20 or jql[end] == "\x7f":
                    raise JqlError(f"a control character in a string at position {end + 1}")
                end += 2 if jql[end] == "\\" else 1
            if end >= len(jql):
                raise JqlError("the JQL has a string that is never closed")
            tokens.append(("string", jql[index : end + 1], index))
            index = end + 1
        elif char in "(),":
            tokens.append((char, char, index))
            index += 1
        elif match := _OPERATOR.match(jql, index):
            tokens.append(("op", match.group(), index))
            index = match.end()
        elif match := _WORD.match(jql, index):
            tokens.append(("word", match.group(), index))
            index = match.end()
        elif char == "\\":
            raise JqlError(
                f"a backslash outside a string at position {index + 1} (quote the value instead)"
            )
        else:
            raise JqlError(f"the character {char!r} at position {index + 1} is not understood")
    return tokens


def split_order_by(jql: str) -> tuple[str, str]:
    """``(condition, order_by)``: the query before its top-level ORDER BY, and that clause."""
    if len(jql) > MAX_LENGTH:
        raise JqlError(f"the JQL is longer than {MAX_LENGTH} characters")
    tokens = _tokens(jql)
    depth, order_at = 0, None
    for number, (kind, text, position) in enumerate(tokens):
        following = tokens[number + 1] if number + 1 < len(tokens) else None
        if kind == "(":
            depth += 1
        elif kind == ")":
            depth -= 1
            if depth < 0:
                raise JqlError(f"unbalanced ')' at position {position + 1} of the JQL")
        elif kind == "word" and following is not None and following[0] == "(":
            if text.lower() not in FUNCTIONS | _KEYWORDS:
                raise JqlError(f"the function {text}() is not one the confinement knows")
        elif kind == "word" and text.lower() == "issuefunction":
            raise JqlError("issueFunction runs a query of its own")
        elif kind == "word" and text.lower() == "order":
            if following is None or following[1].lower() != "by":
                continue  # a field called order
            if depth or order_at is not None:
                raise JqlError("ORDER BY may only end the query, outside parentheses")
            order_at = number
    if depth:
        raise JqlError("the JQL has an unclosed '('")
    if order_at is None:
        return jql.strip(), ""
    position = tokens[order_at][2]
    _check_order(tokens[order_at + 2 :])
    return jql[:position].strip(), jql[position:].strip()


def _check_order(tokens: list[tuple[str, str, int]]) -> None:
    """ORDER BY takes fields (words or quoted names), each with ASC or DESC, comma-separated."""
    expect_field, after_field = True, False
    for kind, text, _ in tokens:
        if expect_field and (kind == "string" or (kind == "word" and _ORDER_FIELD.fullmatch(text))):
            expect_field, after_field = False, True
        elif not expect_field and kind == "word" and text.lower() in ("asc", "desc"):
            if not after_field:
                break
            after_field = False
        elif not expect_field and kind == ",":
            expect_field = True
        else:
            break
    else:
        if not expect_field:
            return
    shown = " ".join(text for _, text, _ in tokens)
    raise JqlError(f"ORDER BY takes only fields and ASC/DESC, got 'ORDER BY {shown}'")


def confine(jql: str, projects: list[str]) -> str:
    """``jql`` limited to ``projects``; raises JqlError for a query that cannot be confined."""
    bad = [p for p in projects if not _PROJECT_KEY.fullmatch(p)]
    if bad or not projects:
        raise JqlError(f"invalid project keys in the grant: {', '.join(map(repr, bad)) or 'none'}")
    keys = [p.upper() for p in projects]  # checked first: 'payı'.upper() is 'PAYI'
    condition, order_by = split_order_by(jql)
    scope = f"project in ({', '.join(keys)})"
    confined = f"{scope} AND ({condition})" if condition else scope
    return f"{confined} {order_by}".strip()
