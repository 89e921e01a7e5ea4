"""`meshagent approvals`: the staged writes you may decide, decided without Slack.

You are the current person (`[people] me`, else git's user.email, else $USER), matched against
each request's approvers through the ledger's people table, as in Slack. A decision here is the
same as a click: bound to the stored payload's hash and the expiry, taken by one conditional
UPDATE, and, when Slack is set up, shown in the messages that asked.
"""

from __future__ import annotations

import asyncio
import json
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from meshagent.approvals.staged import Decision, decide, describe, identities, is_listed
from meshagent.cli.people import Person, current_person
from meshagent.cli.printer import print_error, print_text
from meshagent.config import Config
from meshagent.exceptions import MeshAgentError
from meshagent.ledger import approvals as store
from meshagent.ledger.approvals import Approval
from meshagent.ledger.people import directory

__all__ = ["app"]

app = typer.Typer(
    help="Writes staged for approval: list them, show one, approve or reject it.",
    no_args_is_help=True,
)
out = Console()
err = Console(stderr=True)

#: Exit status of each refusal, so a script can tell them apart.
_EXIT = {"not_found": 3, "not_approver": 4, "expired": 5, "decided": 6, "changed": 7, "failed": 1}


class _Session:
    """The runtime (ledger, connectors, clock), the person, and the agents, for one command."""

    def __init__(self, ctx: typer.Context) -> None:
        from meshagent.runtime.runner import Runtime

        self.config: Config = ctx.obj["config"]
        person = current_person(self.config)
        if person is None:
            print_error(err, "who are you? set [people] me in meshagent.toml, or git's user.email")
            raise typer.Exit(2)
        self.person: Person = person
        try:
            self.runtime = Runtime(self.config)
        except MeshAgentError as exc:
            print_error(err, exc)
            raise typer.Exit(2) from None
        self.people = directory(self.runtime.ledger, aliases=self.config.people.aliases)

    def may_decide(self, approval: Approval) -> bool:
        return is_listed(approval, identities([self.person.name]), self.people)

    def find_spec(self, name: str) -> Any:
        from meshagent.agentfile.loader import scan_agents

        found = scan_agents(
            [self.config.agents_dir],
            value_tags=self.config.value_tags,
            min_interval_seconds=self.config.serve.min_interval_seconds,
        )
        return next((spec for spec in found.agents if spec.name == name), None)

    def close(self) -> None:
        self.runtime.ledger.close()


def _expire(session: _Session) -> None:
    from meshagent.approvals.asks import expire_pass

    asyncio.run(expire_pass(session.runtime))


def _row(approval: Approval) -> dict[str, Any]:
    return {
        "id": approval.id,
        "agent": approval.agent,
        "action": approval.action,
        "payload": approval.payload,
        "status": approval.status,
        "run_id": approval.run_id,
        "approvers": list(approval.approvers),
        "expires_at": approval.expires_at.isoformat(),
        "decided_by": approval.decided_by,
        "reason": approval.reason,
    }


@app.command("list")
def list_requests(
    ctx: typer.Context,
    format_: Annotated[
        str, typer.Option("--format", help="table or json.", metavar="table|json")
    ] = "table",
    all_: Annotated[
        bool, typer.Option("--all", help="Decided and expired requests too, not only pending.")
    ] = False,
) -> None:
    """The requests you may decide (pending ones unless --all), newest first."""
    if format_ not in ("table", "json"):
        print_error(err, f"--format is table or json, not {format_!r}")
        raise typer.Exit(2)
    session = _Session(ctx)
    try:
        _expire(session)
        found = store.listing(session.runtime.ledger, statuses=None if all_ else ["pending"])
        mine = [a for a in found if session.may_decide(a)]
    finally:
        session.close()
    if format_ == "json":
        out.print_json(json.dumps([_row(a) for a in mine], default=str))
        return
    if not mine:
        waiting = "" if all_ else " waiting"
        print_text(out, f"no approval requests{waiting} for {session.person.name} to decide.")
        return
    table = Table(title=f"approval requests {session.person.name} may decide", title_justify="left")
    table.add_column("id", no_wrap=True)  # copied into the next command: never broken
    for column in ("agent", "write", "status", "expires (UTC)", "run"):
        table.add_column(column, overflow="fold")
    for approval in mine:
        headline, _ = describe(approval.action, approval.payload)
        table.add_row(
            approval.id,
            approval.agent,
            f"{headline} ({approval.action})",
            approval.status,
            f"{approval.expires_at:%Y-%m-%d %H:%M}",
            approval.run_id,
        )
    out.print(table)
    from meshagent.cli.invocation import shell_line
    from meshagent.cli.printer import print_command

    print_text(out, "decide one (the first, say):")
    print_command(out, shell_line("approvals", "approve", mine[0].id))
    print_command(out, shell_line("approvals", "reject", mine[0].id, "--reason", "why not"))


