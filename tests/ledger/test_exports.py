"""The ledger package exports exactly its intended public names."""

from __future__ import annotations

import meshagent.ledger as ledger


def test_public_names():
    assert sorted(ledger.__all__) == sorted(
        [
            "STATUSES",
            "TRIGGER_KINDS",
            "AdoptionWeek",
            "BatchWriter",
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
    )
    assert all(hasattr(ledger, name) for name in ledger.__all__)


def test_migrate_function(sqlite_url):
    assert ledger.migrate(sqlite_url) == (None, "0007")
    assert ledger.migrate(sqlite_url) == ("0007", "0007")
