"""The broker conformance suite, run against RabbitMQ through the AMQP broker.

Twice: with deliveries handed over in aiormq's connection reader (the default), and through
aiormq's own consumer path (``?inline=0``), the way out when an aiormq release breaks the first.
"""

from __future__ import annotations

import pytest

from actorbus.brokers.amqp import AmqpBroker
from actorbus.testing import BrokerConformance

pytestmark = pytest.mark.amqp


class TestAmqpBroker(BrokerConformance):
    """Every test opens its own connections to the session's RabbitMQ (``amqp_url``)."""

    inline = True

    @pytest.fixture(autouse=True)
    def _amqp_url(self, amqp_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.delenv("ACTORBUS_AMQP_INLINE", raising=False)
        self.amqp_url = amqp_url

    def make_broker(self) -> AmqpBroker:
        if self.inline:
            return AmqpBroker(self.amqp_url)
        separator = "&" if "?" in self.amqp_url else "?"
        return AmqpBroker(f"{self.amqp_url}{separator}inline=0")


class TestAmqpBrokerWithoutInline(TestAmqpBroker):
    """The same suite on aiormq's own consumer path."""

    inline = False
