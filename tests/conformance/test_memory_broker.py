"""The broker conformance suite, run against the memory broker."""

from __future__ import annotations

from actorbus.brokers.memory import MemoryBroker
from actorbus.testing import BrokerConformance


class TestMemoryBroker(BrokerConformance):
    """Every test gets its own named in-process server, shared by the brokers it opens."""

    def make_broker(self) -> MemoryBroker:
        return MemoryBroker(f"memory://{self.unique}")
