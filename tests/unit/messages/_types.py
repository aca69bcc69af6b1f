"""Message types shared by the message-layer tests (mirrors the reference contract)."""

from __future__ import annotations

import msgspec

from actorbus.messages import Command, Event


class LineItem(msgspec.Struct, frozen=True):
    sku: str
    qty: int


class OrderCreated(Event, routing_key="order.created", version=1):
    order_id: str
    sku: str
    qty: int


class OrderCreatedV2(Event, routing_key="order.created.v2", version=2):
    order_id: str
    customer_id: str
    items: list[LineItem]


class StockRejected(Event, routing_key="stock.rejected", version=1):
    order_id: str
    reason: str
    retryable: bool = False


class ReserveStock(Command, routing_key="inventory.reserve-stock", version=1):
    order_id: str
    items: list[LineItem]


# One wire name, three versions: each an additive or breaking step of the same event.
class ParcelShipped(Event, routing_key="parcel.shipped", version=1):
    parcel_id: str


class ParcelShippedV2(Event, routing_key="parcel.shipped", version=2):
    parcel_id: str
    carrier: str


class ParcelShippedV3(Event, routing_key="parcel.shipped", version=3):
    parcel_id: str
    carrier: str
    tracking_url: str


def order_created_to_v2(message: OrderCreated) -> OrderCreatedV2:
    return OrderCreatedV2(
        event_id=message.event_id,
        occurred_at=message.occurred_at,
        order_id=message.order_id,
        customer_id="unknown",
        items=[LineItem(message.sku, message.qty)],
    )


def parcel_v1_to_v2(message: ParcelShipped) -> ParcelShippedV2:
    return ParcelShippedV2(
        event_id=message.event_id,
        occurred_at=message.occurred_at,
        parcel_id=message.parcel_id,
        carrier="post",
    )


def parcel_v2_to_v3(message: ParcelShippedV2) -> ParcelShippedV3:
    return ParcelShippedV3(
        event_id=message.event_id,
        occurred_at=message.occurred_at,
        parcel_id=message.parcel_id,
        carrier=message.carrier,
        tracking_url=f"https://track.example/{message.carrier}/{message.parcel_id}",
    )
