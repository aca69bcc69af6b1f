"""Sagas on the memory broker and SQLite: steps, compensation, timeouts, restart, concurrency."""

from __future__ import annotations

from pathlib import Path

import anyio
import msgspec
import pytest

from actorbus import App, Saga
from actorbus.brokers.memory import MemoryBroker
from actorbus.exceptions import ConfigurationError, SagaNotFoundError
from actorbus.testing import ManualClock

from ._saga_cases import (
    BookHotel,
    Ledger,
    Trip,
    TripRequested,
    hotel,
    notifier,
    orchestrator,
    payment,
    running,
    start,
    trip_saga,
)

pytestmark = pytest.mark.anyio


def _store(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/saga.sqlite3"


async def test_happy_path(tmp_path: Path) -> None:
    ledger = Ledger()
    saga = trip_saga(ledger)
    svcs = [orchestrator(saga), hotel(ledger), payment(ledger), notifier(ledger)]
    async with running(svcs, _store(tmp_path)) as app:
        await start(app, saga, "t-1", "alice")
        assert await ledger.done("t-1") == "completed"
        instance = await saga.get(app.contexts["trips"], "t-1")
    assert instance.status == "completed"
    assert instance.step == "notify"
    assert instance.state.booking == "b-t-1"  # folded in by the step's update
    assert instance.finished_at is not None
    events = [(h.step, h.event, h.detail) for h in instance.history]
    assert events == [
        ("hotel", "started", ""),
        ("hotel", "sent", "trips.book-hotel"),
        ("hotel", "replied", "trips.book-hotel.result"),
        ("charge", "sent", "trips.charge"),
        ("charge", "replied", "trips.charge.result"),
        ("notify", "sent", "trips.notify"),
        ("notify", "replied", "trips.notify.result"),
        ("notify", "completed", ""),
    ]
    assert [h.at for h in instance.history] == sorted(h.at for h in instance.history)
    assert ledger.calls == [("book", "t-1"), ("charge", "t-1"), ("notify", "t-1")]


async def test_a_declined_payment_compensates_in_reverse_order(tmp_path: Path) -> None:
    ledger = Ledger()
    saga = trip_saga(ledger)
    svcs = [orchestrator(saga), hotel(ledger), payment(ledger), notifier(ledger)]
    async with running(svcs, _store(tmp_path)) as app:
        await start(app, saga, "t-2", "declined-bob")
        assert await ledger.done("t-2") == "compensated: payment declined: card refused"
        instance = await saga.get(app.contexts["trips"], "t-2")
    assert instance.status == "compensated"
    assert ledger.calls == [("book", "t-2"), ("charge", "t-2"), ("cancel", "t-2")]
    assert ("charge", "failed", "payment declined: card refused") in [
        (h.step, h.event, h.detail) for h in instance.history
    ]


async def test_a_step_timeout_compensates_on_the_clock(tmp_path: Path) -> None:
    """Payment never answers: Charge is sent twice (attempts=2), then refunded, then the
    hotel cancelled, last first. The ManualClock drives every deadline."""
    ledger = Ledger()
    clock = ManualClock()
    saga = trip_saga(ledger, timeout=5, attempts=2)
    svcs = [orchestrator(saga), hotel(ledger), payment(ledger, silent=True), notifier(ledger)]
    async with running(svcs, _store(tmp_path), clock=clock) as app:
        await start(app, saga, "t-3", "carol")
        with anyio.fail_after(15):
            while ledger.count("charge", "t-3") < 1:
                await clock.advance(0.5)
            for _ in range(40):
                if ledger.finished.get("t-3") and ledger.finished["t-3"].is_set():
                    break
                await clock.advance(1)
                await anyio.wait_all_tasks_blocked()
        outcome = await ledger.done("t-3")
        instance = await saga.get(app.contexts["trips"], "t-3")
    assert outcome == "compensated: Charge (trips.charge) got no reply within 5 s (2 attempts)"
    assert ledger.count("charge", "t-3") == 2
    assert [c for c, t in ledger.calls if t == "t-3"][-2:] == ["refund", "cancel"]
    assert instance.status == "compensated"


async def test_an_event_starts_an_instance_once(tmp_path: Path) -> None:
    ledger = Ledger()
    saga = trip_saga(ledger)
    svcs = [orchestrator(saga), hotel(ledger), payment(ledger), notifier(ledger)]
    async with running(svcs, _store(tmp_path)) as app:
        await app.publish(TripRequested(trip_id="t-4", customer="dan"))
        await app.publish(TripRequested(trip_id="t-4", customer="dan"))
        assert await ledger.done("t-4") == "completed"
        assert await saga.count(app.store) == 1  # type: ignore[arg-type]
    assert ledger.count("book", "t-4") == 1


async def test_restart_between_two_steps_finishes_once(tmp_path: Path) -> None:
    ledger = Ledger()
    saga = trip_saga(ledger, timeout=0.3, attempts=1000)
    # First life: no payment service; the saga stands at "charge".
    async with running([orchestrator(saga), hotel(ledger)], _store(tmp_path)) as app:
        await start(app, saga, "t-5", "erin")
        await _until_step(saga, app, "t-5", "charge")
    # Second life, a new App on the same store: it finishes, each step run once.
    saga2 = trip_saga(ledger, timeout=0.3, attempts=1000)
    svcs = [orchestrator(saga2), hotel(ledger), payment(ledger), notifier(ledger)]
    async with running(svcs, _store(tmp_path)) as app:
        assert await ledger.done("t-5") == "completed"
        instance = await saga2.get(app.contexts["trips"], "t-5")
    assert instance.status == "completed"
    assert ledger.count("book", "t-5") == 1
    assert ledger.count("notify", "t-5") == 1
    replies = [h for h in instance.history if h.event == "replied" and h.step == "charge"]
    assert len(replies) == 1


async def test_two_processes_never_move_one_instance_twice(tmp_path: Path) -> None:
    """Two orchestrators on one store expire the same due step at once: one wins."""
    ledger = Ledger()
    clock = ManualClock()
    saga = trip_saga(ledger, timeout=5, attempts=3)
    store = _store(tmp_path)
    async with running([orchestrator(saga), hotel(ledger)], store, clock=clock) as app:
        await start(app, saga, "t-6", "fay")
        await _until_step(saga, app, "t-6", "charge")
        ctx = app.contexts["trips"]
        before = await saga.get(ctx, "t-6")
        later = before.deadline + 1  # type: ignore[operator]
        moved: list[int] = []

        async def expire() -> None:
            moved.append(await saga.expire(ctx, later))

        async with anyio.create_task_group() as tg:
            for _ in range(4):
                tg.start_soon(expire)
        after = await saga.get(ctx, "t-6")
    assert sum(moved) == 1
    assert after.attempt == before.attempt + 1
    assert after.version == before.version + 1


async def test_unknown_instances_and_bad_declarations(tmp_path: Path) -> None:
    ledger = Ledger()
    saga = trip_saga(ledger)
    async with running([orchestrator(saga)], _store(tmp_path)) as app:
        with pytest.raises(SagaNotFoundError, match="saga 'trip' has no instance 'nope'"):
            await saga.get(app.contexts["trips"], "nope")
    with pytest.raises(ConfigurationError, match=r"BookHotel needs \['nights'\]"):
        Saga("x", _Thin).step("a", send=BookHotel, reply=TripRequested)


class _Thin(msgspec.Struct):
    trip_id: str


async def _until_step(saga: Saga[Trip], app: App, trip_id: str, step: str) -> None:
    """Wait for ``step``, re-reading the store whenever the memory broker's state changes.

    A step moves in a transaction whose command is published after its COMMIT: the change
    that wakes us comes after the new step is visible (the short backstop covers a change
    between the read and the wait).
    """
    broker = app.broker
    assert isinstance(broker, MemoryBroker)
    with anyio.fail_after(15):
        while (await saga.get(app.contexts["trips"], trip_id)).step != step:
            with anyio.move_on_after(0.05):
                await broker.wait_for_change()
