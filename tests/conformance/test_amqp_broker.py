"""The broker conformance suite, run against RabbitMQ through the AMQP broker."""

from __future__ import annotations

import pytest

from actorbus.brokers.amqp import AmqpBroker
from actorbus.testing import BrokerConformance

pytestmark = pytest.mark.amqp


class TestAmqpBroker(BrokerConformance):
    """Every test opens its own connections to the session's RabbitMQ (``amqp_url``)."""

    @pytest.fixture(autouse=True)
    def _amqp_url(self, amqp_url: str) -> None:
        self.amqp_url = amqp_url

    def make_broker(self) -> AmqpBroker:
        return AmqpBroker(self.amqp_url)
