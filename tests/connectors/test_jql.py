"""JQL confinement: a granted search cannot reach other projects, whatever the query says."""

from __future__ import annotations

import re

import pytest

from connectors.jql import JqlError, confine, split_order_by


@pytest.mark.parametrize(
    ("query", "confined"),
    [
        ("status = Open", "project in (PAY) AND (status = Open)"),
        (
            "status = Open ORDER BY updated DESC",
            "project in (PAY) AND (status = Open) ORDER BY updated DESC",
        ),
        ("order by key", "project in (PAY) order by key"),
        ("a = 1 OR project = SECRET", "project in (PAY) AND (a = 1 OR project = SECRET)"),
        ('summary ~ "a) OR (b"', 'project in (PAY) AND (summary ~ "a) OR (b")'),
        ('summary ~ "ORDER BY x"', 'project in (PAY) AND (summary ~ "ORDER BY x")'),
        ("(a OR b) AND c", "project in (PAY) AND ((a OR b) AND c)"),
        ("border = 1", "project in (PAY) AND (border = 1)"),
    ],
)
def test_queries_are_wrapped(query, confined):
    assert confine(query, ["pay"]) == confined


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("a = 1) OR (project = SECRET", "unbalanced ')' at position 6 of the JQL"),
        ("a = 1) OR project = SECRET ORDER BY key", "unbalanced ')'"),
        ("(a = 1", "the JQL has an unclosed '('"),
        ('summary ~ "open', "the JQL has a string that is never closed"),
        ("a = 1 ORDER BY key OR project = SECRET", "ORDER BY takes only fields and ASC/DESC"),
        ("a = 1 ORDER BY key) OR (project = SECRET", "unbalanced ')'"),
    ],
)
def test_escapes_are_refused(query, message):
    with pytest.raises(JqlError, match=re.escape(message)):
        confine(query, ["PAY"])


def test_grant_keys_are_checked():
    with pytest.raises(JqlError, match=re.escape("invalid project keys in the grant: 'PAY)'")):
        confine("a = 1", ["PAY)"])


def test_order_by_split_respects_strings_and_parentheses():
    assert split_order_by('x = "order by" ORDER BY key') == ('x = "order by"', "ORDER BY key")
    with pytest.raises(JqlError, match="ORDER BY may only end the query"):
        split_order_by("(a order by b)")
