"""The orchestrated order flow with its store on PostgreSQL: confirm, decline, step timeout."""

from __future__ import annotations

from pathlib import Path

import pytest

from services import inventory, notification, orchestrator, services
from tests.scaleout._hosts import shared_store
from tests.stores._postgres_fixture import postgres_url as postgres_url

from .conftest import running
from .test_orchestration import _silent_payment

pytestmark = [pytest.mark.postgres, pytest.mark.anyio]


async def test_confirms_and_compensates_on_postgres(tmp_path: Path, postgres_url: str) -> None:
    store = shared_store(postgres_url)
    async with running(services("orchestration"), tmp_path, store=store) as system:
        confirmed = await system.place({"sku": "ABC", "qty": 2, "customerId": "alice"})
        declined = await system.place({"sku": "ABC", "qty": 5, "customerId": "declined-bob"})

        assert (await system.settled(confirmed))["status"] == "CONFIRMED"
        order = await system.settled(declined)
        assert order["status"] == "REJECTED"
        assert order["reason"].startswith("payment declined")
        assert await system.stock("ABC") == 98  # the declined order's stock was released
        assert await system.notifications(confirmed) == ["order_confirmed"]
        saga = await system.saga().get(system.app_store, declined)
        assert saga.status == "compensated"


async def test_payment_timeout_compensates_on_postgres(tmp_path: Path, postgres_url: str) -> None:
    svcs = [
        orchestrator.build(step_timeout=0.3, max_attempts=2),
        inventory.build(),
        notification.build(),
        _silent_payment(),
    ]
    async with running(svcs, tmp_path, store=shared_store(postgres_url)) as system:
        order_id = await system.place({"sku": "ABC", "qty": 4})

        order = await system.settled(order_id)

        assert order["status"] == "REJECTED"
        assert (
            "ChargePayment (payment.charge) got no reply within 0.3 s (2 attempts)"
            in (order["reason"])
        )
        assert await system.stock("ABC") == 100
