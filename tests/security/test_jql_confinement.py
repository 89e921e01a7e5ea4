"""Attack corpus: the JQL confinement refuses what its scanner does not fully understand.

``confine`` wraps a query as ``project in (PAY) AND (<query>)``. Jira's lexer reads some text
differently from a naive scanner (a backslash escapes a quote or a parenthesis even outside a
string), so every query below is refused before any request, with the reason as a GrantDenied.
The first one is a working escape on a scanner that skips backslashes outside strings: the
sandbox, lexing as Jira does, returns OPS issues to an agent granted only PAY.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from connectors.jql import JqlError, confine
from meshagent.exceptions import GrantDenied
from meshagent.sandbox import Sandbox
from tests.connectors.conftest import run_action

PAY = {"projects": ["PAY"]}

ATTACKS = [
    # A backslash outside a string: Jira escapes the quote, a naive scanner opens a string.
    'summary ~ \\"x) OR project = OPS OR (summary ~ "y\\"z"',
    "summary ~ \\'x) OR project = OPS OR (summary ~ 'y\\'z'",
    "key = PAY\\-1",
    "summary ~ fix\\ me",
    "status = Done \\",
    "summary ~ a\\u0029",
    # Characters the scanner has no rule for.
    "status = Done \uff09OR \uff08project = OPS",  # fullwidth parentheses
    "status = Done\u00a0ORDER BY key",  # a no-break space before ORDER BY
    "status = Done\u2028OR project = OPS",  # a line separator
    "summary ~ caf\u00e9",
    "status = Done\x00",
    'summary ~ "a\x00"',
    'summary ~ "\\\x00"',  # a NUL right after a backslash inside a string
    "status = Done\x0b",
    "status = Done; project = OPS",
    "status = {Done}",
    "status = Done ^ x",
    "status = Done # x",
    "status = Done ? x",
    "status = Done $x",
    "status = Done % x",
    # ORDER BY anywhere but at the end of the top level.
    "(status = Done ORDER BY key)",
    "status = Done AND (project = PAY ORDER BY key) OR key = OPS-1",
    # Functions the confinement does not know: some run a query of their own.
    'issueFunction in linkedIssuesOf("project = OPS")',
    'issueFunction in subtasksOf("project = OPS AND summary ~ secret")',
    'key in linkedIssuesOf("project = OPS")',
    "issue in someAddonFunction(OPS-1)",
    # Text Jira reads but that is far past any real query.
    "status = Done AND " * 1000 + "status = Done",
]


@pytest.fixture(scope="module")
def box() -> Iterator[Sandbox]:
    with Sandbox() as sandbox:
        yield sandbox


@pytest.mark.parametrize("jql", ATTACKS)
def test_a_query_the_scanner_does_not_understand_is_refused(box, jql):
    before = len(box.jira.requests)
    with pytest.raises(GrantDenied, match="cannot be confined"):
        run_action(box, "jira.search", {"jql": jql, "limit": 200}, PAY)
    assert len(box.jira.requests) == before, "the query reached Jira"


@pytest.mark.parametrize("jql", ATTACKS)
def test_confine_itself_refuses_it(jql):
    with pytest.raises(JqlError):
        confine(jql, ["PAY"])


@pytest.mark.parametrize("grant", [["PAY\n"], ["pay\u0131"], ["PAY", "OPS\n"]])
def test_a_grant_with_a_key_that_is_not_one_is_refused(grant):
    with pytest.raises(JqlError, match="project key"):
        confine("status = Done", grant)
