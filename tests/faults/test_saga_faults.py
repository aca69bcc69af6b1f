"""The order saga across crashes, as processes: SIGKILL between two steps, competing orchestrators.

``python -m actorbus run`` processes with ``ORDER_FLOW=orchestration`` share one store and one
broker: the durable embedded broker and SQLite under one data directory (always), or RabbitMQ
and PostgreSQL (marked ``amqp`` and ``postgres``). Payment runs in a process of its own that the
test starts when it wants the sagas to move past ``ChargePayment``, so they wait there.
"""

from __future__ import annotations

import collections
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from anyio.abc import TaskGroup

from actorbus.stores import Store, open_store

from ..scaleout._hosts import shared_store
from ..stores._postgres_fixture import postgres_url
from ._harness import ServicesProcess, eventually

__all__ = ("postgres_url",)

pytestmark = pytest.mark.anyio

QTY = 3
CUSTOMERS = ("alice", "bob", "declined-dave", "declined-erin")

Setup = tuple[str, str]  # (broker URL, store URL)


@pytest.fixture(
    params=[
        pytest.param("embedded", id="embedded-sqlite"),
        pytest.param("amqp", id="amqp-postgres", marks=[pytest.mark.amqp, pytest.mark.postgres]),
    ]
)
def setup(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Setup]:
    """The broker and store the processes share."""
    if request.param == "embedded":
        data = tmp_path / "data"
        yield (
            f"sqlite:///{data.as_posix()}/broker.sqlite3",
            f"sqlite:///{data.as_posix()}/store.sqlite3",
        )
    else:
        yield (
            request.getfixturevalue("vhost_url"),
            shared_store(request.getfixturevalue("postgres_url")),
        )


class Deployment:
    """Processes of the orchestrated flow on one broker and one store."""

    def __init__(self, tg: TaskGroup, tmp_path: Path, setup: Setup, **env: str) -> None:
        self.tg = tg
        self.tmp_path = tmp_path
        self.broker, self.store_url = setup
        self.env = {"ORDER_FLOW": "orchestration", "ACTORBUS_STORE": self.store_url, **env}
        self.processes: list[ServicesProcess] = []

    def process(self, target: str, name: str, *, http: bool = True) -> ServicesProcess:
        """A process of ``target`` with a data directory of its own (its "host")."""
        process = ServicesProcess(
            self.tg,
            target,
            broker=self.broker,
            # The embedded broker's file names the data directory; the rest is per process.
            data_dir=self.tmp_path / "data"
            if self.broker.startswith("sqlite")
            else (self.tmp_path / name / "data"),
            http=http,
            env=self.env,
            name=name,
        )
        self.processes.append(process)
        return process

    async def aclose(self) -> None:
        for process in self.processes:
            await process.aclose()


@asynccontextmanager
async def deployment(tmp_path: Path, setup: Setup, **env: str) -> AsyncIterator[Deployment]:
    async with anyio.create_task_group() as tg:
        deployed = Deployment(tg, tmp_path, setup, **env)
        try:
            yield deployed
        finally:
            with anyio.CancelScope(shield=True):
                await deployed.aclose()
            tg.cancel_scope.cancel()


async def _place(front_door: str, customer: str) -> str:
    async with httpx.AsyncClient(base_url=front_door) as http:
        body = {"sku": "ABC", "qty": QTY, "customerId": customer}
        response = await http.post("/orders", json=body)
    assert response.status_code == 202, response.text
    return str(response.json()["orderId"])


async def _orders(front_door: str, ids: list[str]) -> dict[str, dict[str, Any]]:
    async with httpx.AsyncClient(base_url=front_door) as http:
        return {i: (await http.get(f"/orders/{i}")).json() for i in ids}


async def _stock(front_door: str) -> int:
    async with httpx.AsyncClient(base_url=front_door) as http:
        return int((await http.get("/stock/ABC")).json()["available"])


async def _rows(store: Store, sql: str, *args: object) -> list[tuple[Any, ...]]:
    async with store.transaction() as tx:
        return [tuple(row) for row in await tx.fetchall(sql, *args)]


async def _history(store: Store, id: str) -> list[tuple[str, str, str]]:
    rows = await _rows(
        store,
        "SELECT step, event, detail FROM actorbus_saga_history WHERE saga = 'order' AND id = ?"
        " ORDER BY seq",
        id,
    )
    return [(str(s), str(e), str(d)) for s, e, d in rows]


async def _steps(store: Store) -> dict[str, tuple[str, int]]:
    rows = await _rows(store, "SELECT id, status, step FROM actorbus_saga WHERE saga = 'order'")
    return {str(i): (str(status), int(step)) for i, status, step in rows}


