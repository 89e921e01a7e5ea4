"""JQL, the language of Jira's search: tokens, the parser, the field table and text matching."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from meshagent.sandbox.jira.base import SERVER_TITLE


class _JqlSyntax(ValueError):
    def __init__(self, message: str, position: int) -> None:
        super().__init__(f"Error in the JQL Query: {message} (line 1, character {position})")


class _JqlInvalid(ValueError):
    """A well-formed query that names an unknown field, value or function."""


@dataclass
class _Tok:
    kind: str  # word, str, op, lp, rp, comma, eof
    text: str
    pos: int


@dataclass
class _Operand:
    kind: str  # word, str, func, empty
    text: str
    pos: int
    args: tuple[str, ...] = ()


@dataclass
class _Clause:
    field: str
    op: str
    values: list[_Operand]
    pos: int


@dataclass
class _Bool:
    op: str
    left: Any
    right: Any


@dataclass
class _Not:
    inner: Any


@dataclass
class _Query:
    where: Any
    order: list[tuple[str, bool, int]] = field(default_factory=list)


_SPECIAL = set("\"'(),=!<>~&|")
_RESERVED = {"and", "or", "not", "in", "is", "order", "by", "was", "changed", "empty", "null"}
_VALID_OPS = (
    "The valid operators are '=', '!=', '<', '>', '<=', '>=', '~', '!~', 'IN', 'NOT IN', 'IS' "
    "and 'IS NOT'."
)


def _tokenize(jql: str) -> list[_Tok]:
    tokens: list[_Tok] = []
    i, n = 0, len(jql)
    while i < n:
        char = jql[i]
        if char.isspace():
            i += 1
            continue
        pos = i + 1
        if char in "\"'":
            j, buf = i + 1, []
            while j < n and jql[j] != char:
                if jql[j] == "\\" and j + 1 < n:
                    nxt = jql[j + 1]
                    buf.append({"n": "\n", "t": "\t", "r": "\r"}.get(nxt, nxt))
                    j += 2
                    continue
                buf.append(jql[j])
                j += 1
            if j >= n:
                raise _JqlSyntax(f"The quoted string '{''.join(buf)}' has not been completed.", pos)
            tokens.append(_Tok("str", "".join(buf), pos))
            i = j + 1
            continue
        if char in "(),":
            tokens.append(_Tok({"(": "lp", ")": "rp", ",": "comma"}[char], char, pos))
            i += 1
            continue
        two = jql[i : i + 2]
        if two in ("!=", "!~", ">=", "<=", "&&", "||"):
            tokens.append(_Tok("op", two, pos))
            i += 2
            continue
        if char in "=~<>!":
            tokens.append(_Tok("op", char, pos))
            i += 1
            continue
        if char in "&|":
            raise _JqlSyntax(f"The character '{char}' is a reserved JQL character.", pos)
        # An unquoted word may escape any character with a backslash, as in Jira's own lexer
        # (\" is a quote inside the word, \) a parenthesis, \u0029 too).
        j, word = i, []
        while j < n and not jql[j].isspace() and jql[j] not in _SPECIAL:
            if jql[j] == "\\" and j + 1 < n:
                escaped, j = _escape(jql, j + 1)
                word.append(escaped)
                continue
            word.append(jql[j])
            j += 1
        tokens.append(_Tok("word", "".join(word), pos))
        i = j
    tokens.append(_Tok("eof", "", n + 1))
    return tokens


def _escape(jql: str, at: int) -> tuple[str, int]:
    """The character escaped at ``jql[at]`` (after a backslash) and the index after it."""
    char = jql[at]
    if char == "u" and re.fullmatch(r"[0-9a-fA-F]{4}", jql[at + 1 : at + 5]):
        return chr(int(jql[at + 1 : at + 5], 16)), at + 5
    return {"n": "\n", "t": "\t", "r": "\r"}.get(char, char), at + 1


class _Parser:
    """Recursive descent: or := and (OR and)*; and := not (AND not)*; not := NOT not | ( or ) |
    clause; then an optional ORDER BY."""

    def __init__(self, jql: str) -> None:
        self.tokens = _tokenize(jql)
        self.i = 0

    @property
    def tok(self) -> _Tok:
        return self.tokens[self.i]

    def take(self) -> _Tok:
        tok = self.tokens[self.i]
        self.i = min(self.i + 1, len(self.tokens) - 1)
        return tok

    def word(self, *words: str) -> bool:
        return self.tok.kind == "word" and self.tok.text.lower() in words

    def fail(self, expecting: str, suffix: str = "") -> None:
        tok = self.tok
        if tok.kind == "eof":
            raise _JqlSyntax(f"{expecting} but reached the end of the query.", tok.pos)
        raise _JqlSyntax(f"{expecting} but got '{tok.text}'.{suffix}", tok.pos)

    def parse(self) -> _Query:
        where = None
        if self.tok.kind != "eof" and not self.word("order"):
            where = self.or_expr()
        order: list[tuple[str, bool, int]] = []
        if self.word("order"):
            self.take()
            if not self.word("by"):
                self.fail("Expecting 'by'")
            self.take()
            order = self.order_list()
        if self.tok.kind != "eof":
            self.fail("Expecting either 'OR' or 'AND'")
        return _Query(where, order)

    def or_expr(self) -> Any:
        return self.joined("or", "||", self.and_expr)

    def and_expr(self) -> Any:
        return self.joined("and", "&&", self.not_expr)

    def joined(self, word: str, symbol: str, part: Callable[[], Any]) -> Any:
        """``part`` (``word``|``symbol`` ``part``)*, joined left to right."""
        node = part()
        while self.word(word) or (self.tok.kind == "op" and self.tok.text == symbol):
            self.take()
            node = _Bool(word, node, part())
        return node

    def not_expr(self) -> Any:
        if self.word("not") or (self.tok.kind == "op" and self.tok.text == "!"):
            self.take()
            return _Not(self.not_expr())
        if self.tok.kind == "lp":
            self.take()
            node = self.or_expr()
            if self.tok.kind != "rp":
                self.fail(
                    "Expecting ')'" if self.tok.kind == "eof" else "Expecting either 'OR' or 'AND'"
                )
            self.take()
            return node
        return self.clause()

    def field_name(self) -> _Tok:
        tok = self.tok
        if tok.kind == "str" or (tok.kind == "word" and tok.text.lower() not in _RESERVED):
            return self.take()
        self.fail("Expecting a field name")
        raise AssertionError("unreachable")

    def clause(self) -> _Clause:
        name = self.field_name()
        op = self.operator()
        if op in ("in", "not in"):
            values = self.value_list()
        elif op in ("is", "is not"):
            if not self.word("empty", "null"):
                self.fail("Expecting 'EMPTY' or 'NULL'")
            tok = self.take()
            values = [_Operand("empty", tok.text, tok.pos)]
        else:
            if self.tok.kind == "lp":
                self.fail(
                    f"The operator '{op}' does not support a list of values. Expecting a value"
                )
            values = [self.operand()]
        return _Clause(name.text, op, values, name.pos)

    def operator(self) -> str:
        tok = self.tok
        if tok.kind == "op" and tok.text in ("=", "!=", ">", ">=", "<", "<=", "~", "!~"):
            self.take()
            return tok.text
        if self.word("in"):
            self.take()
            return "in"
        if self.word("is"):
            self.take()
            if self.word("not"):
                self.take()
                return "is not"
            return "is"
        if self.word("not"):
            self.take()
            if not self.word("in"):
                self.fail("Expecting 'IN'")
            self.take()
            return "not in"
        if self.word("was", "changed"):
            raise _JqlSyntax(
                f"The history operator '{tok.text.upper()}' is not supported by the "
                f"{SERVER_TITLE}.",
                tok.pos,
            )
        self.fail("Expecting operator", f" {_VALID_OPS}")
        raise AssertionError("unreachable")

    def value_list(self) -> list[_Operand]:
        following = self.tokens[min(self.i + 1, len(self.tokens) - 1)]
        if self.tok.kind == "word" and following.kind == "lp":
            return [self.operand()]  # a function giving a list, e.g. membersOf(devs)
        if self.tok.kind != "lp":
            self.fail("Expecting '('")
        self.take()
        values = [self.operand()]
        while self.tok.kind == "comma":
            self.take()
            values.append(self.operand())
        if self.tok.kind != "rp":
            self.fail("Expecting ')'" if self.tok.kind == "eof" else "Expecting ',' or ')'")
        self.take()
        return values

    def operand(self) -> _Operand:
        tok = self.tok
        if tok.kind == "str":
            self.take()
            return _Operand("str", tok.text, tok.pos)
        if tok.kind != "word":
            self.fail("Expecting either a value, list or function")
        lowered = tok.text.lower()
        if lowered in ("empty", "null"):
            self.take()
            return _Operand("empty", tok.text, tok.pos)
        if lowered in _RESERVED:
            self.fail(
                "Expecting either a value, list or function",
                f" You must surround '{tok.text}' in quotation marks to use it as a value.",
            )
        self.take()
        if self.tok.kind != "lp":
            return _Operand("word", tok.text, tok.pos)
        self.take()
        args: list[str] = []
        while self.tok.kind != "rp":
            if self.tok.kind not in ("word", "str"):
                self.fail("Expecting a function argument or ')'")
            args.append(self.take().text)
            if self.tok.kind == "comma":
                self.take()
            elif self.tok.kind != "rp":
                self.fail("Expecting ',' or ')'")
        self.take()
        return _Operand("func", tok.text, tok.pos, tuple(args))

    def order_list(self) -> list[tuple[str, bool, int]]:
        order = []
        while True:
            name = self.field_name()
            desc = False
            if self.word("asc", "desc"):
                desc = self.take().text.lower() == "desc"
            order.append((name.text, desc, name.pos))
            if self.tok.kind != "comma":
                return order
            self.take()


# -- JQL: fields and evaluation ---------------------------------------------------------------


_JQL_FIELDS = {
    "project": "project",
    "key": "key",
    "issuekey": "key",
    "id": "key",
    "issue": "key",
    "status": "status",
    "statuscategory": "statusCategory",
    "assignee": "assignee",
    "reporter": "reporter",
    "priority": "priority",
    "issuetype": "issuetype",
    "type": "issuetype",
    "labels": "labels",
    "fixversion": "fixVersion",
    "created": "created",
    "createddate": "created",
    "updated": "updated",
    "updateddate": "updated",
    "duedate": "duedate",
    "due": "duedate",
    "resolution": "resolution",
    "resolved": "resolved",
    "resolutiondate": "resolved",
    "summary": "summary",
    "description": "description",
    "text": "text",
    "comment": "comment",
}
_KINDS = {
    "project": "named",
    "status": "named",
    "statusCategory": "named",
    "issuetype": "named",
    "resolution": "named",
    "priority": "priority",
    "assignee": "user",
    "reporter": "user",
    "labels": "list",
    "fixVersion": "list",
    "key": "key",
    "created": "date",
    "updated": "date",
    "duedate": "date",
    "resolved": "date",
    "summary": "text",
    "description": "text",
    "text": "text",
    "comment": "text",
}
_EQUALITY = {"=", "!=", "in", "not in"}
_RANGE = {">", ">=", "<", "<="}
_EMPTINESS = {"is", "is not"}
_OPS = {
    "named": _EQUALITY | _EMPTINESS,
    "priority": _EQUALITY | _EMPTINESS | _RANGE,
    "user": _EQUALITY | _EMPTINESS,
    "list": _EQUALITY | _EMPTINESS,
    "key": _EQUALITY | _RANGE,
    "date": _EQUALITY | _EMPTINESS | _RANGE,
    "text": {"~", "!~"} | _EMPTINESS,
}
_UNSORTABLE = {"text", "comment", "description", "labels"}
_DATE_FUNCTIONS = {
    "now",
    "startofday",
    "endofday",
    "startofweek",
    "endofweek",
    "startofmonth",
    "endofmonth",
    "startofyear",
    "endofyear",
}
_KEY = re.compile(r"^([A-Za-z][A-Za-z0-9_]*)-(\d+)$")
_COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
}
_BAD_DATE = (
    "Date value '{value}' for field '{field}' is invalid. Valid formats include: "
    "'yyyy/MM/dd HH:mm', 'yyyy-MM-dd HH:mm', 'yyyy/MM/dd', 'yyyy-MM-dd', or a period format "
    "e.g. '-5d', '4w 2d'."
)


def _stem(word: str) -> str:
    for suffix, replacement in (("ies", "y"), ("ing", ""), ("ed", ""), ("es", ""), ("s", "")):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            if suffix == "es" and not word[:-2].endswith(("s", "x", "z", "ch", "sh")):
                continue
            word = word[: -len(suffix)] + replacement
            break
    return word[:-1] if word.endswith("e") and len(word) > 3 else word


def _text_matcher(query: str, name: str) -> Callable[[str], bool]:
    """Jira-like text search: every term (stemmed, ``*``/``?`` wildcards) or quoted phrase must
    occur; ``-term`` must not."""
    phrases = [" ".join(re.findall(r"\w+", p.lower())) for p in re.findall(r'"([^"]*)"', query)]
    rest = re.sub(r'"[^"]*"', " ", query)
    terms: list[tuple[bool, Callable[[list[str], set[str]], bool]]] = []
    for raw in re.findall(r"[-+]?[\w*?]+", rest):
        if raw in ("AND", "OR", "NOT", "&&", "||"):
            continue
        negate, word = raw.startswith("-"), raw.lstrip("+-").lower()
        if not word.strip("*?"):
            continue
        if "*" in word or "?" in word:
            pattern = re.compile(re.escape(word).replace(r"\*", r"\w*").replace(r"\?", r"\w"))
            terms.append((negate, lambda words, _, p=pattern: any(p.fullmatch(w) for w in words)))
        else:
            stem = _stem(word)
            terms.append((negate, lambda _, stems, s=stem: s in stems))
    phrases = [p for p in phrases if p]
    if not phrases and not terms:
        raise _JqlInvalid(f"The field '{name}' does not support searching for an empty string.")

    def match(text: str) -> bool:
        words = re.findall(r"\w+", text.lower())
        stems = {_stem(w) for w in words}
        padded = f" {' '.join(words)} "
        if any(f" {p} " not in padded for p in phrases):
            return False
        return all(hit(words, stems) != negate for negate, hit in terms)

    return match


# -- the state --------------------------------------------------------------------------------
