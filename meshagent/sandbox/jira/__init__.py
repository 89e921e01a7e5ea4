"""A local Jira REST API (Server/Data Center or Cloud) for tests and demos, on aiohttp.

Faithful in request and response shapes to what the ``jira`` package sends and parses: issues,
comments, users, statuses and projects carry ``self`` links so that they become the same
Resource objects as against a real site. Searches run a small JQL evaluator (fields, operators,
functions, ORDER BY) over the seeded issues; writes (create, comment, transition, assign) change
them and are recorded on :class:`JiraState` for assertions.

Routes live under ``/rest/api/{2,3,latest}/``; version 3 speaks the Atlassian Document Format
for descriptions and comment bodies, as Cloud does. The parts: ``base`` (what all share),
``jql`` (the query language), ``seed``, ``users``, ``workflow``, ``site`` (projects, types,
priorities), ``issues`` (and comments), ``search``, and ``app`` (the state, handlers and routes).
"""

from meshagent.sandbox.jira.app import JIRA_STATE_KEY, JiraState, build_jira_app
from meshagent.sandbox.jira.seed import DEFAULT_JIRA_SEED

__all__ = ["DEFAULT_JIRA_SEED", "JIRA_STATE_KEY", "JiraState", "build_jira_app"]
