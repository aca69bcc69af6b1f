"""Scale-out: several processes of one service on one vhost are competing consumers.

Order and Notification run in a process each; Inventory runs in two
(``python -m actorbus run services.inventory`` twice, sharing its data directory, as the
services README asks for processes of one service on one host). Both Inventory processes
consume ``inventory.queue``; RabbitMQ hands each message to one of them. Counting the
effects from outside shows every order handled exactly once: stock went down by one unit
per order, each notification was sent once, and the two processes' ``stock_reserved``
lines add up to the number of orders, with both doing a share. Halfway, one Inventory
process is stopped (SIGTERM: scale-in); the other takes over the rest.
"""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from ..faults._harness import OrderWorkload, ServicesProcess

pytestmark = [pytest.mark.amqp, pytest.mark.slow, pytest.mark.anyio, pytest.mark.timeout(90)]

ORDERS = 100


async def test_two_inventory_processes_share_the_queue(vhost_url: str, tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    async with anyio.create_task_group() as tg:

        def process(target: str, name: str) -> ServicesProcess:
            return ServicesProcess(tg, target, broker=vhost_url, data_dir=data_dir, name=name)

        inventory = [process("services.inventory", f"inventory-{n}") for n in (1, 2)]
        order = process("services.order", "order")
        notification = process("services.notification", "notification")
        everyone = [*inventory, notification, order]
        try:
            # Consumers first: the Order relay drops events no queue is bound to yet.
            for p in everyone:
                await p.start()
            async with OrderWorkload(
                "scaleout", [order.base_url], notification_url=notification.base_url,
                stock_url=inventory[0].base_url,
            ) as work:  # fmt: skip
                await work.set_stock()
                await work.place_all(ORDERS // 2)
                first_half = await work.settle(30)
                assert set(first_half.values()) == {"CONFIRMED"}, first_half
                shares = [len(p.log.events("stock_reserved")) for p in inventory]
                assert all(shares), f"both processes must take a share: {shares}"
                assert sum(shares) == ORDERS // 2, shares

                # Scale in: the second Inventory process leaves cleanly; the first one
                # gets everything from now on.
                assert await inventory[1].terminate() == 0
                await work.place_all(ORDERS // 2)
                figures = await work.verify()
            shares = [len(p.log.events("stock_reserved")) for p in inventory]
            figures.notes.append(f"stock reservations per inventory process {shares}")
            assert sum(shares) == ORDERS, shares
        finally:
            for p in everyone:
                await p.aclose()
            tg.cancel_scope.cancel()
    figures.check()
