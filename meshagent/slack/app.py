"""SlackApp: the slack_bolt AsyncApp, its two transports, and the background work it starts.

HTTP: one POST endpoint, ``/slack/events``, for commands, interactivity and events alike. Its
body is read up to 1 MiB (413 past it, the rest unread), then its signing headers are checked
(`inbound`: one well-formed timestamp within five minutes, one ``v0`` HMAC-SHA256 over the raw
body with the signing secret) before Bolt parses anything, and a signature already used on any
replica is refused (`arrivals`): each gets 401 and the body is never acted on. Once Slack said
which workspace the bot token is (the first request), the route answers a slash command itself,
through the same checks and the same listener code, without Bolt's dispatch (about a third of
an acknowledgement's CPU); everything else goes through Bolt. Socket Mode: the app-level token,
no public URL.

Listeners only parse, check and acknowledge (``process_before_response``: the acknowledgement
is sent once the listener returned); runs, lookups and ledger writes happen in asyncio tasks
kept in a set, which ``wait_idle`` awaits and ``stop`` cancels. A failing task is logged and
answered, never raised into Bolt. Events are processed once, on whichever replica: by event
id (a nonce in the ledger) and, for Slack's retries (X-Slack-Retry-Num) after a timeout, by
the retry headers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections import Counter, OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Mapping
from datetime import datetime
from typing import Any
from urllib.parse import parse_qsl

import aiohttp
from slack_bolt.async_app import AsyncApp
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_bolt.response import BoltResponse
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.http_retry.builtin_async_handlers import (
    AsyncConnectionErrorRetryHandler,
    AsyncRateLimitErrorRetryHandler,
)
from slack_sdk.web.async_client import AsyncWebClient
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Route

from meshagent.agentfile.spec import AgentSpec
from meshagent.config import Config
from meshagent.exceptions import ConfigError, LedgerError
from meshagent.ledger.nonces import NonceClaims
from meshagent.ledger.nonces import purge as purge_nonces
from meshagent.runtime.runner import Runtime
from meshagent.slack.access import Directory
from meshagent.slack.acks import AcksFirst
from meshagent.slack.arrivals import SIGNED, Arrivals
from meshagent.slack.boltparts import (
    APP_TOKENS,
    REFUSALS,
    AuthorizeOnce,
    SharedSessionMiddleware,
    bolt_logger,
    check_app_token,
    close_socket,
    is_hello,
)
from meshagent.slack.commands import Command, Commands
from meshagent.slack.feedback import VoteOrder, cast_at, reaction_vote, withdraw_vote
from meshagent.slack.inbound import Refused, Signed, TooLarge, read_body, verify
from meshagent.slack.messages import FEEDBACK_DOWN, FEEDBACK_UP, SLACK_MESSAGE, note, voted
from meshagent.slack.redact import REDACT, guarded
from meshagent.slack.respond import Reply, ResponseUrl, ResponseUrls, SharedSession

__all__ = ["EVENTS_PATH", "SlackApp"]

log = logging.getLogger(__name__)

EVENTS_PATH = "/slack/events"
_SLASH = re.compile(r"^/.+$")  # every slash command: the app's own and its agents'
MAX_BODY_BYTES = 1 << 20
_FEEDBACK_ACTION = re.compile(rf"^({FEEDBACK_UP}|{FEEDBACK_DOWN})$")


class SlackApp:
    """MeshAgent's Slack app over a runtime and a live list of agents."""

    def __init__(
        self,
        config: Config,
        runtime: Runtime,
        agents: Callable[[], list[AgentSpec]],
        *,
        env: Mapping[str, str] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """``clock`` (seconds since the epoch) judges request timestamps and nonce expiries."""
        self.config = config
        self.clock = clock
        self.runtime = runtime
        self.agents = agents
        self.env = env if env is not None else runtime.env
        names = config.slack
        token = self.env.get(names.token_env)
        if not token:
            raise ConfigError(f"set {names.token_env} to the Slack bot token (xoxb-...)")
        self._signing_secret = self.env.get(names.signing_secret_env) or ""
        self._app_token = self.env.get(names.app_token_env) or ""
        REDACT.add(token, self._signing_secret, self._app_token)  # never in a log line
        if token.startswith("xapp-"):
            raise ConfigError(
                f"{names.token_env} holds an app-level token (xapp-...): set it to the Bot User "
                "OAuth Token (xoxb-...) from OAuth & Permissions"
            )
        if self._app_token:
            check_app_token(self._app_token, names.app_token_env)
        client = AsyncWebClient(
            token=None,  # given below: Bolt takes a client with a token to mean its own authorize
            base_url=self.env.get(names.api_url_env) or "https://slack.com/api/",
            logger=guarded("meshagent.slack.sdk"),  # its DEBUG lines hold Socket Mode URLs
            retry_handlers=[
                AsyncRateLimitErrorRetryHandler(max_retry_count=2),
                AsyncConnectionErrorRetryHandler(max_retry_count=1),
            ],
        )
        self.stats: Counter[str] = Counter()
        self.nonces = NonceClaims(runtime.ledger)
        self.arrivals = Arrivals(self.nonces, self.stats, clock=clock, purge=self._purge)
        self._authorize = AuthorizeOnce(client)
        logger = bolt_logger()
        self.bolt = AsyncApp(
            # Bolt sets the logger named after the app like its own (level and all) on every
            # request: named "meshagent", the package's logger went quiet below WARNING.
            name=logger.name,
            client=client,
            signing_secret=self._signing_secret,
            authorize=self._authorize,
            process_before_response=True,
            # Checked by the HTTP route before Bolt parses the body (Socket Mode is not signed).
            request_verification_enabled=False,
            before_authorize=self.arrivals,
            logger=logger,
        )
        client.token = token
        self.directory = Directory(client)
        self.commands = Commands(config, runtime, agents, self.directory)
        self.commands.on_result = self._remember
        self.http = SharedSession()
        self.response_urls = ResponseUrls(session=self.http)
        self.votes = VoteOrder()
        self._shown: OrderedDict[str, list[dict[str, Any]]] = OrderedDict()
        self._tasks: set[asyncio.Task[Any]] = set()
        self.acks = AcksFirst()  # background work waits for the acks in flight
        self.commands.settled = lambda: self.acks.settled()
        self._socket: Any = None
        self._listen()

    @property
    def ledger(self) -> Any:
        return self.runtime.ledger

    @property
    def acks(self) -> AcksFirst:
        """The gate background work waits at while requests are being answered."""
        return self._acks

    @acks.setter
    def acks(self, acks: AcksFirst) -> None:
        self._acks = acks
        # The ledger's writes on its group commit's thread (runs, answers) wait at it too.
        self.ledger.yield_writes_to(acks.idle, max_wait=acks.max_wait)

    @property
    def http_enabled(self) -> bool:
        """HTTP mode is configured: the signing secret is set."""
        return bool(self._signing_secret)

    @property
    def socket_mode_enabled(self) -> bool:
        """Socket Mode is configured: the app-level token is set."""
        return bool(self._app_token)

    # -- transports -----------------------------------------------------------------------------

    def routes(self) -> list[BaseRoute]:
        """``POST /slack/events`` for commands, interactivity and events (HTTP mode)."""
        from slack_bolt.adapter.starlette.async_handler import to_starlette_response

        if not self._signing_secret:
            raise ConfigError(
                f"set {self.config.slack.signing_secret_env} to the app's signing secret: "
                "HTTP mode checks every request with it"
            )
        secret = self._signing_secret

        async def events(request: Request) -> Response:
            with self.acks.answering_one():
                try:
                    headers = request.headers
                    body = await read_body(
                        request.stream(),
                        limit=MAX_BODY_BYTES,
                        declared=headers.get("content-length"),
                    )
                    signed = verify(
                        secret,
                        body,
                        timestamps=headers.getlist("x-slack-request-timestamp"),
                        signatures=headers.getlist("x-slack-signature"),
                        now=self.clock(),
                    )
                    text = body.decode()
                except TooLarge:
                    self.stats["bodies_too_large"] += 1
                    return PlainTextResponse(
                        "request too large", status_code=413, headers={"Connection": "close"}
                    )
                except ClientDisconnect:
                    return PlainTextResponse("the request ended early", status_code=400)
                except Refused as refused:
                    self.stats["signatures_refused"] += 1
                    log.debug("refused a Slack request: %s", refused)
                    return JSONResponse({"error": "invalid request"}, status_code=401)
                except UnicodeDecodeError:  # signed, so from Slack: never sent
                    return JSONResponse({"error": "the body is not UTF-8"}, status_code=400)
                if self._authorize.known:
                    answer = await self._slash_command(text, signed)
                    if answer is not None:
                        return to_starlette_response(answer)
                bolt_request = AsyncBoltRequest(
                    body=text,
                    query=request.url.query,
                    headers=dict(headers),
                    context={SIGNED: signed},
                )
                return to_starlette_response(await self.bolt.async_dispatch(bolt_request))

        return [Route(EVENTS_PATH, events, methods=["POST"])]

    def asgi(self) -> Starlette:
        """A Starlette app with just the Slack route; its shutdown stops the background work."""

        @contextlib.asynccontextmanager
        async def lifespan(app: Starlette) -> AsyncIterator[None]:
            try:
                yield
            finally:
                await self.stop()

        return Starlette(routes=self.routes(), lifespan=lifespan)

    async def start_socket_mode(self, timeout: float = 30.0) -> None:
        """Connect over Socket Mode with the app-level token (no public URL needed).

        Returns once Slack said hello on the WebSocket, that is once it delivers envelopes to
        this app. The token is checked first (apps.connections.open), so that a wrong one fails
        here, with Slack's reason, instead of in slack_sdk's endless reconnect loop; no hello
        within ``timeout`` seconds closes the client and raises ConfigError.
        """
        from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler

        env = self.config.slack.app_token_env
        check_app_token(self._app_token, env)
        if self._socket is not None:
            return
        try:
            opened = await self.bolt.client.apps_connections_open(app_token=self._app_token)
        except SlackApiError as exc:
            data = exc.response.data
            code = data.get("error") if isinstance(data, dict) else exc.response.status_code
            reason = f"{code}: {REFUSALS[code]}" if code in REFUSALS else str(code)
            raise ConfigError(
                f"Slack refused the app-level token in {env} ({reason}): set {env} to an "
                f"app-level token (xapp-...) from {APP_TOKENS}"
            ) from None
        except (SlackClientError, aiohttp.ClientError, OSError) as exc:
            reason = type(exc).__name__
            raise ConfigError(f"cannot reach Slack for Socket Mode ({reason})") from None
        socket = AsyncSocketModeHandler(self.bolt, app_token=self._app_token, logger=bolt_logger())
        hello = asyncio.Event()

        async def on_message(message: aiohttp.WSMessage) -> None:
            # Slack sends "hello" once the connection is ready for envelopes; before it, the
            # WebSocket may be open on our side while Slack has not yet registered it.
            if not hello.is_set() and is_hello(message.data):
                hello.set()

        socket.client.on_message_listeners.append(on_message)
        # Each envelope is answered (acknowledged) before the work it starts begins.
        listeners = socket.client.socket_mode_request_listeners
        listeners[:] = [self._counted(listener) for listener in listeners]
        socket.client.wss_uri = opened["url"]
        try:
            async with asyncio.timeout(timeout):
                await socket.connect_async()
                await hello.wait()
        except TimeoutError:
            await close_socket(socket)
            raise ConfigError(
                f"Slack Socket Mode did not open within {timeout:g}s (no hello on the "
                "WebSocket); check the network to wss-primary.slack.com"
            ) from None
        except BaseException:
            await close_socket(socket)
            raise
        self._socket = socket
        log.info("Slack Socket Mode connected")

    async def stop(self, timeout: float = 10.0) -> None:
        """Disconnect Socket Mode, cancel the background work (waiting up to ``timeout``), and
        close the HTTP session."""
        socket, self._socket = self._socket, None
        if socket is not None:
            await close_socket(socket)
        tasks = set(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=timeout)
        self.bolt.client.session = None
        await self.http.close()
        await asyncio.to_thread(self.nonces.close)

    async def wait_idle(self, timeout: float = 30.0) -> None:
        """Wait until no background work is left; TimeoutError after ``timeout`` seconds."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self._tasks:
            left = deadline - loop.time()
            if left <= 0:
                raise TimeoutError(f"{len(self._tasks)} Slack tasks still running after {timeout}s")
            await asyncio.wait(set(self._tasks), timeout=left)

    @property
    def busy(self) -> int:
        """Background tasks in flight."""
        return len(self._tasks)

    # -- background work ----------------------------------------------------------------------

    def _counted(self, listener: Callable[..., Awaitable[None]]) -> Callable[..., Awaitable[None]]:
        """A Socket Mode request listener that counts as answering while it runs."""

        async def answer(client: Any, request: Any) -> None:
            with self.acks.answering_one():
                await listener(client, request)

        return answer

    def _purge(self, now: datetime) -> None:
        """Delete the nonces expired by ``now``, once the acknowledgements in flight are sent
        (in the claims' own file and in the ledger's table, which other claims use)."""

        def purge() -> None:
            self.nonces.purge(now=now)
            if self.nonces.store is not None:
                purge_nonces(self.ledger, now=now)

        self._spawn(asyncio.to_thread(purge), "nonce purge")

    def _spawn(self, work: Coroutine[Any, Any, None], what: str) -> None:
        task = asyncio.get_running_loop().create_task(self._guarded(work, what))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _guarded(self, work: Coroutine[Any, Any, None], what: str) -> None:
        try:
            await self.acks.settled()
        except asyncio.CancelledError:
            work.close()  # stopped before it began
            raise
        try:
            await work
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # never into Bolt: the app keeps serving
            self.stats["failed_tasks"] += 1
            log.warning("Slack %s failed: %s: %s", what, type(exc).__name__, exc)

    # -- listeners --------------------------------------------------------------------------------

    def _listen(self) -> None:
        bolt = self.bolt

        bolt.use(SharedSessionMiddleware(bolt.client, self.http))

        @bolt.command(_SLASH)
        async def on_command(ack: Any, body: dict[str, Any]) -> None:
            answer = await self._command(body)
            await (ack(answer) if answer else ack())

        @bolt.action(_FEEDBACK_ACTION)
        async def on_feedback(ack: Any, body: dict[str, Any]) -> None:
            self._spawn(self._click(body), "feedback")
            await ack()

        from meshagent.slack.approvals import ApprovalClicks

        ApprovalClicks(self).register(bolt)  # Approve / Reject of staged writes

        @bolt.event("reaction_added")
        async def on_reaction_added(event: dict[str, Any]) -> None:
            self._spawn(self._reaction(event, added=True), "reaction")

        @bolt.event("reaction_removed")
        async def on_reaction_removed(event: dict[str, Any]) -> None:
            self._spawn(self._reaction(event, added=False), "reaction")

    async def _command(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """Plan a slash command and start its work; the acknowledgement ({}: an empty one)."""
        cmd = Command.from_body(body)
        self.stats["commands"] += 1
        try:
            plan = await self.commands.plan(cmd)
        except Exception as exc:
            log.warning("could not plan %s: %s: %s", cmd.command, type(exc).__name__, exc)
            return note(":x: MeshAgent could not handle that; see `/meshagent help`.")
        if plan.work is not None:
            url = ResponseUrl(cmd.response_url, session=self.http) if cmd.response_url else None
            reply = Reply(self.bolt.client, url, channel=cmd.channel_id, user=cmd.user_id)
            self._spawn(plan.work(reply), plan.label or cmd.command)
        return plan.ack

    async def _slash_command(self, text: str, signed: Signed) -> BoltResponse | None:
        """A slash command over HTTP, answered as Bolt's listener would answer it, without
        Bolt's dispatch (its request parsing, context, per-request client, middleware chain and
        keyword injection took about a third of an acknowledgement's CPU); None for any other
        request, which Bolt takes.

        The same checks, in the same order: the signature (by the route), Slack's SSL check
        (left to Bolt), the replay check (`Arrivals`), the workspace (asked of Slack once, by
        Bolt's first request: only after it does this path answer). The body is read as
        Bolt reads a form.
        """
        # JSON, or interactivity (a payload= field: in a field's value "=" is %3D): Bolt's
        if text.startswith(("{", "payload=")) or "&payload=" in text:
            return None
        body = dict(parse_qsl(text, keep_blank_values=True))
        if "ssl_check" in body or not _SLASH.match(body.get("command") or ""):
            return None
        refused = await self.arrivals.check(signed, body, {})
        if refused is not None:
            return refused
        self.bolt.client.session = self.http.get()
        answer = await self._command(body)
        return BoltResponse(status=200, body=answer or "")

    def _remember(self, run_id: str, blocks: list[dict[str, Any]]) -> None:
        """Keep the blocks of a result, so that a click on an ephemeral one can redraw it."""
        self._shown[run_id] = blocks
        self._shown.move_to_end(run_id)
        while len(self._shown) > 1_000:
            self._shown.popitem(last=False)

    async def _click(self, body: dict[str, Any]) -> None:
        action = (body.get("actions") or [{}])[0]
        run_id = str(action.get("value") or "")
        user = str((body.get("user") or {}).get("id") or "")
        async with self.votes.turn(run_id, user, cast_at(action.get("action_ts"))) as current:
            if current:
                await self._record_click(body, action, run_id, user)

    async def _record_click(
        self, body: dict[str, Any], action: dict[str, Any], run_id: str, user: str
    ) -> None:
        vote = 1 if action.get("action_id") == FEEDBACK_UP else -1
        url = body.get("response_url")
        budget = self.response_urls.get(url) if url else None
        await self.directory.link(self.ledger, user)
        try:
            await asyncio.to_thread(self.ledger.add_feedback, run_id, user, vote)
        except LedgerError:
            if budget is not None:
                await budget.send(note("That run is not in the ledger, so the vote was not kept."))
            return
        self.stats["feedback"] += 1
        if budget is None:
            return
        blocks = (body.get("message") or {}).get("blocks") or self._shown.get(run_id)
        said = "useful" if vote > 0 else "not useful"
        if blocks:
            redrawn = voted(blocks, run_id, vote)
            self._remember(run_id, redrawn)
            await budget.send(
                {"replace_original": True, "text": f"Marked {said}.", "blocks": redrawn}
            )
        else:
            await budget.send(
                {**note(f"Thanks: you marked run `{run_id}` {said}."), "replace_original": False}
            )

    async def _reaction(self, event: dict[str, Any], *, added: bool) -> None:
        vote = reaction_vote(str(event.get("reaction") or ""))
        item = event.get("item") or {}
        user = str(event.get("user") or "")
        if vote is None or item.get("type") != "message" or not user:
            return
        ref = f"{item.get('channel')}:{item.get('ts')}"
        run_id = await asyncio.to_thread(self.ledger.run_of_outcome, ref, SLACK_MESSAGE)
        if run_id is None:
            return
        async with self.votes.turn(run_id, user, cast_at(event.get("event_ts"))) as current:
            if not current:
                return
            if added:
                await self.directory.link(self.ledger, user)
                await asyncio.to_thread(self.ledger.add_feedback, run_id, user, vote)
            else:
                await asyncio.to_thread(withdraw_vote, self.ledger, run_id, user, vote)
            self.stats["reactions"] += 1
