"""`meshagent dashboard`: serve the dashboard on this machine, in single-user mode."""

from __future__ import annotations

from meshagent.config import Config

__all__ = ["serve_dashboard"]


def serve_dashboard(config: Config, *, host: str, port: int, user: str | None) -> None:
    """Run the dashboard with uvicorn until interrupted; every request is viewed as `user`."""
    import uvicorn

    from meshagent.dashboard import create_dashboard

    app = create_dashboard(config, local_user=user)
    shown = f"[{host}]" if ":" in host else host
    print(f"MeshAgent ledger dashboard: http://{shown}:{port}/", flush=True)
    who = user or "nobody (anonymous: team figures only)"
    print(f"viewing as {who}; press Ctrl+C to stop", flush=True)
    uvicorn.run(app, host=host, port=port, log_level="warning")
