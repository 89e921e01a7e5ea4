"""The ledger dashboard: cost against value by team and agent, flags, runs, as HTML and JSON.

`create_dashboard(config)` returns an ASGI app (mount it anywhere); `meshagent dashboard` serves
it on a laptop in single-user mode. Everything it needs is served by the app itself.
"""

from __future__ import annotations

from meshagent.dashboard.app import create_dashboard

__all__ = ["create_dashboard"]
