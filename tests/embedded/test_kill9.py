"""``kill -9`` of the reference system on its defaults, mid-stream, then a restart.

``python -m actorbus run services --data-dir DIR --http 127.0.0.1:0``, with no broker or
store flag: the durable embedded broker and the SQLite store under the data directory.
Hundreds of orders (SKUs with plenty of stock, a little, none) go in through ``POST /orders``;
a process is killed with SIGKILL while they stream in and started again on the same data
directory. Then, from outside: every order answered ``202`` ends ``CONFIRMED`` or
``REJECTED``, each SKU's stock went down by exactly the confirmed quantities, no
notification was sent twice, and both files of the data directory pass
``PRAGMA integrity_check`` right after the kill (a process killed during a commit leaves
files that open).

The two-process cases add ``run services.inventory`` on the same data directory: two
Inventory consumers of one broker file and one store file, competing for
``inventory.queue``; one of the two processes is killed.
"""

from __future__ import annotations

import time
from pathlib import Path

import anyio
import pytest

from ._system import DefaultRun, MixedOrders, integrity

pytestmark = [pytest.mark.slow, pytest.mark.anyio, pytest.mark.timeout(120)]

#: Orders per case, and after how many accepted ones the kill strikes.
ORDERS = 300
KILL_AT = 120

SETTLED = ('"order_confirmed"', '"order_rejected"')


def check_files(process: DefaultRun) -> None:
    """The data directory's broker and store files open and are intact after a kill."""
    for path in (process.broker_file, process.store_file):
        assert integrity(path) == "ok", path


async def test_kill_9_of_run_services_mid_stream_loses_nothing(tmp_path: Path) -> None:
    started = time.monotonic()
    in_flight: list[int] = []
    async with anyio.create_task_group() as tg:
        process = DefaultRun(tg, "services", data_dir=tmp_path / "data")
        try:
            await process.start()
            ready = process.ready_record()
            assert ready["broker"] == f"sqlite:///{tmp_path / 'data' / 'broker.sqlite3'}"
            assert ready["store"] == f"sqlite:///{tmp_path / 'data' / 'store.sqlite3'}"
            async with MixedOrders(lambda: process.base_url) as orders:
                await orders.set_stock()

                async def crash_and_restart() -> None:
                    settled = sum(process.log.count(text) for text in SETTLED)
                    in_flight.append(len(orders.orders) - settled)
                    await process.kill()
                    check_files(process)
                    await process.start()

                await orders.place_all(ORDERS, concurrency=32, at={KILL_AT: crash_and_restart})
                outcome = await orders.verify()
        finally:
            await process.aclose()
            tg.cancel_scope.cancel()
    print(f"[kill -9, one process] {outcome.line()} in flight at the kill: {in_flight} "
          f"time={time.monotonic() - started:.1f}s")  # fmt: skip
    assert process.starts == 2
    assert in_flight, "the kill never struck"
    assert in_flight[0] > 0, "the kill struck with no order in flight"
    assert outcome.accepted == ORDERS
    assert outcome.problems == [], "\n".join(outcome.problems)
    assert outcome.confirmed, "the mix confirmed nothing"
    assert outcome.rejected, "the mix rejected nothing"


@pytest.mark.parametrize("victim", ["services.inventory", "services"])
async def test_kill_9_of_one_of_two_processes_sharing_the_data_dir(
    tmp_path: Path, victim: str
) -> None:
    """``run services`` plus ``run services.inventory`` on one data directory; kill one."""
    started = time.monotonic()
    data_dir = tmp_path / "data"
    async with anyio.create_task_group() as tg:
        everything = DefaultRun(tg, "services", data_dir=data_dir, name="services")
        inventory = DefaultRun(tg, "services.inventory", data_dir=data_dir, name="inventory")
        killed = everything if victim == "services" else inventory
        try:
            await everything.start()
            await inventory.start()
            # Stock and notifications are read from the process that is not killed.
            survivor = inventory if killed is everything else everything
            async with MixedOrders(
                lambda: everything.base_url, stock_door=lambda: survivor.base_url
            ) as orders:
                await orders.set_stock()

                async def crash_and_restart() -> None:
                    await killed.kill()
                    check_files(killed)
                    await killed.start()

                await orders.place_all(ORDERS, concurrency=32, at={KILL_AT: crash_and_restart})
                outcome = await orders.verify()
        finally:
            await inventory.aclose()
            await everything.aclose()
            tg.cancel_scope.cancel()
    shares = [
        len(p.log.events("stock_reserved")) + len(p.log.events("stock_rejected"))
        for p in (everything, inventory)
    ]
    print(
        f"[kill -9 of {victim}, two processes] {outcome.line()} "
        f"inventory outcomes by process: {shares} time={time.monotonic() - started:.1f}s"
    )
    assert killed.starts == 2
    assert outcome.accepted == ORDERS
    assert outcome.problems == [], "\n".join(outcome.problems)
    assert all(shares), f"one Inventory consumer handled nothing: {shares}"
