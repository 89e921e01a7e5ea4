"""The ledger: one hash-chained entry per task with its tokens, cost, outcomes and feedback.

Open it with `Ledger.open(url)`; SQLite by default, PostgreSQL through `postgresql+psycopg://`.
"""

from __future__ import annotations

from meshagent.config import FlagSettings, PrivacySettings
from meshagent.ledger.batch import BatchWriter
from meshagent.ledger.chain import VerifyResult
from meshagent.ledger.flags import Flag
from meshagent.ledger.periods import Period
from meshagent.ledger.records import Cost, Outcome, RunRecord, Usage
from meshagent.ledger.reports import AdoptionWeek, ForecastRow, Report, ReportRow
from meshagent.ledger.schema import STATUSES, TRIGGER_KINDS
from meshagent.ledger.store import Ledger, migrate

__all__ = [
    "STATUSES",
    "TRIGGER_KINDS",
    "BatchWriter",
    "AdoptionWeek",
    "Cost",
    "Flag",
    "FlagSettings",
    "ForecastRow",
    "Ledger",
    "Outcome",
    "Period",
    "PrivacySettings",
    "Report",
    "ReportRow",
    "RunRecord",
    "Usage",
    "VerifyResult",
    "migrate",
]
