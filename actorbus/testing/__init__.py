"""What users need to test their own services and brokers.

- :class:`ServiceHarness` runs services on a fresh in-process broker inside a test, with
  awaitable probes (``wait_for``, ``wait_until_idle``, ``published_to``) instead of sleeps.
- :class:`ManualClock` makes retry delays, saga timeouts and supervisor backoff take no time.
- ``harness.faults`` injects broker faults: drop the connection, nack publishes, duplicate
  deliveries.
- :class:`BrokerConformance` is the behaviour every broker must show; subclass it to test a
  broker of your own.
- :class:`RabbitMQNode` starts a throwaway RabbitMQ node on free loopback ports;
  :class:`NatsServer` / :class:`NatsCluster` a nats-server -js (one node, or three).
- :func:`capture_logs` collects structured log events.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from structlog.testing import capture_logs as capture_logs

from .._clock import ManualClock as ManualClock
from ._harness import Published as Published
from ._harness import RecordingBroker as RecordingBroker
from ._harness import ServiceHarness as ServiceHarness
from ._harness import wait_until_idle as wait_until_idle
from ._nats import NatsCluster as NatsCluster
from ._nats import NatsServer as NatsServer
from ._nats import find_nats_server as find_nats_server
from ._postgres import PostgresCluster as PostgresCluster
from ._rabbitmq import RabbitMQNode as RabbitMQNode

if TYPE_CHECKING:
    from ._conformance import BrokerConformance as BrokerConformance
    from ._store_conformance import StoreConformance as StoreConformance


def __getattr__(name: str) -> Any:
    # The conformance suite is a pytest base class: import pytest only when it is asked
    # for, so that the rest of actorbus.testing (and the benchmarks) work without pytest.
    if name == "BrokerConformance":
        from ._conformance import BrokerConformance

        return BrokerConformance
    if name == "StoreConformance":
        from ._store_conformance import StoreConformance

        return StoreConformance
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = (
    "BrokerConformance",
    "ManualClock",
    "NatsCluster",
    "NatsServer",
    "PostgresCluster",
    "Published",
    "RabbitMQNode",
    "RecordingBroker",
    "ServiceHarness",
    "StoreConformance",
    "capture_logs",
    "find_nats_server",
    "wait_until_idle",
)
