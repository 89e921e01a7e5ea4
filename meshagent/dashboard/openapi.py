"""The OpenAPI 3.1 description of the dashboard's JSON API, served at /openapi.json.

Money and other exact decimals are strings ("0.0042"), never floats; dates and times are ISO
8601 in UTC. Every response is what the viewer may see under the ledger's privacy rules.
"""

from __future__ import annotations

from typing import Any

from meshagent.dashboard.agentpages import DEFAULT_SORT, SORTS

__all__ = ["API_PATHS", "spec"]

DECIMAL = {"type": "string", "pattern": r"^-?\d+(\.\d+)?$"}


def _maybe(schema: dict[str, Any]) -> dict[str, Any]:
    return {"anyOf": [schema, {"type": "null"}]}


def _ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}"}


def _object(properties: dict[str, Any], *, extra: bool = False) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": properties,
        "required": list(properties),
        "additionalProperties": extra,
    }


INT = {"type": "integer"}
STR = {"type": "string"}
BOOL = {"type": "boolean"}
DATE = {"type": "string", "format": "date"}
TIME = {"type": "string", "format": "date-time"}

_ROW = {
    "group": STR,
    "people": INT,
    "runs": INT,
    "runs_with_outcome": INT,
    "input_tokens": INT,
    "cache_read_tokens": INT,
    "cache_write_tokens": INT,
    "output_tokens": INT,
    "reasoning_tokens": INT,
    "cost_usd": {**_maybe(DECIMAL), "description": "Known cost; null when no price was known."},
    "runs_cost_unknown": INT,
    "minutes_saved": DECIMAL,
    "feedback_pos": INT,
    "feedback_neg": INT,
    "tokens": INT,
    "minutes_per_dollar": _maybe(DECIMAL),
    "cost_per_outcome": _maybe(DECIMAL),
}

_FLAG = {
    "rule": STR,
    "subject": {**STR, "description": "The agent, or the owner for a burst"},
    "reason": STR,
    "count": {**INT, "description": "How many runs are behind the flag"},
    "run_ids": {"type": "array", "items": STR},
    "owner": {**STR, "description": "The agent's owner (as a person)"},
    "people": {"type": "array", "items": STR, "description": "Who triggered the flagged runs"},
    "accountable": {**STR, "description": "Whom the flag is about: the owner, or a looper"},
    "usd": {**DECIMAL, "description": "Dollars at stake in the period"},
    "evidence": {"type": "array", "items": STR},
    "innocent": {**STR, "description": "The innocent explanation"},
    "fix": {**STR, "description": "What to do, with what it saves"},
    "strength": {"type": "number", "description": "How much the rule's evidence weighs (0-1)"},
    "kind": {"enum": ["waste", "reliability"]},
}

_VALUE_PER_DOLLAR = {
    **_maybe(DECIMAL),
    "description": "Value per dollar: evidenced minutes per dollar, weighted by how "
    "much evidence there is (ranks the groups); null where the row does not hold "
    "every run of its group, or while it is being computed",
}

