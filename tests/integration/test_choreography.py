"""The choreographed order flow end to end on the memory broker (ORDER_FLOW=choreography)."""

from __future__ import annotations

import uuid
from pathlib import Path

import anyio
import pytest

from actorbus import App, Event
from services import services
from services.contracts import OrderCreatedV2, OrderLine
from services.inventory.store import InventoryStore
from services.notification.store import NotificationStore
from services.order import build as build_order
from services.shipping.store import ShippingStore

from .conftest import WAIT, query, running, wait_for_rows

pytestmark = pytest.mark.anyio


async def test_single_line_order_is_confirmed_notified_and_shipped(tmp_path: Path) -> None:
    async with running(services("choreography"), tmp_path) as system:
        order_id = await system.place({"sku": "ABC", "qty": 3, "customerId": "alice"})

        order = await system.settled(order_id)

        assert order["status"] == "CONFIRMED"
        assert order["items"] == [{"sku": "ABC", "qty": 3}]
        assert order["customerId"] == "alice"
        assert await system.stock("ABC") == 97
        notifications = system.store("notification", NotificationStore)
        await wait_for_rows(
            notifications, "SELECT 1 FROM notifications WHERE order_id = ?", order_id, count=2
        )
        assert sorted(await system.notifications(order_id)) == ["order_received", "stock_reserved"]
        shipping = system.store("shipping", ShippingStore)
        await wait_for_rows(shipping, "SELECT 1 FROM shipments WHERE order_id = ?", order_id)
        response = await system.client.get(f"/shipments/{order_id}")
        assert response.json()["status"] == "SCHEDULED"


async def test_multi_line_order_is_published_as_v2_only(tmp_path: Path) -> None:
    async with running(services("choreography"), tmp_path) as system:
        order_id = await system.place(
            {"items": [{"sku": "ABC", "qty": 1}, {"sku": "XYZ", "qty": 2}]}
        )

        assert (await system.settled(order_id))["status"] == "CONFIRMED"
        assert await system.stock("ABC") == 99
        assert await system.stock("XYZ") == 98
        notifications = system.store("notification", NotificationStore)
        await wait_for_rows(
            notifications, "SELECT 1 FROM notifications WHERE order_id = ?", order_id
        )
        # v1 cannot carry two lines, so Notification (still on v1) hears only stock.reserved.
        assert await system.notifications(order_id) == ["stock_reserved"]
        rows = await query(system.orders, "SELECT message_type FROM outbox ORDER BY id")
        assert [r["message_type"] for r in rows] == ["order.created.v2"]


async def test_out_of_stock_order_is_rejected_and_changes_no_stock(tmp_path: Path) -> None:
    async with running(services("choreography"), tmp_path) as system:
        order_id = await system.place(
            {"items": [{"sku": "ABC", "qty": 5}, {"sku": "XYZ", "qty": 101}]}
        )

        order = await system.settled(order_id)

        assert order["status"] == "REJECTED"
        assert "not enough stock of 'XYZ'" in order["reason"]
        assert await system.stock("ABC") == 100  # all or nothing
        assert await system.stock("XYZ") == 100
        assert (await system.client.get(f"/shipments/{order_id}")).status_code == 404


async def test_unknown_sku_is_rejected(tmp_path: Path) -> None:
    async with running(services("choreography"), tmp_path) as system:
        order_id = await system.place({"sku": "NOPE", "qty": 1})

        order = await system.settled(order_id)

        assert order["status"] == "REJECTED"
        assert order["reason"] == "unknown SKU 'NOPE'"


async def test_two_hundred_concurrent_orders_never_oversell(tmp_path: Path) -> None:
    async with running(services("choreography"), tmp_path) as system:
        response = await system.client.put("/stock/HOT", json={"available": 50})
        assert response.status_code == 200
        order_ids: list[str] = []

        async def place() -> None:
            order_ids.append(await system.place({"sku": "HOT", "qty": 1}))

        async with anyio.create_task_group() as tg:
            for _ in range(200):
                tg.start_soon(place)

        async def all_settled() -> bool:
            rows = await query(system.orders, "SELECT 1 FROM orders WHERE status = 'PENDING'")
            return not rows

        with anyio.fail_after(WAIT * 2):
            await system.orders.wait_until(all_settled)
        rows = await query(
            system.orders, "SELECT status, count(*) AS n FROM orders GROUP BY status"
        )
        counts = {r["status"]: r["n"] for r in rows}
        assert counts == {"CONFIRMED": 50, "REJECTED": 150}
        assert len(set(order_ids)) == 200
        assert await system.stock("HOT") == 0


