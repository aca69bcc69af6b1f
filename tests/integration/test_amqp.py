"""Both order flows on a real RabbitMQ (marked ``amqp``: needs ``rabbitmq-server``)."""

from __future__ import annotations

from pathlib import Path

import anyio
import httpx
import pytest

from actorbus import App
from services import services

from .conftest import System, store_url

pytestmark = [pytest.mark.anyio, pytest.mark.amqp]


@pytest.mark.parametrize("flow", ["choreography", "orchestration"])
async def test_order_flow_on_rabbitmq(tmp_path: Path, amqp_url: str, flow: str) -> None:
    async with App(
        services(flow), broker=amqp_url, data_dir=tmp_path, store=store_url(tmp_path)
    ) as app:
        transport = httpx.ASGITransport(app=app.asgi())
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            system = System(app, client)
            confirmed = await system.place({"sku": "ABC", "qty": 2, "customerId": "alice"})
            declined = await system.place({"sku": "XYZ", "qty": 1000})
            with anyio.fail_after(30):
                assert (await system.settled(confirmed))["status"] == "CONFIRMED"
                assert (await system.settled(declined))["status"] == "REJECTED"
            assert await system.stock("ABC") == 98
            assert await system.stock("XYZ") == 100
