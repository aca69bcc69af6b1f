"""Sagas on PostgreSQL: the happy path, compensation, and competing processes on one database."""

from __future__ import annotations

import uuid

import anyio
import pytest

from actorbus.brokers.memory import MemoryBroker
from tests.stores._postgres_fixture import postgres_url as postgres_url
from tests.unit.app._saga_cases import (
    Ledger,
    hotel,
    notifier,
    orchestrator,
    payment,
    running,
    start,
    trip_saga,
)

pytestmark = [pytest.mark.postgres, pytest.mark.anyio]


def _schema(url: str) -> str:
    return f"{url}{'&' if '?' in url else '?'}schema=saga_{uuid.uuid4().hex[:8]}"


async def test_happy_path_and_compensation(postgres_url: str) -> None:
    ledger = Ledger()
    saga = trip_saga(ledger)
    svcs = [orchestrator(saga), hotel(ledger), payment(ledger), notifier(ledger)]
    async with running(svcs, _schema(postgres_url)) as app:
        await start(app, saga, "p-1", "alice")
        await start(app, saga, "p-2", "declined-bob")
        assert await ledger.done("p-1") == "completed"
        assert await ledger.done("p-2") == "compensated: payment declined: card refused"
        assert (await saga.get(app.contexts["trips"], "p-2")).status == "compensated"
    assert ledger.calls.count(("cancel", "p-2")) == 1


async def test_competing_processes_move_an_instance_once(postgres_url: str) -> None:
    """Two Apps (two connections, as two processes) expire the same due step at once."""
    url = _schema(postgres_url)
    ledger = Ledger()
    saga_a, saga_b = trip_saga(ledger, timeout=5), trip_saga(ledger, timeout=5)
    async with (
        running([orchestrator(saga_a), hotel(ledger)], url) as a,
        running([orchestrator(saga_b)], url, broker="memory://b") as b,
    ):
        await start(a, saga_a, "p-3", "carol")
        broker = a.broker
        assert isinstance(broker, MemoryBroker)
        with anyio.fail_after(15):  # the step moves, then its command is published: wake on it
            while (await saga_a.get(a.contexts["trips"], "p-3")).step != "charge":
                with anyio.move_on_after(0.05):
                    await broker.wait_for_change()
        before = await saga_a.get(a.contexts["trips"], "p-3")
        later = before.deadline + 1  # type: ignore[operator]
        moved: list[int] = []

        async def expire(app_saga: object, ctx: object) -> None:
            moved.append(await app_saga.expire(ctx, later))  # type: ignore[attr-defined]

        async with anyio.create_task_group() as tg:
            for _ in range(3):
                tg.start_soon(expire, saga_a, a.contexts["trips"])
                tg.start_soon(expire, saga_b, b.contexts["trips"])
        after = await saga_a.get(a.contexts["trips"], "p-3")
    assert sum(moved) == 1
    assert after.version == before.version + 1
