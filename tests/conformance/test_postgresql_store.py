"""The store conformance suite, run against the PostgreSQL store on a throwaway cluster."""

from __future__ import annotations

from typing import Any

import pytest

from actorbus.stores import Store
from actorbus.testing import StoreConformance
from tests.stores._postgres_fixture import postgres_url as postgres_url

pytestmark = pytest.mark.postgres


class TestPostgresStore(StoreConformance):
    """Every test gets its own schema in the session's cluster; its stores share it."""

    @pytest.fixture(autouse=True)
    def _url(self, postgres_url: str) -> None:
        self.url = postgres_url

    def make_store(self, **options: Any) -> Store:
        from actorbus.stores.postgresql import PostgresStore

        return PostgresStore(f"{self.url}?schema={self.unique}", **options)
