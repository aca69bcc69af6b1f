"""The ``nats_url`` fixture: a throwaway nats-server -js for the test session."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from actorbus.testing import NatsServer, find_nats_server


@pytest.fixture(scope="session")
def nats_url() -> Iterator[str]:
    """The URL of a nats-server with JetStream for tests marked ``nats``.

    ``ACTORBUS_TEST_NATS_URL`` if set; otherwise a throwaway server on free loopback ports
    (never the machine's own NATS on 4222). Without ``nats-server`` the tests are skipped,
    except on CI (``CI`` set), where they fail.
    """
    url = os.environ.get("ACTORBUS_TEST_NATS_URL")
    if url:
        yield url
        return
    if find_nats_server() is None:
        message = "NATS tests need nats-server: apt-get install nats-server"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    with NatsServer(name="actorbus-session") as server:
        yield server.url
