"""The fleet: what keeps running in ``meshagent serve``.

- ``scheduler``: every enabled agent's schedule and interval triggers, run by APScheduler.
- ``claims`` and ``jobs``: how replicas claim each fire once in the ledger; job ids and triggers.
- ``followup``: the follow-up pass, each delivered outcome read back from its tool and judged.
- ``server``: one ASGI app with the fleet, health, metrics, the Slack app and the dashboard.
"""
