"""Example agents are tested with the runtime fixtures."""

from tests.runtime.conftest import ledger  # noqa: F401