SCHEMAS: dict[str, Any] = {
    "Viewer": _object(
        {
            "name": _maybe(STR),
            "admin": BOOL,
            "mode": {"enum": ["local", "header", "anonymous"]},
        }
    ),
    "Filters": _object(
        {
            "period": {"enum": ["day", "week", "month", "range"]},
            "date": _maybe(DATE),
            "from": DATE,
            "to": DATE,
            "team": _maybe(STR),
            "tag": _maybe(STR),
        }
    ),
    "Choices": _object(
        {"teams": {"type": "array", "items": STR}, "tags": {"type": "array", "items": STR}}
    ),
    "Status": _object(
        {
            "state": {
                "enum": ["fresh", "stale", "pending"],
                "description": "stale: computed before the latest runs; pending: not yet computed",
            },
            "as_of": _maybe(TIME),
        }
    ),
    "Row": {**_object(_ROW), "description": "A group's figures, as in `meshagent ledger report`."},
    "TeamRow": {
        **_object({**_ROW, "value_per_dollar": _VALUE_PER_DOLLAR}),
        "description": "A team's figures, as in `meshagent ledger report`.",
    },
    "Point": _object(
        {
            "start": DATE,
            "future": {**BOOL, "description": "Its day or week has not begun: no figures."},
            "withheld": {**BOOL, "description": "Too few people behind this point to show it."},
            "runs": _maybe(INT),
            "runs_with_outcome": _maybe(INT),
            "cost_usd": _maybe(DECIMAL),
            "runs_cost_unknown": _maybe(INT),
            "minutes_saved": _maybe(DECIMAL),
            "minutes_per_dollar": _maybe(DECIMAL),
            "tokens": _maybe(INT),
            "people_with_outcome": {**_maybe(INT), "description": "Honest adoption."},
            "people_with_usage": {**_maybe(INT), "description": "Raw adoption."},
        }
    ),
    "AgentRow": _object(
        {
            **_ROW,
            "agent": {**_maybe(STR), "description": "null for the folded 'other' row"},
            "yours": BOOL,
            "accepted_outcomes": {
                **_maybe(INT),
                "description": "Fires and requests whose outcome someone else took up",
            },
            "cost_per_accepted": _maybe(DECIMAL),
            "minutes_evidenced": {
                **_maybe(DECIMAL),
                "description": "Minutes saved the evidence supports (minutes_saved: claimed)",
            },
            "value_per_dollar": _VALUE_PER_DOLLAR,
            "flags": _maybe(INT),
            "fires_per_month": _maybe({"type": "number"}),
            "forecast_usd": _maybe(DECIMAL),
        }
    ),
    "Flag": _object(_FLAG),
    "FlagRun": _object(
        {
            "run_id": STR,
            "agent": _maybe(STR),
            "started_at": _maybe(TIME),
            "status": _maybe(STR),
            "tokens": _maybe(INT),
            "cost_usd": _maybe(DECIMAL),
        }
    ),
    "RunRow": _object(
        {
            "run_id": STR,
            "started_at": TIME,
            "finished_at": _maybe(TIME),
            "status": STR,
            "trigger_kind": STR,
            "triggered_by": _maybe(STR),
            "model": _maybe(STR),
            "tokens": INT,
            "cost_usd": _maybe(DECIMAL),
            "outcomes": INT,
            "feedback_pos": INT,
            "feedback_neg": INT,
        }
    ),
    "Step": _object({"at": TIME, "kind": STR, "name": STR, "detail": _maybe(STR)}),
    "Overview": _object(
        {
            "viewer": _ref("Viewer"),
            "filters": _ref("Filters"),
            "withheld": BOOL,
            "folded": INT,
            "withheld_runs": {**INT, "description": "Runs in no team row: too few people"},
            "withheld_people": {**INT, "description": "The people behind withheld_runs"},
            "totals": _ref("Point"),
            "headline": _object(
                {
                    "withheld": BOOL,
                    "pending": {**BOOL, "description": "Still being computed: reload later"},
                    "accepted_outcomes": _maybe(INT),
                    "cost_per_accepted": _maybe(DECIMAL),
                    "minutes_claimed": _maybe(DECIMAL),
                    "minutes_evidenced": _maybe(DECIMAL),
                    "people_honest": {
                        **_maybe(INT),
                        "description": "People with an accepted outcome that reached someone else",
                    },
                }
            ),
            "yours": {
                **_maybe(_ref("Point")),
                "description": "The viewer's own agents (not for admins or anonymous viewers)",
            },
            "teams": {"type": "array", "items": _ref("TeamRow")},
            "trend": {"type": "array", "items": _ref("Point")},
            "trend_status": _ref("Status"),
            "choices": _ref("Choices"),
        }
    ),
    "Agents": _object(
        {
            "viewer": _ref("Viewer"),
            "filters": _ref("Filters"),
            "sort": STR,
            "order": {"enum": ["asc", "desc"]},
            "rows": {"type": "array", "items": _ref("AgentRow")},
            "folded": INT,
            "withheld": BOOL,
            "flags": _ref("Status"),
            "forecast": _ref("Status"),
            "value": {**_ref("Status"), "description": "Of the value per dollar figures"},
            "choices": _ref("Choices"),
        }
    ),
    "Agent": _object(
        {
            "viewer": _ref("Viewer"),
            "filters": _ref("Filters"),
            "agent": STR,
            "headline": _object(
                {
                    "accepted_outcomes": _maybe(INT),
                    "cost_per_accepted": _maybe(DECIMAL),
                    "minutes_evidenced": _maybe(DECIMAL),
                    "minutes_claimed": DECIMAL,
                    "value_per_dollar": _VALUE_PER_DOLLAR,
                }
            ),
            "access": {
                "enum": ["admin", "owner", "group"],
                "description": "group: only folded figures, and the viewer's own runs",
            },
            "owner": _maybe(STR),
            "summary": _maybe(_ref("Row")),
            "tokens": {"type": "object", "additionalProperties": INT},
            "daily": {"type": "array", "items": _ref("Point")},
            "runs": {"type": "array", "items": _ref("RunRow")},
            "page": INT,
            "more": BOOL,
            "flags": {"type": "array", "items": _ref("Flag")},
            "flags_status": _ref("Status"),
            "choices": _ref("Choices"),
        }
    ),
    "Run": _object(
        {
            "viewer": _ref("Viewer"),
            "run": {"type": "object", "description": "The entry's recorded facts."},
            "timeline": {"type": "array", "items": _ref("Step")},
            "tool_calls": {"type": "array", "items": _ref("Step")},
            "framework_prompt": _maybe(
                {
                    **_object(
                        {
                            "tokens": INT,
                            "headings": INT,
                            "tool_schemas": INT,
                            "tool_notes": INT,
                            "model_calls": INT,
                        }
                    ),
                    "description": "Prompt tokens the framework wrote, not the author "
                    "(estimated, over every model call); null for a run without a model call.",
                }
            ),
            "outcomes": {
                "type": "array",
                "items": _object(
                    {
                        "kind": STR,
                        "ref": STR,
                        "url": _maybe(STR),
                        "link": _maybe(STR),
                        "created_at": TIME,
                        "delivered": BOOL,
                        "verdict": {
                            "enum": ["accepted", "rejected", "ignored", "pending"],
                            "description": "What became of it, read back by the follow-up pass",
                        },
                        "checked_at": _maybe(TIME),
                        "evidence": {
                            "type": "array",
                            "description": "Who did what when; counted, or why not",
                            "items": _object(
                                {
                                    "who": _maybe(STR),
                                    "what": STR,
                                    "when": _maybe(STR),
                                    "counted": BOOL,
                                    "why": _maybe(STR),
                                }
                            ),
                        },
                        "reach": _object(
                            {
                                "audience": _maybe(STR),
                                "audience_size": _maybe(INT),
                                "reaches_others": _maybe(BOOL),
                                "detail": {"type": "object"},
                            }
                        ),
                    }
                ),
            },
            "approvals": {
                "type": "array",
                "description": "Writes the run staged for a person's approval, and what became "
                "of them",
                "items": _object(
                    {
                        "id": STR,
                        "action": STR,
                        "source": {"enum": ["deliver", "tool"]},
                        "headline": STR,
                        "payload": {"type": "object", "description": "The exact arguments"},
                        "payload_json": STR,
                        "status": {
                            "enum": [
                                "pending",
                                "approved",
                                "rejected",
                                "expired",
                                "executed",
                                "failed",
                            ]
                        },
                        "approvers": {"type": "array", "items": STR},
                        "created_at": TIME,
                        "expires_at": TIME,
                        "decided_by": _maybe(STR),
                        "decided_at": _maybe(TIME),
                        "reason": _maybe(STR),
                        "executed_at": _maybe(TIME),
                        "result": _maybe({"type": "object"}),
                    }
                ),
            },
            "feedback": {
                "type": "array",
                "items": _object(
                    {
                        "person": STR,
                        "vote": {"enum": [1, -1]},
                        "comment": _maybe(STR),
                        "created_at": TIME,
                    }
                ),
            },
        }
    ),
    "Flags": _object(
        {
            "viewer": _ref("Viewer"),
            "filters": _ref("Filters"),
            "status": _ref("Status"),
            "scope": {**STR, "description": "Whose flags these are (ledger flags says the same)"},
            "rules": {
                "type": "array",
                "items": _object({"rule": STR, "flags": INT, "runs": INT}),
                "description": "How many flags each rule raised, and the runs behind them",
            },
            "rule": {
                **_maybe(STR),
                "description": "Only the flags of this rule (the rule= filter)",
            },
            "total": {**INT, "description": "Flags of the rule, or of every rule, in all pages"},
            "first": {**INT, "description": "Position of this page's first flag, from 1 (0: none)"},
            "page": INT,
            "more": {**BOOL, "description": "Whether a next page has more flags"},
            "flags": {
                "type": "array",
                "items": _object(
                    {
                        **_FLAG,
                        "anchor": {**_maybe(STR), "description": "Set on a subject's first flag"},
                        "runs": {
                            "type": "array",
                            "items": _ref("FlagRun"),
                            "description": "The first runs behind the flag (all are in run_ids)",
                        },
                    }
                ),
            },
            "choices": _ref("Choices"),
        }
    ),
    "Error": _object({"error": STR}),
}

