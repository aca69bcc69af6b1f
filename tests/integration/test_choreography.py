"""The choreographed order flow end to end on the memory broker (ORDER_FLOW=choreography)."""

from __future__ import annotations

import uuid
from pathlib import Path

import anyio
import pytest

from actorbus import App, Event
from actorbus.brokers.memory import MemoryBroker
from services import services
from services.contracts import OrderCreatedV2, OrderLine
from services.order import build as build_order

from .conftest import WAIT, running

pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("store_matrix")]


async def test_single_line_order_is_confirmed_notified_and_shipped(tmp_path: Path) -> None:
    async with running(services("choreography"), tmp_path) as system:
        order_id = await system.place({"sku": "ABC", "qty": 3, "customerId": "alice"})

        order = await system.settled(order_id)

        assert order["status"] == "CONFIRMED"
        assert order["items"] == [{"sku": "ABC", "qty": 3}]
        assert order["customerId"] == "alice"
        assert await system.stock("ABC") == 97
        await system.wait_for_rows(
            "SELECT 1 FROM notifications WHERE order_id = ?", order_id, count=2
        )
        assert sorted(await system.notifications(order_id)) == ["order_received", "stock_reserved"]
        await system.wait_for_rows("SELECT 1 FROM shipments WHERE order_id = ?", order_id)
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
        await system.wait_for_rows("SELECT 1 FROM notifications WHERE order_id = ?", order_id)
        # v1 cannot carry two lines, so Notification (still on v1) hears only stock.reserved.
        assert await system.notifications(order_id) == ["stock_reserved"]
        # The App's one outbox holds every service's messages: Order's are order.created*.
        published = [e.type for e in await system.outbox() if e.type.startswith("order.created")]
        assert published == ["order.created.v2"]


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
            rows = await system.query("SELECT 1 FROM orders WHERE status = 'PENDING'")
            return not rows

        await system.wait_until(all_settled, WAIT * 2)
        rows = await system.query("SELECT status, count(*) AS n FROM orders GROUP BY status")
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
        await publish_then_marker(system.app, "marker-1")
        await publish_then_marker(system.app, "marker-2")  # the same eventId again
        await system.wait_for_rows("SELECT 1 FROM reservations WHERE order_id = 'marker-2'")
        assert await system.stock("ABC") == 96
        assert await system.stock("XYZ") == 98

    # A new process: nothing in memory survives; the store's inbox does.
    async with running(services("choreography"), tmp_path) as system:
        await publish_then_marker(system.app, "marker-3")
        await system.wait_for_rows("SELECT 1 FROM reservations WHERE order_id = 'marker-3'")
        assert await system.stock("ABC") == 96
        produced = [e for e in await system.outbox() if e.correlation_id == "dup-1"]
        assert [e.type for e in produced] == ["stock.reserved"]  # produced once
        assert await system.unsent() == 0  # and published


async def test_notification_tolerates_fields_it_does_not_know(tmp_path: Path) -> None:
    class OrderCreatedPlus(Event, routing_key="order.created", version=1):
        """A newer producer's v1 with an additive field Notification has never heard of."""

        order_id: str
        sku: str
        qty: int
        gift_wrap: bool = True

    async with running(services("choreography"), tmp_path) as system:
        await system.app.publish(OrderCreatedPlus(order_id="gift-1", sku="ABC", qty=1))
        await system.wait_for_rows("SELECT 1 FROM notifications WHERE order_id = 'gift-1'")
        assert await system.notifications("gift-1") == ["order_received"]


async def test_an_accepted_order_survives_a_restart_before_its_events_were_published(
    tmp_path: Path,
) -> None:
    # Order alone, on a broker that refuses every publish: the relay cannot publish.
    broker = MemoryBroker("memory://refusing")
    broker.faults.fail_next_publishes(1_000_000)
    async with running([build_order()], tmp_path, broker=broker) as system:
        order_id = await system.place({"sku": "ABC", "qty": 2})
        types = [e.type for e in await system.outbox()]
        assert sorted(types) == ["order.created", "order.created.v2"]
        assert await system.unsent() == 2

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
