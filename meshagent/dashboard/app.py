"""The dashboard's ASGI app: HTML pages, their JSON API, the OpenAPI document, static files.

Links are built from the request's root path, so the app works at `/` and mounted under any
prefix. The viewer is `local_user` when set (single-user mode on a laptop), else whoever the
auth proxy names in the viewer header, else nobody (team-level folded figures only).
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import AsyncIterator, Callable, Mapping
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import jinja2
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from meshagent.config import Config
from meshagent.dashboard import charts
from meshagent.dashboard.filters import FilterError, Filters
from meshagent.dashboard.openapi import spec
from meshagent.dashboard.views import (
    API_WAIT,
    DEFAULT_SORT,
    PAGE_WAIT,
    SORTS,
    Pages,
    Viewer,
    jsonable,
)
from meshagent.exceptions import LedgerError
from meshagent.ledger.privacy import is_admin
from meshagent.ledger.render import money, per_dollar
from meshagent.ledger.store import Ledger

__all__ = ["create_dashboard"]

HERE = Path(__file__).parent
SECURITY_HEADERS = {
    # Nothing from outside the app: no CDN, no fonts, no scripts at all.
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'none'; "
        "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}
NO_STORE = {"Cache-Control": "no-store"}


class NotVisible(Exception):
    """Nothing there, or nothing the viewer may see (the two look the same from outside)."""


def _number(value: Any, places: int | None = None) -> str:
    if value is None:
        return "–"
    if places is not None:
        return f"{Decimal(value):,.{places}f}"
    if isinstance(value, Decimal) and value == value.to_integral_value():
        value = int(value)
    return f"{value:,}"


def _minutes(value: Any) -> str:
    return "–" if value is None else _number(Decimal(value).quantize(Decimal("0.1")).normalize())


def _when(value: datetime | date | None) -> str:
    if value is None:
        return "–"
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    return value.isoformat()


def _money(value: Any) -> str:
    return money(None if value is None else Decimal(value))


def _per_dollar(value: Any) -> str:
    return per_dollar(None if value is None else Decimal(value))


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=jinja2.select_autoescape(["html"]),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(money=_money, num=_number, minutes=_minutes, when=_when)
    env.filters.update(per_dollar=_per_dollar)
    env.globals.update(
        bar_chart=charts.bar_chart,
        line_chart=charts.line_chart,
        money=_money,
        minutes=_minutes,
        href=_href,
        column=lambda rows, key: [row[key] for row in rows],
        pairs=lambda rows, label, value: [(str(row[label]), row[value]) for row in rows],
        token_pairs=lambda tokens: [
            (kind.removesuffix("_tokens").replace("_", " "), count)
            for kind, count in tokens.items()
        ],
    )
    return env


def _href(url: str, *queries: Mapping[str, Any]) -> str:
    """`url` with the merged query parameters, if any."""
    merged: dict[str, Any] = {}
    for query in queries:
        merged.update(query)
    return f"{url}?{urlencode(merged)}" if merged else url


def create_dashboard(
    config: Config,
    *,
    ledger: Ledger | None = None,
    viewer_header: str | None = None,
    local_user: str | None = None,
    today: Callable[[], date] | None = None,
    fires_per_month: Callable[[date], Mapping[str, float]] | None = None,
) -> Starlette:
    """The dashboard app over `ledger` (default: open `config.ledger_url` and link the
    `[people] aliases` of meshagent.toml in it).

    The viewer is `local_user` when given, else the person named in `viewer_header` (default:
    `[dashboard] viewer_header`, X-Forwarded-User). Admins are `[privacy] admins`.
    `today` and `fires_per_month` (scheduled runs per agent; default: read the agents
    directory) are there for tests and benchmarks.
    """
    owned = ledger is None
    store = ledger if ledger is not None else Ledger.open(config.ledger_url)
    if owned and config.people.aliases:  # as serve and the ledger commands do on opening it
        from meshagent.ledger.people import sync_aliases

        try:
            sync_aliases(store, config.people.aliases)
        except BaseException:
            store.close()
            raise
    pages = Pages(
        config,
        store,
        today=today or (lambda: datetime.now(UTC).date()),
        fires_per_month=fires_per_month,
    )
    env = _environment()
    header = viewer_header or config.dashboard.viewer_header

    def viewer_of(request: Request) -> Viewer:
        if local_user is not None:
            return Viewer(local_user, is_admin(local_user, config.privacy), "local")
        name = request.headers.get(header, "").strip() or None
        return Viewer(name, is_admin(name, config.privacy), "header" if name else "anonymous")

    def link(
        request: Request, route: str, query: Mapping[str, Any] | None = None, /, **path: Any
    ) -> str:
        """The URL of a route under wherever the app is mounted, path parameters quoted."""
        shape = paths[route]
        url = request.scope.get("root_path", "") + shape.format(
            **{
                name: quote(str(value), safe="/" if name == "path" else "")
                for name, value in path.items()
            }
        )
        return f"{url}?{urlencode(query)}" if query else url

    def filters_of(request: Request) -> Filters:
        return Filters.parse(request.query_params, pages.today())

    def render(request: Request, template: str, code: int = 200, /, **context: Any) -> Response:
        viewer = context.get("viewer") or viewer_of(request)
        context.update(
            request=request,
            viewer=viewer,
            link=lambda route, query=None, /, **path: link(request, route, query, **path),
            static=lambda path: link(request, "static", path=path),
            page=template.removesuffix(".html"),
            config=config,
        )
        context.setdefault("filters", None)
        context.setdefault("refresh", None)
        context.setdefault("extra", {})
        body = env.get_template(template).render(context)
        return HTMLResponse(body, code, headers={**SECURITY_HEADERS, **NO_STORE})

    def canonical(
        request: Request, route: str, query: Mapping[str, str], /, **path: Any
    ) -> Response | None:
        """A redirect to the page's canonical URL when the query string is not it."""
        given = sorted(request.query_params.multi_items())
        if given == sorted(query.items()):
            return None
        return RedirectResponse(link(request, route, query, **path), status_code=302)

    def sort_of(request: Request) -> tuple[str, str]:
        sort = request.query_params.get("sort") or DEFAULT_SORT
        order = request.query_params.get("order") or ("asc" if sort == "agent" else "desc")
        if sort not in SORTS:
            raise FilterError(f"sort={sort!r} is not one of {', '.join(SORTS)}")
        if order not in ("asc", "desc"):
            raise FilterError(f"order={order!r} is not asc or desc")
        return sort, order

    def page_of(request: Request) -> int:
        text = request.query_params.get("page") or "1"
        if not text.isdigit() or int(text) < 1 or int(text) > 100_000:
            raise FilterError(f"page={text!r} is not a page number (1, 2, ...)")
        return int(text)

    def rule_of(request: Request) -> str | None:
        rule = request.query_params.get("rule") or None
        if rule is not None and not re.fullmatch(r"[a-z_]{1,40}", rule):
            raise FilterError(f"rule={rule!r} is not a flag rule such as no_outcome or burst")
        return rule

    def flag_query(rule: str | None, number: int) -> dict[str, str]:
        return {**({"rule": rule} if rule else {}), **({"page": str(number)} if number > 1 else {})}

    def sort_query(sort: str, order: str) -> dict[str, str]:
        query = {} if sort == DEFAULT_SORT else {"sort": sort}
        default = "asc" if sort == "agent" else "desc"
        return {**query, **({} if order == default else {"order": order})}

    def agent_data(request: Request, filters: Filters, number: int, wait: float) -> Any:
        name = request.path_params["name"]
        data = pages.agent(viewer_of(request), name, filters, page=number, wait=wait)
        if data is None:
            raise NotVisible(f"no agent {name!r} with runs you may see from {filters.period.label}")
        return data

    def run_data(request: Request) -> Any:
        run_id = request.path_params["run_id"]
        data = pages.run(viewer_of(request), run_id)
        if data is None:
            raise NotVisible(f"no run {run_id!r} that you may see")
        return data

    # -- HTML pages -------------------------------------------------------------------------

    def figures_page(
        request: Request,
        template: str,
        data: Any,
        filters: Filters,
        pending: bool,
        /,
        every: int = 5,
        **context: Any,
    ) -> Response:
        """A page of the ledger's figures, reloaded `every` seconds while some are pending."""
        refresh = every if pending else None
        return render(request, template, data=data, filters=filters, refresh=refresh, **context)

    def overview_page(request: Request) -> Response:
        filters = filters_of(request)
        redirect = canonical(request, "overview", filters.query())
        if redirect is not None:
            return redirect
        data = pages.overview(viewer_of(request), filters, wait=PAGE_WAIT)
        pending = data["trend_status"]["state"] == "pending"
        return figures_page(request, "overview.html", data, filters, pending, title="Overview")

    def agents_page(request: Request) -> Response:
        filters = filters_of(request)
        sort, order = sort_of(request)
        redirect = canonical(request, "agents", {**filters.query(), **sort_query(sort, order)})
        if redirect is not None:
            return redirect
        data = pages.agents(viewer_of(request), filters, sort=sort, order=order, wait=PAGE_WAIT)
        states = (data["flags"]["state"], data["forecast"]["state"], data["value"]["state"])
        pending = "pending" in states
        return figures_page(
            request, "agents.html", data, filters, pending, title="Agents", sort_query=sort_query
        )

    def agent_page(request: Request) -> Response:
        name = request.path_params["name"]
        filters = filters_of(request)
        number = page_of(request)
        query = {**filters.query(), **({"page": str(number)} if number > 1 else {})}
        redirect = canonical(request, "agent", query, name=name)
        if redirect is not None:
            return redirect
        data = agent_data(request, filters, number, PAGE_WAIT)
        pending = data["flags_status"]["state"] == "pending"
        return figures_page(request, "agent.html", data, filters, pending, title=name)

    def run_page(request: Request) -> Response:
        title = f"Run {request.path_params['run_id'][:8]}"
        return render(request, "run.html", data=run_data(request), title=title)

    def flags_page(request: Request) -> Response:
        filters, rule, number = filters_of(request), rule_of(request), page_of(request)
        redirect = canonical(request, "flags", {**filters.query(), **flag_query(rule, number)})
        if redirect is not None:
            return redirect
        data = pages.flags(viewer_of(request), filters, rule=rule, page=number, wait=PAGE_WAIT)
        pending = data["status"]["state"] == "pending"
        return figures_page(
            request,
            "flags.html",
            data,
            filters,
            pending,
            every=3,
            title="Flags",
            flag_query=flag_query,
            extra=flag_query(rule, 1),
        )

    # -- JSON API ---------------------------------------------------------------------------

    def answer(data: Any, status: int = 200) -> JSONResponse:
        return JSONResponse(jsonable(data), status, headers=NO_STORE)

    def api_viewer(request: Request) -> Response:
        return answer(viewer_of(request).as_json())

    def api_overview(request: Request) -> Response:
        return answer(pages.overview(viewer_of(request), filters_of(request), wait=API_WAIT))

    def api_agents(request: Request) -> Response:
        sort, order = sort_of(request)
        viewer, filters = viewer_of(request), filters_of(request)
        return answer(pages.agents(viewer, filters, sort=sort, order=order, wait=API_WAIT))

    def api_agent(request: Request) -> Response:
        return answer(agent_data(request, filters_of(request), page_of(request), API_WAIT))

    def api_run(request: Request) -> Response:
        return answer(run_data(request))

    def api_flags(request: Request) -> Response:
        viewer, filters, rule = viewer_of(request), filters_of(request), rule_of(request)
        data = pages.flags(viewer, filters, rule=rule, page=page_of(request), wait=API_WAIT)
        return answer(data)

    def openapi(request: Request) -> Response:
        return JSONResponse(spec(request.scope.get("root_path", "")))

    # -- errors -----------------------------------------------------------------------------

    def is_api(request: Request) -> bool:
        path = request.url.path[len(request.scope.get("root_path", "")) :]
        return path.startswith("/api/")

    def error(request: Request, status: int, message: str) -> Response:
        if is_api(request):
            return answer({"error": message}, status)
        return render(request, "error.html", status, message=message, status=status, title="Error")

    async def bad_filter(request: Request, exc: Exception) -> Response:
        return error(request, 400, str(exc))

    async def not_visible(request: Request, exc: Exception) -> Response:
        return error(request, 404, str(exc))

    async def ledger_down(request: Request, exc: Exception) -> Response:
        return error(request, 503, f"the ledger cannot be read right now: {exc}")

    async def no_page(request: Request, exc: Exception) -> Response:
        return error(request, 404, "no such page")

    routes = [
        Route("/", overview_page, name="overview"),
        Route("/agents", agents_page, name="agents"),
        Route("/agents/{name}", agent_page, name="agent"),
        Route("/runs/{run_id}", run_page, name="run"),
        Route("/flags", flags_page, name="flags"),
        Route("/api/viewer", api_viewer, name="api_viewer"),
        Route("/api/overview", api_overview, name="api_overview"),
        Route("/api/agents", api_agents, name="api_agents"),
        Route("/api/agents/{name}", api_agent, name="api_agent"),
        Route("/api/runs/{run_id}", api_run, name="api_run"),
        Route("/api/flags", api_flags, name="api_flags"),
        Route("/openapi.json", openapi, name="openapi"),
        Mount("/static", app=StaticFiles(directory=HERE / "static"), name="static"),
    ]

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        pages.start()
        try:
            yield
        finally:
            pages.close()
            if owned:
                store.close()

    paths = {route.name: route.path for route in routes if isinstance(route, Route)}
    paths["static"] = "/static/{path}"
    app = Starlette(
        routes=routes,
        exception_handlers={
            FilterError: bad_filter,
            NotVisible: not_visible,
            LedgerError: ledger_down,
            404: no_page,
        },
        lifespan=lifespan,
    )
    app.state.pages = pages
    return app
