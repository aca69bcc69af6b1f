"""The base of every service's store, and how a service opens, relays and closes it."""

from __future__ import annotations

import sqlite3
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import ClassVar, Generic, Self, TypeVar

from actorbus import Message, Service, ServiceContext

from .db import Database
from .outbox import OUTBOX_SCHEMA, OutboxRelay, migrate_outbox, pending_count

__all__ = ("ServiceStore", "Slot", "attach_store", "store_of")

S = TypeVar("S", bound="ServiceStore")
T = TypeVar("T")


class ServiceStore:
    """A service's state in SQLite, with its inbox, outbox and outbox relay.

    Subclasses extend :attr:`schema` and list the message types they publish in
    :attr:`publishes`.

    Attributes:
        db: The database.
        relay: Publishes the outbox; run by :func:`attach_store` as a background task.
    """

    schema: ClassVar[str] = OUTBOX_SCHEMA
    publishes: ClassVar[tuple[type[Message], ...]] = ()

    def __init__(self, db: Database) -> None:
        self.db = db
        self.relay = OutboxRelay(db, self.publishes)

    @classmethod
    async def open(cls, path: Path) -> Self:
        """Open the store's database at ``path``, creating its tables if needed."""
        store = cls(await Database.open(path, cls.schema))
        await store.db.write(migrate_outbox)
        await store.db.write(store.on_open)
        return store

    def on_open(self, conn: sqlite3.Connection) -> None:
        """Run once per start in a write transaction, after the schema is applied (seeding)."""

    async def close(self) -> None:
        """Close the database."""
        await self.db.close()

    async def wait_until(self, check: Callable[[], Awaitable[bool]]) -> None:
        """Return once ``check()`` is true, re-checking after every committed write."""
        await self.db.changes.wait_for(check)

    async def pending_outbox(self) -> int:
        """Return how many outbox rows are still to be published."""
        return await self.db.read(pending_count)


class Slot(Generic[T]):
    """Holds what a service opens at start-up, for its handlers.

    Handlers get a :class:`~actorbus.HandlerContext`, which does not lead to the service's
    :class:`~actorbus.ServiceContext` (where start-up hooks keep resources), so each Service
    instance closes over its own slot instead.

    Args:
        what: Named in the error raised when the slot is read before start-up.
    """

    def __init__(self, what: str) -> None:
        self._what = what
        self._value: T | None = None

    def set(self, value: T | None) -> None:
        """Fill (or, with ``None``, empty) the slot."""
        self._value = value

    @property
    def value(self) -> T:
        """The value.

        Raises:
            RuntimeError: The service has not been started.
        """
        if self._value is None:
            raise RuntimeError(f"{self._what} is not open: the service has not been started")
        return self._value


def attach_store(
    service: Service,
    store_type: type[S],
    filename: str,
    configure: Callable[[S], None] | None = None,
) -> Slot[S]:
    """Open ``store_type`` at start-up, relay its outbox while running, close it at shut-down.

    The store is also kept in ``ServiceContext.state["store"]`` for HTTP endpoints and tests.

    Args:
        service: The service.
        store_type: Its store class.
        filename: The database file's name under the service's data directory.
        configure: Called with the store once it is open, before anything uses it.

    Returns:
        The slot through which the service's handlers reach the store.
    """
    slot: Slot[S] = Slot(f"the {service.name} store")

    async def open_store(ctx: ServiceContext) -> None:
        store = await store_type.open(ctx.data_dir / filename)
        if configure is not None:
            configure(store)
        slot.set(store)
        ctx.state["store"] = store
        ctx.log.debug("store_opened", path=str(store.db.path))

    async def close_store(ctx: ServiceContext) -> None:
        store = ctx.state.pop("store", None)
        slot.set(None)
        if isinstance(store, ServiceStore):
            await store.close()

    service.startup(open_store)
    service.shutdown(close_store)
    if store_type.publishes:
        service.declare_publishes(*store_type.publishes)

        async def relay(ctx: ServiceContext) -> None:
            await slot.value.relay.run(ctx)

        service.background(relay)
    return slot


def store_of(ctx: ServiceContext, store_type: type[S]) -> S:
    """Return the service's store from ``ctx.state`` (checked), for HTTP endpoints.

    Raises:
        RuntimeError: The service has not been started.
    """
    store = ctx.state.get("store")
    if not isinstance(store, store_type):
        raise RuntimeError(f"the {ctx.service.name} store is not open")
    return store