_PERIOD_PARAMS = [
    (
        "period",
        "day, week (default) or month, around `date`",
        {"enum": ["day", "week", "month", "range"]},
    ),
    ("date", "A day in the period (default: today, UTC)", DATE),
    ("from", "First day of a custom range (YYYY-MM-DD)", DATE),
    ("to", "Last day of a custom range, included (default: today)", DATE),
    ("team", "Only this team", STR),
    ("tag", "Only this value tag", STR),
]


def _query(name: str, description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "description": description,
        "schema": schema,
    }


def _path(name: str, description: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "description": description, "schema": STR}


def _operation(
    operation_id: str, summary: str, schema: str, parameters: list[dict[str, Any]], *, missing: bool
) -> dict[str, Any]:
    responses: dict[str, Any] = {
        "200": {"description": "OK", "content": {"application/json": {"schema": _ref(schema)}}},
        "400": {
            "description": "A filter is not valid; the error says which",
            "content": {"application/json": {"schema": _ref("Error")}},
        },
    }
    if missing:
        responses["404"] = {
            "description": "No such item, or none the viewer may see",
            "content": {"application/json": {"schema": _ref("Error")}},
        }
    return {
        "get": {
            "operationId": operation_id,
            "summary": summary,
            "parameters": parameters,
            "responses": responses,
        }
    }


