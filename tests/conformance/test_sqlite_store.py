"""The store conformance suite, run against the SQLite store."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from actorbus.stores import Store
from actorbus.stores.sqlite import SqliteStore
from actorbus.testing import StoreConformance


class TestSqliteStore(StoreConformance):
    """Every test gets its own file; stores made in one test share it."""

    @pytest.fixture(autouse=True)
    def _directory(self, tmp_path: Path) -> None:
        self.directory = tmp_path

    def make_store(self, **options: Any) -> Store:
        return SqliteStore(f"sqlite:///{self.directory / self.unique}.sqlite3", **options)
