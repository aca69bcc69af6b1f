"""What every case shares: the settings of the run and the payload (OrderCreated v1)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

import msgspec

from actorbus import Event

from ._stats import Progress

__all__ = ("OrderCreated", "PlainOrderCreated", "Settings", "make_events", "make_plain")

# A realistic order id and SKU: with them an OrderCreated v1 body is about 200 bytes.
_ORDER_PREFIX = "ord-2024-000000-"
_SKU = "SKU-APPLE-GALA-ORGANIC-1KG-BAG"


class OrderCreated(Event, routing_key="order.created", version=1):
    """The benchmark payload: OrderCreated v1 of the reference system (docs/contract.md).

    Wire: ``{eventId, occurredAt, schemaVersion, orderId, sku, qty}``. The benchmarks use
    ``qty`` as the message's sequence number within a round, to match latencies.
    """

    order_id: str
    sku: str
    qty: int


class PlainOrderCreated(msgspec.Struct, rename="camel"):
    """The same payload as a plain msgspec Struct: what a bare msgspec user would write."""

    event_id: uuid.UUID
    occurred_at: datetime
    schema_version: int
    order_id: str
    sku: str
    qty: int


def make_events(count: int) -> list[OrderCreated]:
    """Return ``count`` distinct events (fresh eventIds) with ``qty`` = 0 … count-1."""
    return [OrderCreated(order_id=f"{_ORDER_PREFIX}{i:08d}", sku=_SKU, qty=i) for i in range(count)]


def make_plain(count: int) -> list[PlainOrderCreated]:
    """Return ``count`` distinct plain events, field for field like :func:`make_events`."""
    now = datetime.now(UTC)
    return [
        PlainOrderCreated(
            event_id=uuid.uuid4(),
            occurred_at=now,
            schema_version=1,
            order_id=f"{_ORDER_PREFIX}{i:08d}",
            sku=_SKU,
            qty=i,
        )
        for i in range(count)
    ]


@dataclass(slots=True)
class Settings:
    """The knobs of one run; the same for actorbus and its baselines.

    Attributes:
        quick: The CI mode: fewer rounds and messages.
        rounds: Measured rounds per variant.
        scale: Multiplies each case's message count.
        amqp_url: The RabbitMQ to use, or ``None`` to run the in-process cases only.
        nats_url: The nats-server (with JetStream) to use, or ``None`` to skip NATS.
        prefetch: Consumer prefetch (actorbus ``Service.prefetch`` and raw ``basic.qos``).
        confirm_window: Publishes awaiting their confirm at once.
        progress: Where progress lines go.
    """

    quick: bool
    rounds: int
    scale: float
    amqp_url: str | None
    progress: Progress
    nats_url: str | None = None
    prefetch: int = 256
    confirm_window: int = 1000

    def count(self, full: int) -> int:
        """Return a case's message count: ``full`` scaled, and cut for quick mode."""
        return max(100, int(full * self.scale * (0.25 if self.quick else 1.0)))
