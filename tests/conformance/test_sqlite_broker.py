"""The broker conformance suite, run against the durable embedded broker."""

from __future__ import annotations

from pathlib import Path

import pytest

from actorbus.brokers.sqlite import SqliteBroker
from actorbus.testing import BrokerConformance


class TestSqliteBroker(BrokerConformance):
    """Every test gets its own broker file, shared by the brokers (connections) it opens."""

    @pytest.fixture(autouse=True)
    def _broker_file(self, tmp_path: Path) -> None:
        self.path = tmp_path / "broker.sqlite3"

    def make_broker(self) -> SqliteBroker:
        return SqliteBroker(f"sqlite:///{self.path}")