def _per_order(process: ServicesProcess, event: str) -> collections.Counter[str]:
    return collections.Counter(str(e.get("order_id")) for e in process.log.events(event))


async def test_sigkill_between_two_steps_finishes_each_saga_once(
    tmp_path: Path, setup: Setup
) -> None:
    # A long step timeout: nothing is sent twice by a timeout, so every count below is exact.
    async with deployment(tmp_path, setup, ORDER_STEP_TIMEOUT="300") as deployed:
        payment = deployed.process("services.payment", "payment", http=False)
        participants = deployed.process("tests.faults._saga_targets:participants", "participants")
        orchestrator = deployed.process("services.orchestrator", "orchestrator")
        await payment.start()  # declares payment.queue; then Payment is "down"
        await payment.terminate()  # (may be -15: "ready" is logged before SIGTERM is handled)
        await participants.start()
        await orchestrator.start()

        async with open_store(deployed.store_url) as store:
            ids = [await _place(orchestrator.base_url, c) for c in CUSTOMERS]

            async def all_at_charge() -> bool:
                steps = await _steps(store)
                return all(steps.get(i) == ("running", 1) for i in ids)

            await eventually(all_at_charge, timeout=30, what="every saga waiting at charge")
            await orchestrator.kill()  # SIGKILL, between ReserveStock and ChargePayment's reply
            assert await _stock(participants.base_url) == 100 - QTY * len(ids)

            await orchestrator.start()
            await payment.start()

            async def settled() -> bool:
                orders = await _orders(orchestrator.base_url, ids)
                return all(o["status"] != "PENDING" for o in orders.values())

            await eventually(settled, timeout=60, what="every order settled")
            orders = await _orders(orchestrator.base_url, ids)
            confirmed = [i for i, c in zip(ids, CUSTOMERS, strict=True) if "declined" not in c]
            declined = [i for i in ids if i not in confirmed]
            assert {i: orders[i]["status"] for i in ids} == {
                **dict.fromkeys(confirmed, "CONFIRMED"),
                **dict.fromkeys(declined, "REJECTED"),
            }
            assert all(orders[i]["reason"].startswith("payment declined") for i in declined)
            # Stock: reserved once per order, released once per declined order.
            assert await _stock(participants.base_url) == 100 - QTY * len(confirmed)
            payments = dict(await _rows(store, "SELECT order_id, status FROM payments"))
            assert payments == {
                **dict.fromkeys(confirmed, "CHARGED"),
                **dict.fromkeys(declined, "DECLINED"),
            }
            for id in ids:
                events = collections.Counter((s, e) for s, e, _ in await _history(store, id))
                assert events["charge", "sent"] == 1, (id, events)
                assert events["charge", "replied"] == 1, (id, events)
                if id in confirmed:
                    assert events["confirm", "sent"] == 1, (id, events)
                    assert events["confirm", "completed"] == 1, (id, events)
                else:
                    assert events["reserve", "compensating"] == 1, (id, events)
                    assert events["charge", "compensating"] == 0, (id, events)  # no refund
            settled_ = await _steps(store)
            assert {settled_[i][0] for i in confirmed} == {"completed"}
            assert {settled_[i][0] for i in declined} == {"compensated"}

        # Each effect once, as the participants saw it (their inbox drops redeliveries).
        assert _per_order(payment, "payment_charged") == dict.fromkeys(confirmed, 1)
        assert _per_order(payment, "payment_declined") == dict.fromkeys(declined, 1)
        assert _per_order(participants, "stock_released") == dict.fromkeys(declined, 1)
        assert _per_order(participants, "stock_reserved") == dict.fromkeys(ids, 1)
        assert _per_order(orchestrator, "order_confirmed") == dict.fromkeys(confirmed, 1)
        assert _per_order(orchestrator, "order_rejected") == dict.fromkeys(declined, 1)


