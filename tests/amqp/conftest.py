"""Fixtures of the AMQP broker tests: an entered broker and unique names."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest

from actorbus.brokers.amqp import AmqpBroker


@pytest.fixture
def unique() -> str:
    """A name prefix unique to the test, so tests sharing a node never see each other."""
    return f"amqp-test.{uuid.uuid4().hex[:10]}"


@pytest.fixture
async def broker(amqp_url: str) -> AsyncIterator[AmqpBroker]:
    """An entered broker on the session's RabbitMQ."""
    async with AmqpBroker(amqp_url) as entered:
        yield entered
