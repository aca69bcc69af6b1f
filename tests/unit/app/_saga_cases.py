"""A small trip-booking saga and its participants, shared by the saga tests."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import anyio
import msgspec

from actorbus import App, Command, Event, HandlerContext, Saga, Service
from actorbus.app import ServiceTransaction
from actorbus.testing import ManualClock

EXCHANGE = "trips.topic"


class Trip(msgspec.Struct):
    trip_id: str
    customer: str
    nights: int = 1
    booking: str = ""


class BookHotel(Command, routing_key="trips.book-hotel", version=1):
    trip_id: str
    nights: int


class HotelBooked(Event, routing_key="trips.book-hotel.result", version=1):
    trip_id: str
    booking: str


class CancelHotel(Command, routing_key="trips.cancel-hotel", version=1):
    trip_id: str
    reason: str


class HotelCancelled(Event, routing_key="trips.cancel-hotel.result", version=1):
    trip_id: str


class Charge(Command, routing_key="trips.charge", version=1):
    trip_id: str
    customer: str


class Charged(Event, routing_key="trips.charge.result", version=1):
    trip_id: str
    approved: bool
    reason: str = ""


class Refund(Command, routing_key="trips.refund", version=1):
    trip_id: str
    reason: str


class Refunded(Event, routing_key="trips.refund.result", version=1):
    trip_id: str


class Notify(Command, routing_key="trips.notify", version=1):
    trip_id: str
    customer: str


class Notified(Event, routing_key="trips.notify.result", version=1):
    trip_id: str


class TripRequested(Event, routing_key="trips.requested", version=1):
    trip_id: str
    customer: str


class Ledger:
    """What the participants did, and events to wait on."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []
        self.finished: dict[str, anyio.Event] = {}
        self.outcomes: dict[str, str] = {}

    def event(self, trip_id: str) -> anyio.Event:
        return self.finished.setdefault(trip_id, anyio.Event())

    async def done(self, trip_id: str, timeout: float = 15) -> str:
        with anyio.fail_after(timeout):
            await self.event(trip_id).wait()
        return self.outcomes[trip_id]

    def count(self, kind: str, trip_id: str) -> int:
        return self.calls.count((kind, trip_id))


def trip_saga(ledger: Ledger, *, timeout: float = 10.0, attempts: int = 2) -> Saga[Trip]:
    async def completed(state: Trip, tx: ServiceTransaction) -> None:
        ledger.outcomes[state.trip_id] = "completed"
        ledger.event(state.trip_id).set()

    async def compensated(state: Trip, reason: str, tx: ServiceTransaction) -> None:
        ledger.outcomes[state.trip_id] = f"compensated: {reason}"
        ledger.event(state.trip_id).set()

    return (
        Saga("trip", Trip, timeout=timeout, attempts=attempts,
             on_completed=completed, on_compensated=compensated)
        .step("hotel", send=BookHotel, reply=HotelBooked,
              update=lambda s, r: msgspec.structs.replace(s, booking=r.booking),
              compensate=CancelHotel, compensation_reply=HotelCancelled)
        .step("charge", send=Charge, reply=Charged, ok=lambda r: r.approved,
              why=lambda r: f"payment declined: {r.reason}",
              compensate=Refund, compensation_reply=Refunded)
        .step("notify", send=Notify, reply=Notified, attempts=None)
        .started_by(TripRequested, id=lambda e: e.trip_id,
                    state=lambda e: Trip(trip_id=e.trip_id, customer=e.customer))
    )  # fmt: skip


def hotel(ledger: Ledger) -> Service:
    service = Service("hotel", exchange=EXCHANGE, durable=False, dedupe=False)

    @service.on(BookHotel)
    async def book(command: BookHotel, ctx: HandlerContext) -> None:
        ledger.calls.append(("book", command.trip_id))
        ctx.reply(HotelBooked(trip_id=command.trip_id, booking=f"b-{command.trip_id}"))

    @service.on(CancelHotel)
    async def cancel(command: CancelHotel, ctx: HandlerContext) -> None:
        ledger.calls.append(("cancel", command.trip_id))
        ctx.reply(HotelCancelled(trip_id=command.trip_id))

    return service


def payment(ledger: Ledger, *, silent: bool = False) -> Service:
    service = Service("pay", exchange=EXCHANGE, durable=False, dedupe=False)

    @service.on(Charge)
    async def charge(command: Charge, ctx: HandlerContext) -> None:
        ledger.calls.append(("charge", command.trip_id))
        if silent:
            return
        declined = command.customer.startswith("declined")
        ctx.reply(
            Charged(trip_id=command.trip_id, approved=not declined,
                    reason="card refused" if declined else "")
        )  # fmt: skip

    @service.on(Refund)
    async def refund(command: Refund, ctx: HandlerContext) -> None:
        ledger.calls.append(("refund", command.trip_id))
        ctx.reply(Refunded(trip_id=command.trip_id))

    return service


def notifier(ledger: Ledger) -> Service:
    service = Service("notify", exchange=EXCHANGE, durable=False, dedupe=False)

    @service.on(Notify)
    async def notify(command: Notify, ctx: HandlerContext) -> None:
        ledger.calls.append(("notify", command.trip_id))
        ctx.reply(Notified(trip_id=command.trip_id))

    return service


def orchestrator(saga: Saga[Trip]) -> Service:
    service = Service("trips", exchange=EXCHANGE)
    saga.attach(service)
    return service


@contextlib.asynccontextmanager
async def running(
    services: list[Service], store: str, *, broker: str = "memory://", clock: Any = None
) -> AsyncIterator[App]:
    async with App(services, broker=broker, store=store, exchange=EXCHANGE, clock=clock) as app:
        yield app


async def start(app: App, saga: Saga[Trip], trip_id: str, customer: str) -> None:
    async with app.contexts["trips"].transaction() as tx:
        assert await saga.start(tx, trip_id, Trip(trip_id=trip_id, customer=customer))


__all__ = ("ManualClock",)
