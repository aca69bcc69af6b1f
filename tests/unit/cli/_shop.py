"""A small system shaped like the reference one, for the documentation commands' tests.

It mirrors the contract's topology (``orders.topic``; ``inventory.queue`` bound to
``order.created.v2``; ``notification.queue`` bound to ``order.created`` and
``stock.reserved``) and adds one orchestrated command with its reply, so the tests do not
depend on the reference services, which are written concurrently.

Target: ``tests.unit.cli._shop:services``.
"""

from __future__ import annotations

import msgspec
import pytest

from actorbus import Command, Event, HandlerContext, Service
from actorbus.cli._imports import resolve_services

EXCHANGE = "orders.topic"


class Line(msgspec.Struct, frozen=True, rename="camel"):
    """One order line."""

    sku: str
    qty: int


class OrderCreated(Event, routing_key="order.created", version=1):
    """An order was placed (v1)."""

    order_id: str
    sku: str
    qty: int


class OrderCreatedV2(Event, routing_key="order.created.v2", version=2):
    """An order was placed (v2)."""

    order_id: str
    customer_id: str
    items: tuple[Line, ...]


class StockReserved(Event, routing_key="stock.reserved", version=1):
    """Stock was reserved."""

    order_id: str
    items: tuple[Line, ...]


class StockRejected(Event, routing_key="stock.rejected", version=1):
    """Stock could not be reserved."""

    order_id: str
    reason: str


class ReserveStock(Command, routing_key="inventory.reserve-stock", version=1):
    """Reserve stock for an order."""

    order_id: str
    items: tuple[Line, ...]


class ReserveStockResult(Event, routing_key="inventory.reserve-stock.result", version=1):
    """Reply to ReserveStock."""

    order_id: str
    reserved: bool
    reason: str = ""


async def _ignore(message: object, ctx: HandlerContext) -> None:
    """Do nothing: only the declarations matter to the documentation commands."""


def services() -> list[Service]:
    """Return order, inventory, notification and orchestrator services."""
    order = Service("order", exchange=EXCHANGE)
    order.declare_publishes(OrderCreated, OrderCreatedV2)
    order.add_handler(StockReserved, _ignore)
    order.add_handler(StockRejected, _ignore)

    inventory = Service("inventory", exchange=EXCHANGE)
    inventory.declare_publishes(StockReserved, StockRejected, ReserveStockResult)
    inventory.add_handler(OrderCreatedV2, _ignore)
    inventory.add_handler(ReserveStock, _ignore)

    notification = Service("notification", exchange=EXCHANGE)
    notification.add_handler(OrderCreated, _ignore)
    notification.add_handler(StockReserved, _ignore)

    orchestrator = Service("orchestrator", exchange=EXCHANGE)
    orchestrator.declare_publishes(ReserveStock)
    orchestrator.add_handler(ReserveStockResult, _ignore, bind=False)
    return [order, inventory, notification, orchestrator]


#: The target naming this system, for ``main([...])``.
TARGET = "tests.unit.cli._shop:services"


def reference_target() -> str:
    """Return ``"services"`` if the reference system resolves to services, else skip the test.

    The reference system (``services``) is being written concurrently; until
    ``services.services()`` is importable, the tests that need it skip with the reason.
    """
    try:
        found = resolve_services("services")
    except Exception as exc:  # anything a half-written package raises on import
        pytest.skip(f"SKIPPED: the reference system `services` does not resolve yet: {exc!r}")
    if not found:
        pytest.skip("SKIPPED: the reference system `services` has no services yet")
    return "services"