async def test_redelivered_event_has_no_second_effect_even_after_a_restart(
    tmp_path: Path,
) -> None:
    event = OrderCreatedV2(order_id="dup-1", customer_id="c", items=(OrderLine("ABC", 4),))

    async def publish_then_marker(app: App, marker: str) -> None:
        await app.publish(event, correlation_id=event.order_id)
        # The queue is consumed in order: once the marker is handled, so is the copy above.
        await app.publish(
            OrderCreatedV2(order_id=marker, customer_id="c", items=(OrderLine("XYZ", 1),)),
            correlation_id=marker,
        )

    async with running(services("choreography"), tmp_path) as system:
        inventory = system.store("inventory", InventoryStore)
        await publish_then_marker(system.app, "marker-1")
        await publish_then_marker(system.app, "marker-2")  # the same eventId again
        await wait_for_rows(inventory, "SELECT 1 FROM reservations WHERE order_id = 'marker-2'")
        assert await system.stock("ABC") == 96
        assert await system.stock("XYZ") == 98

    # A new process: the framework's in-memory inbox is empty; the SQLite inbox is not.
    async with running(services("choreography"), tmp_path) as system:
        inventory = system.store("inventory", InventoryStore)
        await publish_then_marker(system.app, "marker-3")
        await wait_for_rows(inventory, "SELECT 1 FROM reservations WHERE order_id = 'marker-3'")
        assert await system.stock("ABC") == 96
        rows = await query(
            inventory, "SELECT count(*) AS n FROM outbox WHERE correlation_id = 'dup-1'"
        )
        assert rows[0]["n"] == 1  # stock.reserved was produced once, and published


async def test_notification_tolerates_fields_it_does_not_know(tmp_path: Path) -> None:
    class OrderCreatedPlus(Event, routing_key="order.created", version=1):
        """A newer producer's v1 with an additive field Notification has never heard of."""

        order_id: str
        sku: str
        qty: int
        gift_wrap: bool = True

    async with running(services("choreography"), tmp_path) as system:
        await system.app.publish(OrderCreatedPlus(order_id="gift-1", sku="ABC", qty=1))
        notifications = system.store("notification", NotificationStore)
        await wait_for_rows(notifications, "SELECT 1 FROM notifications WHERE order_id = 'gift-1'")
        assert await system.notifications("gift-1") == ["order_received"]


async def test_an_accepted_order_survives_a_restart_before_its_events_were_published(
    tmp_path: Path,
) -> None:
    # Order alone: nobody is bound to order.created yet, so the relay cannot publish.
    async with running([build_order()], tmp_path) as system:
        order_id = await system.place({"sku": "ABC", "qty": 2})
        rows = await query(system.orders, "SELECT status FROM outbox")
        assert rows
        assert all(r["status"] == "pending" for r in rows)

    async with running(services("choreography"), tmp_path) as system:
        assert (await system.settled(order_id))["status"] == "CONFIRMED"
        assert await system.stock("ABC") == 98


async def test_order_can_be_read_back_and_unknown_order_is_404(tmp_path: Path) -> None:
    async with running(services("choreography"), tmp_path) as system:
        order_id = await system.place({"sku": "ABC", "qty": 1})
        response = await system.client.get(f"/orders/{order_id}")
        assert response.status_code == 200
        assert response.json()["orderId"] == order_id
        missing = await system.client.get(f"/orders/{uuid.uuid4()}")
        assert missing.status_code == 404
        assert missing.json()["error"] == "order_not_found"
        with anyio.fail_after(WAIT):
            await system.settled(order_id)
