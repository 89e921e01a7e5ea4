"""Dashboard fixtures: one seeded ledger per session (read-only), apps and clients over it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.testclient import TestClient

from meshagent.config import Config
from meshagent.dashboard import create_dashboard
from meshagent.ledger import Ledger

from .world import FIRES, TODAY, config, fill


@dataclass
class World:
    """The seeded ledger, its settings and the run ids the tests look at."""

    url: str
    config: Config
    ledger: Ledger
    ids: dict[str, str]

    def app(self, **options: Any) -> Starlette:
        return create_dashboard(
            self.config,
            ledger=self.ledger,
            today=lambda: TODAY,
            fires_per_month=lambda today: FIRES,
            **options,
        )


@pytest.fixture(scope="session")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    url = f"sqlite:///{tmp_path_factory.mktemp('dashboard') / 'ledger.db'}"
    ledger = Ledger.open(url)
    try:
        ids = fill(ledger)
        yield World(url, config(url), ledger, ids)
    finally:
        ledger.close()


@pytest.fixture(scope="session")
def app(world: World) -> Starlette:
    return world.app()


@pytest.fixture(scope="session")
def http(app: Starlette) -> Iterator[TestClient]:
    with TestClient(app) as client:
        yield client


@pytest.fixture
def get(http: TestClient) -> Callable[..., Any]:
    """GET a path as `viewer` (None: no header), returning the response."""

    def fetch(path: str, viewer: str | None = None, **options: Any) -> Any:
        headers = {"X-Forwarded-User": viewer} if viewer else {}
        return http.get(path, headers=headers, **options)

    return fetch