_FILTERS = [_query(*p) for p in _PERIOD_PARAMS]
API_PATHS: dict[str, Any] = {
    "/api/viewer": {
        "get": {
            "operationId": "viewer",
            "summary": "Who the dashboard takes the caller to be, and whether they are an admin",
            "responses": {
                "200": {
                    "description": "OK",
                    "content": {"application/json": {"schema": _ref("Viewer")}},
                }
            },
        }
    },
    "/api/overview": _operation(
        "overview",
        "Totals, honest and raw adoption, the weekly trend and the figures by team",
        "Overview",
        _FILTERS,
        missing=False,
    ),
    "/api/agents": _operation(
        "agents",
        "Per agent: runs, cost, outcomes, feedback, value per dollar, flags, monthly forecast",
        "Agents",
        [
            *_FILTERS,
            _query(
                "sort",
                f"Column to sort by (default {DEFAULT_SORT}: the agents ranked by value per "
                "dollar)",
                {"enum": list(SORTS)},
            ),
            _query("order", "asc or desc (default)", {"enum": ["asc", "desc"]}),
        ],
        missing=False,
    ),
    "/api/agents/{name}": _operation(
        "agent",
        "One agent: totals, tokens by kind, cost per day, run history and flags",
        "Agent",
        [
            _path("name", "The agent's name"),
            *_FILTERS,
            _query("page", "Page of runs, from 1", {"type": "integer", "minimum": 1}),
        ],
        missing=True,
    ),
    "/api/runs/{run_id}": _operation(
        "run",
        "One run: trigger, timeline, tool calls (refused ones too), outcomes, staged writes "
        "and their decisions, feedback",
        "Run",
        [_path("run_id", "The run's id")],
        missing=True,
    ),
    "/api/flags": _operation(
        "flags",
        "Every tokenmaxxing flag in the period with the runs behind it, 50 per page",
        "Flags",
        [
            *_FILTERS,
            _query("rule", "Only this rule's flags (no_outcome, burst, ...)", STR),
            _query("page", "Page of flags, from 1", {"type": "integer", "minimum": 1}),
        ],
        missing=False,
    ),
}


def spec(server: str) -> dict[str, Any]:
    """The OpenAPI document, with `server` (where the dashboard is mounted) as its base URL."""
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "MeshAgent ledger dashboard API",
            "version": "1",
            "description": __doc__.strip(),
        },
        "servers": [{"url": server or "/"}],
        "paths": API_PATHS,
        "components": {"schemas": SCHEMAS},
    }
