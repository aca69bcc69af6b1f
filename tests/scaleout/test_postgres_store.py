"""Scale-out across hosts: the reference system in two processes with separate data
directories, sharing one PostgreSQL store and one RabbitMQ, as competing consumers.

Every process runs every service (``python -m actorbus run services``), so each queue has two
consumers and each store table two writers. Orders go in through the first process's front
door; the second one is killed with SIGKILL mid-stream, holding unacked deliveries and
outbox rows it had claimed. Counted from outside: no order lost (each accepted one ends
CONFIRMED with each notification), no notification duplicated, and the stock went down by
exactly the confirmed units — never oversold. Then more orders than units are placed: exactly
as many confirm as there were units, and the stock ends at 0.
"""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from ..faults._harness import OrderWorkload
from ._hosts import hosts, shared_store

pytestmark = [
    pytest.mark.amqp,
    pytest.mark.postgres,
    pytest.mark.slow,
    pytest.mark.anyio,
    pytest.mark.timeout(240),
]

ORDERS = 80
FAULT_AT = 25
SCARCE = 15


async def test_two_hosts_share_one_postgres_store_through_a_sigkill(
    vhost_url: str, postgres_url: str, tmp_path: Path
) -> None:
    store = shared_store(postgres_url)
    async with anyio.create_task_group() as tg:
        first, second = processes = hosts(tg, tmp_path, vhost_url, store)
        try:
            for process in processes:
                await process.start()
            async with OrderWorkload("pg-hosts", [first.base_url], retry_for=60) as work:
                await work.set_stock()

                async def kill_second() -> None:
                    work.note_fault(second, "host-2 SIGKILLed")
                    await second.kill()

                await work.place_all(ORDERS, at={FAULT_AT: kill_second})
                # A killed relay's claimed outbox rows are freed by the surviving host's relay,
                # which sees the owner's process gone (same machine); the lease is the backstop.
                figures = await work.verify(settle_timeout=90)
            assert not second.running
            assert first.running, first.log.tail()
            shares = [len(p.log.events("stock_reserved")) for p in processes]
            figures.notes.append(f"stock reservations per host {shares}")
            assert shares[1] > 0, f"host-2 must have taken a share before it died: {shares}"
        finally:
            for process in processes:
                await process.aclose()
            tg.cancel_scope.cancel()
    figures.check()


async def test_two_hosts_never_oversell(vhost_url: str, postgres_url: str, tmp_path: Path) -> None:
    store = shared_store(postgres_url)
    async with anyio.create_task_group() as tg:
        processes = hosts(tg, tmp_path, vhost_url, store)
        try:
            for process in processes:
                await process.start()
            urls = [p.base_url for p in processes]
            async with OrderWorkload("pg-scarce", urls, retry_for=30) as work:
                await work.set_stock(SCARCE)
                await work.place_all(SCARCE * 4, concurrency=8)
                status = await work.settle(60)
                assert work.figures.accepted == SCARCE * 4
                confirmed = sum(1 for s in status.values() if s == "CONFIRMED")
                rejected = sum(1 for s in status.values() if s == "REJECTED")
                assert (confirmed, rejected) == (SCARCE, SCARCE * 3), status
                assert await work.stock() == 0
            shares = [len(p.log.events("stock_reserved")) for p in processes]
            assert sum(shares) == SCARCE, shares
        finally:
            for process in processes:
                await process.aclose()
            tg.cancel_scope.cancel()
