"""Fixtures of the AMQP broker tests: an entered broker and unique names.

Every test marked ``amqp`` runs twice: with deliveries handed over in aiormq's connection
reader (``[inline]``, the default) and through aiormq's own consumer path (``[aiormq-path]``,
``ACTORBUS_AMQP_INLINE=0``), the way out a user takes when an aiormq release breaks the first.
A test module lists in ``CHOOSES_CONSUMER_PATH`` the tests that choose a path themselves.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest

from actorbus.brokers.amqp import AmqpBroker
from actorbus.brokers.amqp._connection import INLINE_ENV

_PATHS = {"inline": "1", "aiormq-path": "0"}


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if (
        "consumer_path" in metafunc.fixturenames
        and metafunc.definition.get_closest_marker("amqp") is not None
        and metafunc.function.__name__ not in getattr(metafunc.module, "CHOOSES_CONSUMER_PATH", ())
    ):
        metafunc.parametrize("consumer_path", list(_PATHS), indirect=True)


@pytest.fixture(autouse=True)
def consumer_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """The consumer path of the brokers a test creates (through ``ACTORBUS_AMQP_INLINE``)."""
    path: str = getattr(request, "param", "inline")
    monkeypatch.setenv(INLINE_ENV, _PATHS[path])
    return path


@pytest.fixture
def unique() -> str:
    """A name prefix unique to the test, so tests sharing a node never see each other."""
    return f"amqp-test.{uuid.uuid4().hex[:10]}"


@pytest.fixture
async def broker(amqp_url: str) -> AsyncIterator[AmqpBroker]:
    """An entered broker on the session's RabbitMQ."""
    async with AmqpBroker(amqp_url) as entered:
        yield entered
