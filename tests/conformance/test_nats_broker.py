"""The broker conformance suite, run against NATS JetStream through the NATS broker."""

from __future__ import annotations

import pytest

from actorbus.brokers.nats import NatsBroker
from actorbus.testing import BrokerConformance
from tests.nats._fixtures import nats_url as nats_url

pytestmark = pytest.mark.nats


class TestNatsBroker(BrokerConformance):
    """Every test opens its own connections to the session's nats-server (``nats_url``)."""

    @pytest.fixture(autouse=True)
    def _nats_url(self, nats_url: str) -> None:
        self.nats_url = nats_url

    def make_broker(self) -> NatsBroker:
        return NatsBroker(self.nats_url)
