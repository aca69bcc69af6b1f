"""Shared fixtures: the anyio backend for async tests, and a RabbitMQ for ``amqp`` tests."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
import structlog


@pytest.fixture
def anyio_backend() -> str:
    """Run async tests on asyncio (the backend aiormq needs)."""
    return "asyncio"


@pytest.fixture(scope="session")
def amqp_url() -> Iterator[str]:
    """The URL of a RabbitMQ for tests marked ``amqp``.

    ``ACTORBUS_TEST_AMQP_URL`` if set; otherwise a throwaway node started for the session
    on free loopback ports (see :class:`actorbus.testing._rabbitmq.RabbitMQNode`). Without
    ``rabbitmq-server`` the tests are skipped, except on CI (``CI`` set), where they fail.
    """
    url = os.environ.get("ACTORBUS_TEST_AMQP_URL")
    if url:
        yield url
        return
    from actorbus.testing._rabbitmq import RabbitMQNode, find_rabbitmq_server

    if find_rabbitmq_server() is None:
        message = (
            "RabbitMQ tests need rabbitmq-server: apt-get install rabbitmq-server "
            "(or set ACTORBUS_TEST_AMQP_URL)"
        )
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    with RabbitMQNode(name="actorbus-session") as node:
        yield node.url


@pytest.fixture(autouse=True)
def _fresh_structlog() -> Iterator[None]:
    """Undo any structlog configuration a test made (the CLI's ``main`` configures it).

    A configuration left behind would write later tests' logs to a closed capture stream.
    """
    yield
    structlog.reset_defaults()
