"""The orchestrated order flow (ORDER_FLOW=orchestration): saga, compensation, timeouts, restart."""

from __future__ import annotations

from pathlib import Path

import pytest

from actorbus import HandlerContext, Service
from services import inventory, notification, orchestrator, services
from services.contracts import EXCHANGE, ChargePayment, RefundPayment, RefundPaymentResult

from .conftest import running

pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("store_matrix")]


async def test_saga_confirms_an_order(tmp_path: Path) -> None:
    async with running(services("orchestration"), tmp_path) as system:
        order_id = await system.place({"sku": "ABC", "qty": 2, "customerId": "alice"})

        order = await system.settled(order_id)

        assert order["status"] == "CONFIRMED"
        assert await system.stock("ABC") == 98
        assert await system.notifications(order_id) == ["order_confirmed"]
        payments = await system.query("SELECT status FROM payments WHERE order_id = ?", order_id)
        assert [r["status"] for r in payments] == ["CHARGED"]
        saga = await system.saga().get(system.app_store, order_id)
        assert (saga.status, saga.step) == ("completed", "confirm")


async def test_declined_payment_releases_the_stock_and_rejects(tmp_path: Path) -> None:
    async with running(services("orchestration"), tmp_path) as system:
        order_id = await system.place(
            {
                "items": [{"sku": "ABC", "qty": 5}, {"sku": "XYZ", "qty": 1}],
                "customerId": "declined-bob",
            }
        )

        order = await system.settled(order_id)

        assert order["status"] == "REJECTED"
        assert order["reason"].startswith("payment declined")
        assert await system.stock("ABC") == 100
        assert await system.stock("XYZ") == 100
        assert await system.notifications(order_id) == []


async def test_out_of_stock_is_rejected_without_charging(tmp_path: Path) -> None:
    async with running(services("orchestration"), tmp_path) as system:
        order_id = await system.place({"sku": "XYZ", "qty": 500})

        order = await system.settled(order_id)

        assert order["status"] == "REJECTED"
        assert "not enough stock" in order["reason"]
        payments = await system.query("SELECT 1 FROM payments")
        assert payments == []


def _silent_payment() -> Service:
    """A Payment that never answers ChargePayment (it is "down") but does refund."""
    service = Service("payment", queue="payment.queue", exchange=EXCHANGE)

    @service.on(ChargePayment)
    async def swallow(command: ChargePayment, ctx: HandlerContext) -> None:
        pass

    @service.on(RefundPayment)
    async def refund(command: RefundPayment, ctx: HandlerContext) -> None:
        ctx.reply(RefundPaymentResult(order_id=command.order_id, refunded=False))

    return service


async def test_payment_timeout_compensates(tmp_path: Path) -> None:
    svcs = [
        orchestrator.build(step_timeout=0.3, max_attempts=2),
        inventory.build(),
        notification.build(),
        _silent_payment(),
    ]
    async with running(svcs, tmp_path) as system:
        order_id = await system.place({"sku": "ABC", "qty": 4})

        order = await system.settled(order_id)

        assert order["status"] == "REJECTED"
        assert "ChargePayment (payment.charge) got no reply within 0.3 s" in order["reason"]
        assert await system.stock("ABC") == 100  # released
        outbox = await system.outbox()
        types = [e.type for e in outbox if e.reply_to == "orchestrator.queue"]
        assert types.count("payment.charge") == 2  # retried once, then given up
        assert types[-2:] == ["payment.refund", "inventory.release-stock"]


async def test_saga_survives_a_restart_mid_way(tmp_path: Path) -> None:
    # First life: Payment is not running, so the saga stops at the charge step.
    first = [orchestrator.build(step_timeout=0.2, max_attempts=1000), inventory.build()]
    async with running(first, tmp_path) as system:
        order_id = await system.place({"sku": "ABC", "qty": 6, "customerId": "carol"})
        saga = system.saga()

        async def charging() -> bool:
            return (await saga.get(system.app_store, order_id)).step == "charge"

        await system.wait_until(charging)
        assert await system.stock("ABC") == 94

    # Second life, everything running, same data: the saga picks up where it was.
    async with running(services("orchestration", step_timeout=0.2), tmp_path) as system:
        order = await system.settled(order_id)

        assert order["status"] == "CONFIRMED"
        assert await system.stock("ABC") == 94  # reserved once, not twice
        assert await system.notifications(order_id) == ["order_confirmed"]
