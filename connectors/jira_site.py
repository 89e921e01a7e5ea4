"""The jira connector's site: the credentials from the environment, the jira client (made once per
site and credentials), and every call run in a worker thread, with 429 and 5xx retried (after
Retry-After, or a capped backoff) and failures named plainly from the API's own error messages.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import random
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from meshagent.actions import Action, ActionContext, ActionKind
from meshagent.exceptions import ConnectorError

if TYPE_CHECKING:  # the jira library is imported when a call is made: validate does without it
    from jira import JIRA, JIRAError

__all__ = [
    "RETRIES",
    "RETRY_CAP_SECONDS",
    "RETRY_STATUSES",
    "Site",
    "call",
    "credentials_missing",
    "site_of",
]


RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
RETRIES = 4
RETRY_CAP_SECONDS = 8.0
log = logging.getLogger("connectors.jira")
_clients: dict[tuple[str, str], JIRA] = {}
_lock = threading.Lock()


@dataclass(frozen=True)
class Site:
    """A Jira site and its credentials; the client is made (serverInfo, fields) in a thread."""

    server: str
    key: tuple[str, str]
    auth: dict[str, Any]

    def connect(self) -> JIRA:
        from jira import JIRA

        with _lock:
            if self.key not in _clients:
                # Retries are ours (call): the client's own wait up to a minute and skip 5xx.
                _clients[self.key] = JIRA(
                    server=self.server, timeout=20, max_retries=0, **self.auth
                )
            return _clients[self.key]

    def browse(self, key: str) -> str:
        return f"{self.server.rstrip('/')}/browse/{key}"


def credentials_missing(context: ActionContext, action: Action | None = None) -> str | None:
    """The site and its credentials; a dry run's writes need neither (they make no request)."""
    if action is not None and context.dry_run and action.kind == ActionKind.WRITE:
        return None
    get = context.settings.get
    url_env = get("url_env", "JIRA_URL")
    if not context.env.get(url_env):
        return f"set {url_env} to the Jira base URL"
    pat = context.env.get(get("token_env", "JIRA_TOKEN"))
    email = context.env.get(get("email_env", "JIRA_EMAIL"))
    api_token = context.env.get(get("api_token_env", "JIRA_API_TOKEN"))
    if not pat and not (email and api_token):
        return (
            f"set {get('email_env', 'JIRA_EMAIL')} and {get('api_token_env', 'JIRA_API_TOKEN')} "
            f"(Jira Cloud) or {get('token_env', 'JIRA_TOKEN')} (Server/Data Center)"
        )
    return None


def site_of(context: ActionContext, action: str) -> Site:
    get = context.settings.get
    server = context.env.get(get("url_env", "JIRA_URL")) or ""
    missing = credentials_missing(context)
    if missing is not None:
        raise ConnectorError(action, server, missing)
    pat = context.env.get(get("token_env", "JIRA_TOKEN"))
    email = context.env.get(get("email_env", "JIRA_EMAIL"))
    api_token = context.env.get(get("api_token_env", "JIRA_API_TOKEN"))
    secret = pat or api_token or ""
    digest = hashlib.sha256(f"{email}:{secret}".encode()).hexdigest()
    auth: dict[str, Any] = {"token_auth": pat} if pat else {"basic_auth": (email, api_token)}
    return Site(server, (server, digest), auth)


def _retry_delay(exc: JIRAError, attempt: int) -> float:
    """Retry-After when the server gives one, else capped exponential backoff with jitter."""
    headers = getattr(exc.response, "headers", None) or {}
    try:
        asked = float(headers.get("Retry-After", ""))
    except ValueError:
        asked = None
    if asked is not None:
        return min(asked, RETRY_CAP_SECONDS)
    return min(RETRY_CAP_SECONDS, 0.25 * 2**attempt) * random.uniform(0.5, 1.0)


async def call(action: str, target: str, site: Site, work: Callable[[JIRA], Any]) -> Any:
    """Run a jira client call in a worker thread; retry 429 and 5xx; name failures plainly."""
    from jira import JIRAError
    from requests import RequestException

    for attempt in range(RETRIES + 1):
        try:
            return await asyncio.to_thread(lambda: work(site.connect()))
        except JIRAError as exc:
            if exc.status_code in RETRY_STATUSES and attempt < RETRIES:
                delay = _retry_delay(exc, attempt)
                log.warning(
                    "%s %s: HTTP %s, retry %d/%d in %.2fs",
                    action,
                    target,
                    exc.status_code,
                    attempt + 1,
                    RETRIES,
                    delay,
                )
                await asyncio.sleep(delay)
                continue
            raise ConnectorError(action, target, _describe(exc)) from None
        except (OSError, RequestException) as exc:
            if attempt < RETRIES:
                await asyncio.sleep(min(RETRY_CAP_SECONDS, 0.25 * 2**attempt))
                continue
            raise ConnectorError(
                action, target, f"cannot reach Jira ({type(exc).__name__})"
            ) from None
    raise AssertionError("unreachable")


def _describe(exc: JIRAError) -> str:
    """``HTTP 404: Issue does not exist ...`` from the API's own error messages."""
    detail = ""
    response = exc.response
    try:
        body = response.json() if response is not None else {}
    except ValueError:
        body = {}
    if isinstance(body, dict):
        messages = list(body.get("errorMessages") or [])
        messages += [f"{k}: {v}" for k, v in (body.get("errors") or {}).items()]
        detail = "; ".join(str(m) for m in messages)
    if not detail and exc.text:
        detail = str(exc.text).splitlines()[0]
    status = f"HTTP {exc.status_code}" if exc.status_code else "error"
    return f"{status}: {detail}" if detail else status