@app.command()
def show(ctx: typer.Context, approval_id: Annotated[str, typer.Argument(metavar="ID")]) -> None:
    """One request: the write as it would land, its exact payload, approvers and decision."""
    session = _Session(ctx)
    try:
        _expire(session)
        approval = store.get(session.runtime.ledger, approval_id)
        entry = session.runtime.ledger.entry(approval.run_id) if approval else None
    finally:
        session.close()
    if approval is None:
        print_error(err, f"no approval request {approval_id!r} in the ledger")
        raise typer.Exit(_EXIT["not_found"])
    owner = (entry or {}).get("owner")
    triggerer = (entry or {}).get("triggered_by")
    if not (session.may_decide(approval) or session.people.same(session.person.name, owner)
            or session.people.same(session.person.name, triggerer)):  # fmt: skip
        print_error(err, f"request {approval_id} is not yours to see: its approvers are "
                    f"{', '.join(approval.approvers)}")  # fmt: skip
        raise typer.Exit(_EXIT["not_approver"])
    headline, fields = describe(approval.action, approval.payload)
    print_text(out, f"{headline} ({approval.action})", style="bold")
    facts = [
        ("request", approval.id),
        ("agent", approval.agent),
        ("run", approval.run_id),
        ("owner", owner or "?"),
        ("triggered by", triggerer or (entry or {}).get("trigger_kind") or "?"),
        ("run cost", f"${(entry or {}).get('cost_usd') or 0}"),
        ("approvers", ", ".join(approval.approvers)),
        ("status", approval.status),
        ("expires", f"{approval.expires_at:%Y-%m-%d %H:%M} UTC"),
    ]
    if approval.decided_by:
        facts.append(("decided by", approval.decided_by))
    if approval.reason:
        facts.append(("reason", approval.reason))
    if approval.result:
        facts.append(("result", json.dumps(approval.result, default=str)))
    table = Table(show_header=False)
    table.add_column("what", style="bold")
    table.add_column("value", overflow="fold")
    for name, value in [*facts, *((f"payload: {k}", v) for k, v in fields)]:
        table.add_row(name, Text(value if isinstance(value, str) else json.dumps(value)))
    out.print(table)
    print_text(out, "exact payload:")
    out.print_json(approval.payload_text)


def _decide(ctx: typer.Context, approval_id: str, decision: str, reason: str | None) -> None:
    session = _Session(ctx)
    try:
        result = asyncio.run(_deciding(session, approval_id, decision, reason))
    finally:
        session.close()
    if result.code in ("executed", "rejected"):
        print_text(out, result.message, style="green" if result.code == "executed" else "")
        return
    print_error(err, result.message)
    raise typer.Exit(_EXIT.get(result.code, 1))


async def _deciding(
    session: _Session, approval_id: str, decision: str, reason: str | None
) -> Decision:
    from meshagent.approvals.asks import expire_pass, update_asked

    runtime = session.runtime
    await expire_pass(runtime)

    async def listed(approval: Approval) -> bool:
        return session.may_decide(approval)

    result = await decide(
        runtime,
        approval_id,
        decision=decision,
        who=session.person.name,
        listed=listed,
        find_spec=session.find_spec,
        reason=reason,
    )
    if result.done and result.approval is not None:
        await update_asked(runtime, result.approval)  # the Slack messages, when Slack is set up
    return result


@app.command()
def approve(ctx: typer.Context, approval_id: Annotated[str, typer.Argument(metavar="ID")]) -> None:
    """Approve a request as yourself: the write is made now, its grants checked again."""
    _decide(ctx, approval_id, "approved", None)


@app.command()
def reject(
    ctx: typer.Context,
    approval_id: Annotated[str, typer.Argument(metavar="ID")],
    reason: Annotated[
        str | None, typer.Option("--reason", help="Why; recorded with the rejection.")
    ] = None,
) -> None:
    """Reject a request as yourself, with an optional reason: nothing is written."""
    _decide(ctx, approval_id, "rejected", reason)


def print_staged(console: Console, staged: list[Approval], *, config_file: Any = None) -> None:
    """After `meshagent run`: the writes it staged, and the commands that decide them (each
    runs as pasted: the same installation, and the same settings file when one was named)."""
    from meshagent.cli.invocation import shell_line
    from meshagent.cli.printer import print_command

    first = ["--config", str(config_file)] if config_file else []
    noun = "write" if len(staged) == 1 else "writes"
    print_text(console, f"{len(staged)} {noun} staged for approval (nothing written yet):",
               style="yellow")  # fmt: skip
    for approval in staged:
        headline, _ = describe(approval.action, approval.payload)
        asked = f", asked in {len(approval.asked)} Slack messages" if approval.asked else ""
        print_text(console, f"  {approval.id}  {headline} ({approval.action}){asked}")
    print_text(console, "decide each (as yourself, an approver):")
    for approval in staged:
        print_command(console, shell_line(*first, "approvals", "show", approval.id))
        print_command(console, shell_line(*first, "approvals", "approve", approval.id))
        print_command(
            console, shell_line(*first, "approvals", "reject", approval.id, "--reason", "WHY")
        )
