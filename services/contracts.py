"""The reference system's contract: every event, command and reply that crosses the broker.

Routing keys, field names and versions here are fixed by the contract (docs/contract.md);
other teams and foreign clients rely on them. Python names are snake_case; the wire is
camelCase (``orderId``), and the envelope fields ``eventId``, ``occurredAt`` and
``schemaVersion`` are added by actorbus.

Versioning rules (msgspec schema evolution): an additive change keeps the routing key and gives
the new field a default; readers ignore fields they do not know. A breaking change gets a new
routing key (``order.created.v2``), published alongside the old one until its last reader is
retired. See ``services/README.md`` for how to retire ``order.created`` v1.

Events go to the topic exchange ``orders.topic``. Commands (orchestration only) go to exactly
one service through the command exchange and are answered with a reply sent straight to the
asking service's queue (``reply_to``); replies are never bound to an exchange.
"""

from __future__ import annotations

import msgspec

from actorbus import Command, Event

__all__ = (
    "EXCHANGE",
    "ChargePayment",
    "ChargePaymentResult",
    "OrderCreated",
    "OrderCreatedV2",
    "OrderLine",
    "RefundPayment",
    "RefundPaymentResult",
    "ReleaseStock",
    "ReleaseStockResult",
    "ReserveStock",
    "ReserveStockResult",
    "SendConfirmation",
    "SendConfirmationResult",
    "StockRejected",
    "StockReserved",
)

#: The topic exchange every event of the reference system is published to (contract).
EXCHANGE = "orders.topic"


class OrderLine(msgspec.Struct, frozen=True, rename="camel"):
    """One line of an order: ``{"sku", "qty"}``; unknown fields are ignored when reading."""

    sku: str
    qty: int


# ------------------------------------------------------------------------------ events


class OrderCreated(Event, routing_key="order.created", version=1):
    """An order was placed (v1): one SKU only. Still read by Notification.

    Wire: ``{eventId, orderId, sku, qty, occurredAt, schemaVersion: 1}``. Published only for
    single-line orders, because v1 cannot express several lines.
    """

    order_id: str
    sku: str
    qty: int


class OrderCreatedV2(Event, routing_key="order.created.v2", version=2):
    """An order was placed (v2): any number of lines and the customer. Read by Inventory.

    Wire: ``{eventId, orderId, customerId, items: [{sku, qty}], occurredAt, schemaVersion: 2}``.
    Published for every order.
    """

    order_id: str
    customer_id: str
    items: tuple[OrderLine, ...]


class StockReserved(Event, routing_key="stock.reserved", version=1):
    """Inventory reserved every line of an order.

    Wire: ``{eventId, orderId, items: [{sku, qty}], occurredAt, schemaVersion: 1}``.
    """

    order_id: str
    items: tuple[OrderLine, ...]


class StockRejected(Event, routing_key="stock.rejected", version=1):
    """Inventory could not reserve an order (unknown SKU or not enough stock); nothing is held.

    Wire: ``{eventId, orderId, reason, occurredAt, schemaVersion: 1}``.
    """

    order_id: str
    reason: str


# ------------------------------------------------------- commands (orchestration only)


class ReserveStock(Command, routing_key="inventory.reserve-stock", version=1):
    """Reserve every line of an order, all or nothing; answered with ReserveStockResult."""

    order_id: str
    items: tuple[OrderLine, ...]


class ReleaseStock(Command, routing_key="inventory.release-stock", version=1):
    """Give back what an order reserved (compensation); answered with ReleaseStockResult.

    Releasing an order that reserved nothing leaves a tombstone, so that a ReserveStock for it
    that arrives late is refused instead of holding stock for a dead order.
    """

    order_id: str
    reason: str


class ChargePayment(Command, routing_key="payment.charge", version=1):
    """Charge the customer for an order; answered with ChargePaymentResult."""

    order_id: str
    customer_id: str


class RefundPayment(Command, routing_key="payment.refund", version=1):
    """Undo a charge (compensation after a payment step timed out); answered with a result.

    Refunding an order that was never charged leaves a tombstone: a late ChargePayment for it
    is declined.
    """

    order_id: str
    reason: str


class SendConfirmation(Command, routing_key="notification.send-confirmation", version=1):
    """Tell the customer that their order is confirmed; answered with SendConfirmationResult."""

    order_id: str
    customer_id: str
    items: tuple[OrderLine, ...]


# ------------------------------------------------------------------------------ replies


class ReserveStockResult(Event, routing_key="inventory.reserve-stock.result", version=1):
    """Reply to ReserveStock: ``reserved`` or not, and why not."""

    order_id: str
    reserved: bool
    reason: str = ""


class ReleaseStockResult(Event, routing_key="inventory.release-stock.result", version=1):
    """Reply to ReleaseStock: whether stock was given back (False if nothing was held)."""

    order_id: str
    released: bool


class ChargePaymentResult(Event, routing_key="payment.charge.result", version=1):
    """Reply to ChargePayment: ``approved`` or declined, and why."""

    order_id: str
    approved: bool
    reason: str = ""


class RefundPaymentResult(Event, routing_key="payment.refund.result", version=1):
    """Reply to RefundPayment: whether money was given back (False if nothing was charged)."""

    order_id: str
    refunded: bool


class SendConfirmationResult(Event, routing_key="notification.send-confirmation.result", version=1):
    """Reply to SendConfirmation: the confirmation was recorded."""

    order_id: str
