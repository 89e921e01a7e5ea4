"""The Jira sandbox driven by the real ``jira`` client over HTTP, as Server (PAT) and Cloud
(email + API token): search and JQL, paging, issues and comments, writes, errors, auth."""

from __future__ import annotations

import asyncio
import re
import threading
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest
import requests
from aiohttp import web
from jira import JIRA, JIRAError
from jira.resources import Comment, Issue, IssueType, Priority, Project, Status, User

from meshagent.sandbox.jira import DEFAULT_JIRA_SEED, JiraState, build_jira_app

PAT = "sandbox-pat"
EMAIL, API_TOKEN = "bot@example.com", "sandbox-api-token"
TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+0000$")


@contextmanager
def serve(state: JiraState) -> Iterator[str]:
    """The app on a free port of 127.0.0.1, on an event loop in a thread of its own."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    runner: list[web.AppRunner] = []

    async def start() -> int:
        runner.append(web.AppRunner(build_jira_app(state), access_log=None))
        await runner[0].setup()
        await web.TCPSite(runner[0], "127.0.0.1", 0).start()
        return runner[0].addresses[0][1]

    try:
        port = asyncio.run_coroutine_threadsafe(start(), loop).result(5)
        yield f"http://127.0.0.1:{port}"
    finally:
        if runner:
            asyncio.run_coroutine_threadsafe(runner[0].cleanup(), loop).result(5)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        loop.close()


@dataclass
class Site:
    url: str
    state: JiraState
    deployment: str
    clients: list[JIRA] = field(default_factory=list)

    def client(self, **auth: Any) -> JIRA:
        if not auth:
            cloud = self.deployment == "Cloud"
            auth = {"basic_auth": (EMAIL, API_TOKEN)} if cloud else {"token_auth": PAT}
        jira = JIRA(server=self.url, max_retries=0, get_server_info=True, **auth)
        self.clients.append(jira)
        return jira

    def raw(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        """A request with the site's credentials, bypassing the client's conveniences."""
        cloud = self.deployment == "Cloud"
        auth = (
            {"auth": (EMAIL, API_TOKEN)}
            if cloud
            else {"headers": {"Authorization": f"Bearer {PAT}"}}
        )
        with requests.Session() as session:
            return session.request(method, self.url + path, timeout=5, **auth, **kwargs)


@pytest.fixture
def start() -> Iterator[Callable[..., Site]]:
    with ExitStack() as stack:
        sites: list[Site] = []

        def start(deployment: str = "Server", seed: dict[str, Any] | None = None) -> Site:
            state = JiraState(
                DEFAULT_JIRA_SEED if seed is None else seed,
                deployment=deployment,
                token=PAT,
                email=EMAIL,
                api_token=API_TOKEN,
            )
            site = Site(stack.enter_context(serve(state)), state, deployment)
            sites.append(site)
            return site

        yield start
        for site in sites:
            for client in site.clients:
                client.close()


@pytest.fixture(params=["Server", "Cloud"])
def site(request: pytest.FixtureRequest, start: Callable[..., Site]) -> Site:
    return start(request.param)


def keys(issues: list[Issue]) -> list[str]:
    return [issue.key for issue in issues]


def big_seed(count: int) -> dict[str, Any]:
    return {
        "statuses": [{"name": "To Do", "category": "new"}],
        "projects": [{"key": "BIG", "name": "Big", "issue_types": ["Task"]}],
        "issues": [
            {"key": f"BIG-{n}", "summary": f"Item {n}", "created": f"-{n}h"}
            for n in range(1, count + 1)
        ],
    }


# -- server info and auth -----------------------------------------------------------------------


def test_server_info_tells_the_deployment(site: Site) -> None:
    client = site.client()
    info = client.server_info()
    assert client.deploymentType == site.deployment == info["deploymentType"]
    assert info["baseUrl"] == site.url and info["serverTitle"] == "MeshAgent sandbox"
    cloud = site.deployment == "Cloud"
    assert info["versionNumbers"] == ([1001, 0, 0] if cloud else [9, 12, 0])
    assert client.myself()["displayName"] == "MeshAgent"


@pytest.mark.parametrize(
    ("deployment", "auth"),
    [
        ("Server", {"token_auth": "wrong"}),
        ("Server", {"basic_auth": (EMAIL, PAT)}),
        ("Cloud", {"basic_auth": (EMAIL, "wrong")}),
        ("Cloud", {"token_auth": API_TOKEN}),
    ],
)
def test_wrong_credentials_are_401(start: Callable[..., Site], deployment: str, auth: dict) -> None:
    box = start(deployment)
    with pytest.raises(JIRAError) as caught:
        box.client(**auth)
    assert caught.value.status_code == 401
    assert "You are not authenticated" in caught.value.text
    assert box.state.requests == [("GET", "/rest/api/2/serverInfo")]
    with requests.get(f"{box.url}/rest/api/2/issue/PAY-1", timeout=5) as anonymous:
        assert anonymous.status_code == 401 and "WWW-Authenticate" in anonymous.headers
        assert anonymous.json() == {
            "errorMessages": [
                "You are not authenticated. Authentication required to perform this operation."
            ],
            "errors": {},
        }


# -- search and JQL -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("jql", "expected"),
    [
        ("project = PAY AND status = Blocked ORDER BY key ASC", ["PAY-1", "PAY-7"]),
        ("PROJECT = pay and STATUS = 'blocked' order by KEY", ["PAY-1", "PAY-7"]),
        (
            "project = OPS OR labels = checkout ORDER BY key",
            ["OPS-1", "OPS-2", "OPS-3", "OPS-4", "OPS-5", "OPS-6", "PAY-1", "PAY-2", "PAY-7"],
        ),
        (
            "project = PAY AND NOT status = Done AND assignee IS EMPTY ORDER BY key",
            ["PAY-3", "PAY-6"],
        ),
        (
            "assignee in (alice, 'Dave Diaz') AND statusCategory != done ORDER BY key",
            ["OPS-6", "PAY-1", "PAY-5", "PAY-7"],
        ),
        ('summary ~ "checkout" ORDER BY key', ["PAY-1", "PAY-2"]),
        ("text ~ credentials", ["PAY-1"]),
        ('summary !~ "checkout" AND project = PAY AND status = Blocked', ["PAY-7"]),
        (
            "due < now() AND statusCategory != Done ORDER BY due ASC",
            ["OPS-3", "PAY-7", "PAY-3", "PAY-1"],
        ),
        (
            "created >= -7d ORDER BY created DESC",
            ["OPS-6", "OPS-5", "PAY-6", "PAY-3", "OPS-4", "PAY-7"],
        ),
        ("updated < -8d AND resolution = Unresolved", ["OPS-3"]),
        (
            "fixVersion = '2026.12' AND priority >= High ORDER BY priority DESC, key",
            ["PAY-7", "PAY-1"],
        ),
        (
            "key in (PAY-1, OPS-2) OR issuetype = Incident ORDER BY key DESC",
            ["PAY-1", "OPS-6", "OPS-2", "OPS-1"],
        ),
        (
            "labels IS NOT EMPTY AND labels != checkout AND project = PAY ORDER BY key",
            ["PAY-3", "PAY-4", "PAY-5"],
        ),
        (
            "(project = OPS AND priority = Highest) OR (project = PAY AND duedate > 2d)",
            ["OPS-6", "OPS-4", "PAY-5", "PAY-2"],
        ),
        ("project = PAY", ["PAY-6", "PAY-3", "PAY-7", "PAY-5", "PAY-1", "PAY-2", "PAY-4"]),
        ("updated >= startOfDay(-1) ORDER BY key", ["OPS-2", "OPS-5", "OPS-6", "PAY-2", "PAY-5"]),
        ("key > PAY-5 OR key <= OPS-1 ORDER BY key DESC", ["PAY-7", "PAY-6", "OPS-1"]),
    ],
)
def test_jql(start: Callable[..., Site], jql: str, expected: list[str]) -> None:
    client = start("Server").client()
    assert keys(client.search_issues(jql, fields="summary")) == expected


def test_jql_on_cloud_through_the_client(start: Callable[..., Site]) -> None:
    box = start("Cloud")
    found = box.client().search_issues("project = PAY AND status = Blocked ORDER BY key")
    assert keys(found) == ["PAY-1", "PAY-7"]
    assert ("GET", "/rest/api/2/search/jql") in box.state.requests  # startAt 0: redirected


@pytest.mark.parametrize(
    ("jql", "message"),
    [
        (
            "status === Done",
            "Error in the JQL Query: Expecting either a value, list or function but got '='. "
            "(line 1, character 9)",
        ),
        (
            'summary ~ "unclosed',
            "Error in the JQL Query: The quoted string 'unclosed' has not been completed. "
            "(line 1, character 11)",
        ),
        (
            "project = PAY ORDER BY",
            "Error in the JQL Query: Expecting a field name but reached the end of the query. "
            "(line 1, character 23)",
        ),
        (
            "project = PAY status = Done",
            "Error in the JQL Query: Expecting either 'OR' or 'AND' but got 'status'. "
            "(line 1, character 15)",
        ),
        ("foo = bar", "Field 'foo' does not exist or you do not have permission to view it."),
        ("status = Nope", "The value 'Nope' does not exist for the field 'status'."),
        ("status ~ Done", "The operator '~' is not supported by the 'status' field."),
        ("assignee in membersOf(devs)", "Unable to find JQL function 'membersOf()'."),
        ("created > yesterday", None),
    ],
)
def test_invalid_jql_is_400(site: Site, jql: str, message: str | None) -> None:
    client = site.client()
    with pytest.raises(JIRAError) as caught:
        if site.deployment == "Cloud":
            client.enhanced_search_issues(jql)
        else:
            client.search_issues(jql)
    assert caught.value.status_code == 400
    messages = caught.value.response.json()["errorMessages"]
    if message is None:
        assert messages[0].startswith("Date value 'yesterday' for field 'created' is invalid.")
    else:
        assert messages == [message]


def test_server_pages_with_start_at(start: Callable[..., Site]) -> None:
    box = start("Server", big_seed(230))
    client = box.client()
    seen: list[str] = []
    while True:
        page = client.search_issues("project = BIG", startAt=len(seen), maxResults=100)
        assert page.total == 230 and len(page) <= 100
        seen += keys(page)
        if len(seen) >= page.total:
            break
    assert len(seen) == 230 and len(set(seen)) == 230 and seen[:2] == ["BIG-1", "BIG-2"]
    capped = client.search_issues("project = BIG", maxResults=500)
    assert len(capped) == 100 and capped.maxResults == 100
    assert len(client.search_issues("project = BIG", maxResults=False)) == 230  # client paging


def test_cloud_pages_with_next_page_token(start: Callable[..., Site]) -> None:
    box = start("Cloud", big_seed(230))
    client = box.client()
    seen: list[str] = []
    token = None
    for _ in range(10):
        page = client.enhanced_search_issues("project = BIG", nextPageToken=token, maxResults=100)
        seen += keys(page)
        token = page.nextPageToken
        if token is None:
            break
    assert len(seen) == 230 and len(set(seen)) == 230 and seen[:2] == ["BIG-1", "BIG-2"]
    searches = [path for method, path in box.state.requests if path.endswith("/search/jql")]
    assert len(searches) == 3
    assert len(client.enhanced_search_issues("project = BIG", maxResults=0)) == 230
    other = client.enhanced_search_issues("project = BIG", maxResults=10).nextPageToken
    for bad in ("garbage", other):
        with pytest.raises(JIRAError) as caught:
            client.enhanced_search_issues("summary ~ item", nextPageToken=bad, maxResults=10)
        assert caught.value.status_code == 400


def test_each_deployment_has_only_its_own_search(start: Callable[..., Site]) -> None:
    cloud = start("Cloud")
    gone = cloud.raw("GET", "/rest/api/2/search", params={"jql": "project = PAY"})
    assert gone.status_code == 410
    assert "/rest/api/3/search/jql" in gone.json()["errorMessages"][0]
    with pytest.raises(JIRAError, match="deprecated"):
        cloud.client().search_issues("project = PAY", startAt=5)  # refused by the client itself
    ids = cloud.raw("GET", "/rest/api/3/search/jql", params={"jql": "key = PAY-1"}).json()
    assert ids == {"issues": [{"id": "10001"}], "isLast": True}  # no fields asked: ids only
    unbounded = cloud.raw("GET", "/rest/api/3/search/jql", params={"jql": "ORDER BY key"})
    assert unbounded.status_code == 400

    server = start("Server")
    assert server.raw("GET", "/rest/api/2/search/jql", params={"jql": "x = y"}).status_code == 404
    assert server.client().enhanced_search_issues("project = PAY") is None  # cloud-only method
    posted = server.raw(
        "POST", "/rest/api/2/search", json={"jql": "key = PAY-2", "fields": ["summary"]}
    )
    assert [i["fields"] for i in posted.json()["issues"]] == [
        {"summary": "Offer Apple Pay on the mobile web checkout"}
    ]


# -- issues and comments ------------------------------------------------------------------------


def test_issue_and_comments_parse_into_resources(site: Site) -> None:
    client = site.client()
    issue = client.issue("pay-1")
    fields = issue.fields
    assert isinstance(issue, Issue) and issue.key == "PAY-1" and issue.id == "10001"
    assert fields.summary == "Checkout fails for 3-D Secure cards on Safari"
    assert isinstance(fields.status, Status) and fields.status.name == "Blocked"
    assert fields.status.statusCategory.key == "indeterminate"
    assert isinstance(fields.assignee, User) and fields.assignee.displayName == "Alice Adams"
    if site.deployment == "Cloud":
        assert fields.assignee.accountId == "5f000000000000000a11ce01"
        assert "name" not in fields.assignee.raw
    else:
        assert fields.assignee.name == "alice"
    assert isinstance(fields.priority, Priority) and fields.priority.name == "High"
    assert isinstance(fields.issuetype, IssueType) and fields.issuetype.name == "Bug"
    assert isinstance(fields.project, Project) and fields.project.key == "PAY"
    assert fields.labels == ["checkout", "customer-impact"]
    assert [v.name for v in fields.fixVersions] == ["2026.12"]
    assert TIMESTAMP.match(fields.created) and TIMESTAMP.match(fields.updated)
    assert re.match(r"^\d{4}-\d\d-\d\d$", fields.duedate) and fields.resolution is None
    assert [c.author.displayName for c in fields.comment.comments] == ["Bob Brown", "Alice Adams"]

    comments = client.comments("PAY-1")
    assert all(isinstance(c, Comment) for c in comments)
    assert comments[1].body.startswith("Blocked on the PSP") and isinstance(
        comments[1].author, User
    )

    narrow = client.issue("PAY-1", fields="summary,status")
    assert set(narrow.raw["fields"]) == {"summary", "status"}
    done = client.issue("PAY-4")
    assert (
        done.fields.resolution.name == "Done" and done.fields.assignee.displayName == "Carol Chen"
    )

    v3 = site.raw("GET", "/rest/api/3/issue/PAY-1").json()["fields"]["description"]
    assert v3["type"] == "doc" and v3["content"][0]["content"][0]["text"].startswith(
        "The challenge"
    )


def test_unknown_issue_is_404(site: Site) -> None:
    client = site.client()
    for call in (lambda: client.issue("PAY-999"), lambda: client.comments("NOPE-1")):
        with pytest.raises(JIRAError) as caught:
            call()
        assert caught.value.status_code == 404
        assert caught.value.text == "Issue does not exist or you do not have permission to see it."


# -- writes -------------------------------------------------------------------------------------


def test_create_issue_then_find_it(site: Site) -> None:
    client = site.client()
    issue = client.create_issue(
        fields={
            "project": {"key": "PAY"},
            "summary": "Follow up on the 502s",
            "issuetype": {"name": "Bug"},
            "description": "From the incident review",
            "labels": ["incident"],
        }
    )
    assert isinstance(issue, Issue) and issue.key == "PAY-8"
    assert issue.fields.status.name == "To Do" and issue.fields.reporter.displayName == "MeshAgent"
    assert issue.fields.assignee is None and issue.fields.labels == ["incident"]
    by_name = client.create_issue(project="OPS", summary="Page the on-call", issuetype="Incident")
    assert by_name.key == "OPS-7" and site.state.created == ["PAY-8", "OPS-7"]
    found = client.search_issues('summary ~ "502s" AND reporter = currentUser()')
    assert keys(found) == ["PAY-8"]

    bad = [
        ({"project": {"key": "PAY"}, "issuetype": {"name": "Task"}}, "You must specify a summary"),
        (
            {"project": {"key": "NOPE"}, "summary": "x", "issuetype": {"name": "Task"}},
            "valid project",
        ),
        (
            {"project": {"key": "PAY"}, "summary": "x", "issuetype": {"name": "Incident"}},
            "valid issue type",
        ),
    ]
    for fields, message in bad:
        with pytest.raises(JIRAError, match=message) as caught:
            client.create_issue(fields=fields)
        assert caught.value.status_code == 400
    assert site.state.created == ["PAY-8", "OPS-7"]


def test_comment_transition_assign(site: Site) -> None:
    client = site.client()
    before = client.issue("PAY-1").fields.updated
    comment = client.add_comment("PAY-1", "Credentials arrived; unblocking.")
    assert isinstance(comment, Comment) and comment.author.displayName == "MeshAgent"
    assert site.state.comments_added == [("PAY-1", "Credentials arrived; unblocking.")]
    with pytest.raises(JIRAError, match="Comment body can not be empty!"):
        client.add_comment("PAY-1", "  ")

    names = [t["name"] for t in client.transitions("PAY-1")]
    assert names == ["Start Progress", "Done"]
    client.transition_issue("PAY-1", "start progress")
    issue = client.issue("PAY-1")
    assert issue.fields.status.name == "In Progress" and issue.fields.updated >= before
    assert site.state.transitions_done == [("PAY-1", "Start Progress")]
    with pytest.raises(JIRAError) as caught:
        client.transition_issue("PAY-1", "41")  # Reopen: only from Done
    assert caught.value.status_code == 400
    assert caught.value.text == "Transition id '41' is not valid for this issue."
    client.transition_issue("PAY-1", "Done")
    assert client.issue("PAY-1").fields.resolution.name == "Done"

    client.assign_issue("PAY-3", "carol")
    assert client.issue("PAY-3").fields.assignee.displayName == "Carol Chen"
    client.assign_issue("PAY-3", None)
    assert client.issue("PAY-3").fields.assignee is None
    carol = "carol" if site.deployment == "Server" else "5f00000000000000ca401003"
    assert site.state.assignments == [("PAY-3", carol), ("PAY-3", None)]
    ref = {"accountId": "5f-nobody"} if site.deployment == "Cloud" else {"name": "nobody"}
    refused = site.raw("PUT", "/rest/api/2/issue/PAY-3/assignee", json=ref)
    assert refused.status_code == 400
    assert refused.json()["errors"] == {
        "assignee": f"User '{next(iter(ref.values()))}' does not exist."
    }


def test_writes_lists_every_non_get_request(start: Callable[..., Site]) -> None:
    box = start("Server")
    client = box.client()
    client.search_issues("project = OPS")
    client.add_comment("OPS-2", "Halfway there.")
    client.transition_issue("OPS-2", "Done")
    client.assign_issue("OPS-5", "dave")
    with pytest.raises(JIRAError):
        client.create_issue(fields={"project": {"key": "OPS"}, "issuetype": {"name": "Task"}})
    assert box.state.writes() == [
        ("POST", "/rest/api/2/issue/OPS-2/comment"),
        ("POST", "/rest/api/2/issue/OPS-2/transitions"),
        ("PUT", "/rest/api/latest/issue/OPS-5/assignee"),  # the client uses "latest" here
        ("POST", "/rest/api/2/issue"),
    ]
    reads = [r for r in box.state.requests if r not in box.state.writes()]
    assert reads and all(method == "GET" for method, _ in reads)


def test_bad_seeds_are_refused() -> None:
    base = {"projects": [{"key": "PAY", "name": "Payments", "issue_types": ["Task"]}]}
    for issue, message in [
        ({"key": "PAY-1", "status": "Nope"}, "unknown status"),
        ({"key": "XYZ-1"}, "not PROJECT-N of a seeded project"),
        ({"key": "PAY-1", "assignee": "zed"}, "unknown user"),
        ({"key": "PAY-1", "type": "Epic"}, "type 'Epic'"),
        ({"key": "PAY-1", "due": "soon"}, "neither"),
    ]:
        with pytest.raises(ValueError, match=message):
            JiraState(base | {"issues": [issue]})
