"""A local Slack Web API: the methods MeshAgent's connector and Slack app use, with Slack's shapes.

Every method answers the way Slack does: HTTP 200 with ``{"ok": false, "error": "..."}`` for
API errors (``not_authed``, ``invalid_auth``, ``channel_not_found``, ``not_in_channel``,
``users_not_found``, ...), cursor paging through ``response_metadata.next_cursor``, and the bot
token checked on every call. ``response_url`` endpoints accept five posts each, as Slack's do.
What was posted is kept in :class:`SlackState` for tests and the demo to read. The parts:
``state`` (the workspace), ``api`` (the Web API methods), ``app`` (routes and Socket Mode).
"""

from meshagent.sandbox.slack.api import _Api as _Api  # tests patch its methods
from meshagent.sandbox.slack.app import build_slack_app
from meshagent.sandbox.slack.state import RESPONSE_URL_SECONDS as RESPONSE_URL_SECONDS
from meshagent.sandbox.slack.state import RESPONSE_URL_USES as RESPONSE_URL_USES
from meshagent.sandbox.slack.state import Ephemeral, Posted, SlackState
from meshagent.sandbox.slack.state import _ApiError as _ApiError

__all__ = ["Ephemeral", "Posted", "SlackState", "build_slack_app"]
