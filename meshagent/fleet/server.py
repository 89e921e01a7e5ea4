"""`meshagent serve`: one ASGI app with the scheduled fleet, health, metrics, Slack and dashboard.

Routes: ``/healthz`` (the process answers), ``/readyz`` (the scheduler runs and the ledger
answers), ``/metrics`` (Prometheus text), ``/slack/events`` (when Slack is configured) and
``/dashboard`` (the ledger dashboard). The fleet starts in the app's lifespan and stops there:
SIGTERM stops new fires, lets running tasks finish up to the shutdown timeout, then interrupts
them (their entries are closed as interrupted). A start refused for a reason the user can fix
(Slack refused the app-level token) fails with that reason in one line, not a traceback.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import gc
import logging
import os
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import make_url
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, RedirectResponse
from starlette.routing import Mount, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from meshagent.config import Config
from meshagent.dashboard import create_dashboard
from meshagent.exceptions import ConfigError, MeshAgentError
from meshagent.fleet.scheduler import Fleet
from meshagent.runtime.runner import Runtime

__all__ = ["create_app", "metrics_text", "single_replica_lock"]

log = logging.getLogger(__name__)


def single_replica_lock(ledger_url: str) -> Any:
    """With a SQLite ledger, hold a lock beside the file so that a second replica refuses."""
    url = make_url(ledger_url)
    if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
        return None
    path = Path(f"{url.database}.serve.lock")
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = path.open("a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "another process"
        handle.close()
        raise ConfigError(
            f"another meshagent serve ({holder}) already runs the fleet on the SQLite ledger "
            f"{url.database}; SQLite is for a single replica: for several, set ledger_url to a "
            "PostgreSQL database (postgresql+psycopg://user@host/db) in meshagent.toml or "
            "MESHAGENT_LEDGER_URL"
        ) from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"pid {os.getpid()}")
    handle.flush()
    return handle


def metrics_text(fleet: Fleet, slack: Mapping[str, int] | None = None) -> str:
    """The fleet's counters (and the Slack app's, when it runs) in Prometheus text format."""
    stats = fleet.stats
    lines = [
        "# HELP meshagent_runs_total Runs this replica finished, by agent and status.",
        "# TYPE meshagent_runs_total counter",
    ]
    for (agent, status), count in sorted(stats.runs.items()):
        lines.append(f'meshagent_runs_total{{agent="{_label(agent)}",status="{status}"}} {count}')
    lines += [
        "# HELP meshagent_tokens_total Tokens spent by this replica's runs, by agent and kind.",
        "# TYPE meshagent_tokens_total counter",
    ]
    for (agent, kind), count in sorted(stats.tokens.items()):
        lines.append(f'meshagent_tokens_total{{agent="{_label(agent)}",kind="{kind}"}} {count}')
    lines += [
        "# HELP meshagent_cost_usd_total Known cost of this replica's runs in USD, by agent.",
        "# TYPE meshagent_cost_usd_total counter",
    ]
    for agent, cost in sorted(stats.cost.items()):
        lines.append(f'meshagent_cost_usd_total{{agent="{_label(agent)}"}} {cost}')
    lines += [
        "# HELP meshagent_scheduler_lag_seconds How late fires started (last, and sum/count).",
        "# TYPE meshagent_scheduler_lag_seconds gauge",
        f"meshagent_scheduler_lag_seconds {stats.lag_seconds_last:.6f}",
        "# TYPE meshagent_scheduler_lag_seconds_sum counter",
        f"meshagent_scheduler_lag_seconds_sum {stats.lag_seconds_sum:.6f}",
        "# TYPE meshagent_scheduler_lag_seconds_count counter",
        f"meshagent_scheduler_lag_seconds_count {stats.lag_count}",
        "# HELP meshagent_claims_total Scheduled fires this replica claimed (won) or lost.",
        "# TYPE meshagent_claims_total counter",
        f'meshagent_claims_total{{result="won"}} {stats.claims_won}',
        f'meshagent_claims_total{{result="lost"}} {stats.claims_lost}',
        "# HELP meshagent_agents Agents loaded, and agent files that do not load.",
        "# TYPE meshagent_agents gauge",
        f"meshagent_agents {len(fleet.specs)}",
        "# TYPE meshagent_agent_file_errors gauge",
        f"meshagent_agent_file_errors {len(fleet.problems)}",
    ]
    if slack is not None:
        lines += [
            "# HELP meshagent_slack_total What the Slack app handled: commands, feedback,"
            " reactions, duplicate events; requests refused as replayed, as unsigned or badly"
            " signed, as too large, or unchecked (ledger unreachable); failed tasks.",
            "# TYPE meshagent_slack_total counter",
        ]
        for kind in sorted(set(SLACK_COUNTS) | set(slack)):
            lines.append(f'meshagent_slack_total{{kind="{_label(kind)}"}} {slack.get(kind, 0)}')
    return "\n".join(lines) + "\n"


# Always exported when Slack runs, so that a dashboard's query has a series from the start.
#: Objects allocated between two young garbage-collector passes while serve runs (Python: 700).
GC_YOUNG_THRESHOLD = 20_000

SLACK_COUNTS = (
    "commands",
    "feedback",
    "reactions",
    "duplicate_events",
    "replays_refused",
    "signatures_refused",
    "bodies_too_large",
    "replay_checks_failed",
    "failed_tasks",
)


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def create_app(
    config: Config,
    *,
    runtime: Runtime | None = None,
    agents_dir: Path | None = None,
    slack: bool | None = None,
    dashboard: bool = True,
) -> Starlette:
    """The serve app. ``slack=None`` turns the Slack app on when its secrets are set: the bot
    token, and the signing secret (HTTP, ``/slack/events``) or the app-level token (Socket Mode,
    connected at start-up), or both."""
    runtime = runtime or Runtime(config)
    fleet = Fleet(config, runtime, agents_dir=agents_dir)
    routes: list[Any] = [
        Route("/healthz", lambda request: PlainTextResponse("ok\n")),
        Route("/readyz", _readyz),
        Route("/metrics", _metrics),
    ]
    slack_app = None
    env = runtime.env
    if slack is None:
        slack = _slack_wanted(config, env)
    if slack:
        from meshagent.slack import SlackApp

        slack_app = SlackApp(config, runtime, lambda: list(fleet.specs.values()), env=env)
        if slack_app.http_enabled or not slack_app.socket_mode_enabled:
            routes += slack_app.routes()  # without a signing secret: says to set it
    board = create_dashboard(config, ledger=runtime.ledger) if dashboard else None
    if board is not None:
        routes.append(Route("/", lambda request: RedirectResponse("/dashboard/")))
        routes.append(Mount("/dashboard", app=board))

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await fleet.start()
        if board is not None:  # a mounted app's own lifespan does not run
            board.state.pages.start()
        followups = _start_followups(config, runtime)
        from meshagent.approvals.asks import serve_expiries

        expiries = asyncio.ensure_future(serve_expiries(runtime))  # unanswered approvals
        log.info("fleet started: %d agents, replica %s", len(fleet.specs), fleet.replica)
        try:
            if slack_app is not None and slack_app.socket_mode_enabled:
                try:
                    await slack_app.start_socket_mode()
                except MeshAgentError as exc:
                    app.state.startup_error = exc  # the start fails with it (_StartupRefusal)
                    raise
            # What start-up built lives as long as the process: leaving it out of the garbage
            # collector's full passes keeps each pass short (~10 ms instead of ~120 ms, a pause
            # that would otherwise land in the middle of a burst of Slack acknowledgements).
            gc.collect()
            set_aside = not gc.get_freeze_count()  # else another part of the program did
            if set_aside:
                gc.freeze()
            # A request makes and drops thousands of objects; with Python's default (a young
            # pass every 700 new objects) a burst of 200 Slack commands spent ~15 ms in the
            # collector. Passes 30x rarer cost less in all, for a few MB more at most.
            collector = gc.get_threshold()
            gc.set_threshold(GC_YOUNG_THRESHOLD)
            try:
                yield
            finally:
                gc.set_threshold(*collector)
                if set_aside:  # the app may have run inside another program (a test)
                    gc.unfreeze()
        finally:
            if followups is not None:
                followups.cancel()
            expiries.cancel()
            await fleet.stop()
            if slack_app is not None:
                await slack_app.stop()
            if board is not None:
                board.state.pages.close()
            log.info("fleet stopped")

    app = Starlette(routes=routes, lifespan=lifespan, middleware=[Middleware(_StartupRefusal)])
    app.state.fleet = fleet
    app.state.runtime = runtime
    app.state.slack = slack_app
    app.state.dashboard = board
    app.state.startup_error = None
    return app


def _start_followups(config: Config, runtime: Runtime) -> asyncio.Task[None] | None:
    """The follow-up passes (`meshagent.fleet.followup`), unless `[followup] enabled = false`; the
    `[people] aliases` are linked first."""
    if config.people.aliases:  # the [people] aliases, linked once at start-up
        from meshagent.ledger.people import sync_aliases

        sync_aliases(runtime.ledger, config.people.aliases)
    if not config.followup.enabled:
        return None
    from meshagent.fleet.followup import serve_passes

    return asyncio.ensure_future(serve_passes(runtime.ledger, config, runtime.env))


def _slack_wanted(config: Config, env: Mapping[str, str]) -> bool:
    """Whether the Slack app runs: its bot token and a transport's secret are set.

    A transport's secret without the bot token is a mistake, said at start (SlackApp refuses
    it); the bot token alone is for agents that post to Slack, and turns no app on.
    """
    names = config.slack
    transport = env.get(names.signing_secret_env) or env.get(names.app_token_env)
    if transport:
        return True
    if env.get(names.token_env):
        log.info(
            "Slack app off: set %s (Socket Mode) or %s (HTTP) to turn it on",
            names.app_token_env,
            names.signing_secret_env,
        )
    return False


class _StartupRefusal:
    """ASGI middleware: when the lifespan refused to start with a MeshAgentError (kept in
    ``app.state.startup_error``), the server is told that error's one line, not Starlette's
    traceback of it; uvicorn logs it and exits."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "lifespan":
            await self.app(scope, receive, send)
            return

        async def sending(message: Message) -> None:
            refused = scope["app"].state.startup_error
            if message["type"] == "lifespan.startup.failed" and refused is not None:
                message = {**message, "message": str(refused)}
            await send(message)

        await self.app(scope, receive, sending)


async def _readyz(request: Request) -> Any:
    fleet: Fleet = request.app.state.fleet
    problems = []
    if not fleet.started:
        problems.append("the scheduler is not running")
    board = request.app.state.dashboard
    if board is not None and not board.state.pages.ready():
        problems.append("the dashboard's worker processes are starting")
    try:
        fleet.ledger.read(lambda c: c.execute(text("SELECT 1")).scalar(), what="ping")
    except Exception as exc:  # the ledger's own error names the masked URL
        problems.append(str(exc))
    body = {
        "ready": not problems,
        "agents": len(fleet.specs),
        "agent_file_errors": fleet.problems,
        "replica": fleet.replica,
        "problems": problems,
    }
    return JSONResponse(body, status_code=200 if not problems else 503)


async def _metrics(request: Request) -> Any:
    slack = request.app.state.slack
    return PlainTextResponse(
        metrics_text(request.app.state.fleet, slack.stats if slack is not None else None),
        media_type="text/plain; version=0.0.4",
    )