@pytest.mark.amqp
@pytest.mark.postgres
async def test_competing_orchestrators_never_run_an_instance_twice(
    tmp_path: Path, vhost_url: str, postgres_url: str
) -> None:
    # Short timeouts while Payment is down: both orchestrators' deadline watchers race for the
    # same expired steps, and the replies are shared between them (competing consumers).
    setup = (vhost_url, shared_store(postgres_url))
    env = {"ORDER_STEP_TIMEOUT": "0.5", "ORDER_STEP_ATTEMPTS": "1000"}
    async with deployment(tmp_path, setup, **env) as deployed:
        payment = deployed.process("services.payment", "payment", http=False)
        participants = deployed.process("tests.faults._saga_targets:participants", "participants")
        first = deployed.process("services.orchestrator", "orchestrator-1")
        second = deployed.process("services.orchestrator", "orchestrator-2")
        await payment.start()
        await payment.terminate()  # (may be -15: "ready" is logged before SIGTERM is handled)
        await participants.start()
        await first.start()
        await second.start()

        async with open_store(deployed.store_url) as store:
            customers = [f"{'declined-' if n % 4 == 3 else ''}c{n}" for n in range(16)]
            doors = [first.base_url, second.base_url]
            ids = [await _place(doors[n % 2], c) for n, c in enumerate(customers)]

            async def timeouts_raced() -> bool:
                rows = await _rows(
                    store,
                    "SELECT count(*) FROM actorbus_saga_history WHERE saga = 'order'"
                    " AND step = 'charge' AND event = 'timed_out'",
                )
                return int(rows[0][0]) >= 3 * len(ids)

            await eventually(timeouts_raced, timeout=60, what="three timeouts per saga")
            await payment.start()

            async def settled() -> bool:
                orders = await _orders(first.base_url, ids)
                return all(o["status"] != "PENDING" for o in orders.values())

            await eventually(settled, timeout=90, what="every order settled")
            confirmed = [i for i, c in zip(ids, customers, strict=True) if "declined" not in c]
            declined = [i for i in ids if i not in confirmed]
            for id in ids:
                history = await _history(store, id)
                timed_out = [d for s, e, d in history if (s, e) == ("charge", "timed_out")]
                # One timeout per attempt: no attempt was expired by both processes.
                assert len(timed_out) == len(set(timed_out)), (id, timed_out)
                events = collections.Counter((s, e) for s, e, _ in history)
                assert events["charge", "sent"] == len(timed_out) + 1, (id, events)
                assert events["charge", "replied"] == 1, (id, events)
                finished = "completed" if id in confirmed else "compensated"
                assert sum(n for (_, e), n in events.items() if e == finished) == 1, (id, events)
            assert await _stock(participants.base_url) == 100 - QTY * len(confirmed)
            payments = dict(await _rows(store, "SELECT order_id, status FROM payments"))
            assert payments == {
                **dict.fromkeys(confirmed, "CHARGED"),
                **dict.fromkeys(declined, "DECLINED"),
            }
        settled_logs = _per_order(first, "order_confirmed") + _per_order(second, "order_confirmed")
        assert settled_logs == dict.fromkeys(confirmed, 1)
        # A compensation whose reply is later than the 0.5 s step timeout is sent again (a new
        # command): Inventory answers it, but gives the stock back only once.
        released = collections.Counter(
            str(e.get("order_id"))
            for e in participants.log.events("stock_released")
            if e.get("released") is True
        )
        assert released == dict.fromkeys(declined, 1)


async def test_an_absent_payment_times_out_and_compensates(tmp_path: Path) -> None:
    data = tmp_path / "data"
    setup = (f"sqlite:///{data.as_posix()}/broker.sqlite3", f"sqlite:///{data.as_posix()}/s.db")
    env = {"ORDER_STEP_TIMEOUT": "0.5", "ORDER_STEP_ATTEMPTS": "2"}
    async with deployment(tmp_path, setup, **env) as deployed:
        # Payment is down: ChargePayment is never answered; after two attempts the saga
        # compensates, starting with RefundPayment (the charge may have taken effect), which
        # it asks for until Payment is back and answers.
        participants = deployed.process("tests.faults._saga_targets:participants", "participants")
        orchestrator = deployed.process("services.orchestrator", "orchestrator")
        payment = deployed.process("services.payment", "payment", http=False)
        await payment.start()
        await payment.terminate()  # (may be -15: "ready" is logged before SIGTERM is handled)
        await participants.start()
        await orchestrator.start()
        order_id = await _place(orchestrator.base_url, "carol")
        async with open_store(deployed.store_url) as store:

            async def compensating() -> bool:
                return (await _steps(store)).get(order_id) == ("compensating", 1)

            await eventually(compensating, timeout=30, what="the charge step given up")
            await payment.start()

            async def rejected() -> bool:
                order = (await _orders(orchestrator.base_url, [order_id]))[order_id]
                return bool(order["status"] == "REJECTED")

            await eventually(rejected, timeout=30, what="the order rejected")
            order = (await _orders(orchestrator.base_url, [order_id]))[order_id]
            assert (
                "ChargePayment (payment.charge) got no reply within 0.5 s (2 attempts)"
                in (order["reason"])
            )
            assert await _stock(participants.base_url) == 100
            payments = dict(await _rows(store, "SELECT order_id, status FROM payments"))
            # Whatever Payment handles first, no money is kept: the charges are refunded, or
            # the refund's tombstone declines them.
            assert payments[order_id] in ("CANCELLED", "REFUNDED")
