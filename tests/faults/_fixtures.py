"""Fixtures shared by the fault, scale-out and cluster tests (imported by their conftests)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest

from actorbus.testing._rabbitmq import RabbitMQNode, find_rabbitmq_server

__all__ = (
    "fault_node",
    "publisher_retires_nacked_channels",
    "require_rabbitmq_server",
    "single_active_handover_keeps_order",
    "vhost_url",
)


def require_rabbitmq_server() -> None:
    """Skip (or, on CI, fail) when ``rabbitmq-server`` is not installed."""
    if find_rabbitmq_server() is None:
        message = "these tests need rabbitmq-server: apt-get install rabbitmq-server"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)


@pytest.fixture(scope="module")
def fault_node() -> Iterator[RabbitMQNode]:
    """A RabbitMQ node of this test module's own, to restart, disconnect and pause at will.

    Not the session's node (nor ``ACTORBUS_TEST_AMQP_URL``): faults must not reach other tests.
    """
    require_rabbitmq_server()
    with RabbitMQNode(name="actorbus-faults-svc") as node:
        yield node


@pytest.fixture
def vhost_url(fault_node: RabbitMQNode) -> Iterator[str]:
    """A fresh vhost on :func:`fault_node`, so no queue or message of another case is seen.

    The URL asks for a 2 s heartbeat. aiormq declares a silent peer dead after
    ``(heartbeat + 1) * 3`` s without a frame, so a paused broker is noticed in about 9 s.
    """
    vhost = f"faults-{uuid.uuid4().hex[:8]}"
    fault_node.ctl("add_vhost", vhost)
    fault_node.ctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
    yield f"amqp://guest:guest@127.0.0.1:{fault_node.port}/{vhost}?heartbeat=2"
    if fault_node.running:
        fault_node.ctl("delete_vhost", vhost)


def publisher_retires_nacked_channels() -> bool:
    """Whether AmqpBroker publishes on a fresh channel after a ``basic.nack``.

    Without it, a channel that published to a quorum queue during its leader election can
    keep getting nacks for that queue (RabbitMQ 3.10), and the cluster test loses orders
    about one run in three. See the publisher diff in the deployment notes' change list.
    """
    from actorbus.brokers.amqp._publisher import Publisher

    return hasattr(Publisher, "_retire")


def single_active_handover_keeps_order() -> bool:
    """Whether a stopping single-active consumer keeps its queue until it closes.

    Without it, ``cancel()`` sends ``basic.cancel``; a quorum queue activates the standby at
    once and returns the leaver's prefetched messages only later, behind newer ones.
    """
    from actorbus.brokers.amqp._consumer import AmqpSubscription

    return "_holding" in AmqpSubscription.cancel.__code__.co_names
