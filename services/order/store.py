"""The Order service's state: orders and their idempotency keys, in the App's store.

``POST /orders`` writes the order and its ``order.created`` events in one transaction
(:func:`place_order`): the events go to the store's outbox and the App's relay publishes them
after the COMMIT, so an order answered ``202`` is never lost and never announced twice with
different ids. Concurrent requests share COMMITs (the store's group commit).
"""

from __future__ import annotations

import hashlib
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Any, Final

import msgspec

from actorbus.app import ServiceTransaction
from actorbus.stores import MigrationStep, Row, Store, Transaction

from ..contracts import OrderCreated, OrderCreatedV2, OrderLine

__all__ = (
    "CONFIRMED",
    "Announce",
    "ORDER_STEPS",
    "PENDING",
    "REJECTED",
    "IdempotencyConflictError",
    "NewOrder",
    "OrderView",
    "announce_created",
    "get_order",
    "place_order",
    "settle",
)

PENDING: Final = "PENDING"
CONFIRMED: Final = "CONFIRMED"
REJECTED: Final = "REJECTED"

#: The Order service's tables (migration namespace ``order``): append steps, never edit one.
ORDER_STEPS: Final[Sequence[MigrationStep]] = (
    """
    CREATE TABLE orders (
        order_id        TEXT PRIMARY KEY,
        customer_id     TEXT NOT NULL,
        items           TEXT NOT NULL,                -- JSON [{"sku", "qty"}]
        status          TEXT NOT NULL CHECK (status IN ('PENDING', 'CONFIRMED', 'REJECTED')),
        reason          TEXT,
        idempotency_key TEXT UNIQUE,
        request_hash    TEXT,
        created_at      DOUBLE PRECISION NOT NULL,
        updated_at      DOUBLE PRECISION NOT NULL
    )
    """,
)

_lines_decoder = msgspec.json.Decoder(tuple[OrderLine, ...])
_COLUMNS: Final = (
    "order_id, customer_id, items, status, reason, request_hash, created_at, updated_at"
)


class NewOrder(msgspec.Struct, frozen=True):
    """A validated order request: who orders what (lines with distinct SKUs)."""

    customer_id: str
    items: tuple[OrderLine, ...]

    def fingerprint(self) -> str:
        """Return a hash of the request, to tell a retry from a reuse of an idempotency key."""
        return hashlib.sha256(msgspec.json.encode(self)).hexdigest()


class OrderView(msgspec.Struct, rename="camel"):
    """An order as ``GET /orders/{orderId}`` shows it."""

    order_id: str
    status: str
    customer_id: str
    items: tuple[OrderLine, ...]
    reason: str | None
    created_at: datetime
    updated_at: datetime


class IdempotencyConflictError(Exception):
    """An ``Idempotency-Key`` was reused for a different request."""

    def __init__(self, key: str, order_id: str) -> None:
        self.key = key
        self.order_id = order_id
        super().__init__(
            f"Idempotency-Key {key!r} was already used for order {order_id!r} with a different "
            "request; use a new key for a new order"
        )


def _view(row: Row) -> OrderView:
    items: Any = row["items"]
    return OrderView(
        order_id=row["order_id"],
        status=row["status"],
        customer_id=row["customer_id"],
        items=_lines_decoder.decode(items),
        reason=row["reason"],
        created_at=datetime.fromtimestamp(row["created_at"], UTC),
        updated_at=datetime.fromtimestamp(row["updated_at"], UTC),
    )


async def _by_key(tx: Transaction, key: str, fingerprint: str) -> OrderView | None:
    row = await tx.fetchone(f"SELECT {_COLUMNS} FROM orders WHERE idempotency_key = ?", key)
    if row is None:
        return None
    if row["request_hash"] != fingerprint:
        raise IdempotencyConflictError(key, row["order_id"])
    return _view(row)


#: What placing an order sets going, in the transaction that inserts it.
Announce = Callable[[ServiceTransaction, OrderView], Awaitable[None]]


async def announce_created(tx: ServiceTransaction, order: OrderView) -> None:
    """Write the order's ``order.created`` events to the outbox (choreography).

    ``order.created.v2`` for every order; ``order.created`` (v1) as well when the order has one
    line, since v1 cannot express more. Both carry the order id as correlation id.
    """
    await tx.publish(
        OrderCreatedV2(order_id=order.order_id, customer_id=order.customer_id, items=order.items),
        correlation_id=order.order_id,
    )
    if len(order.items) == 1:
        (line,) = order.items
        await tx.publish(
            OrderCreated(order_id=order.order_id, sku=line.sku, qty=line.qty),
            correlation_id=order.order_id,
        )


async def place_order(
    tx: ServiceTransaction,
    new: NewOrder,
    idempotency_key: str | None = None,
    announce: Announce = announce_created,
) -> tuple[OrderView, bool]:
    """Place an order and ``announce`` it in the same transaction, or return a retry's order.

    Args:
        tx: The transaction (``ctx.transaction()``); nothing is kept unless it commits.
        new: The validated request.
        idempotency_key: The request's ``Idempotency-Key``, if any.
        announce: What a new order sets going: its ``order.created`` events by default
            (choreography); the orchestrator starts its saga instead.

    Returns:
        The order, and whether it was created now (``False``: a retried request).

    Raises:
        IdempotencyConflictError: The key was used before for a different request.
    """
    fingerprint = new.fingerprint()
    if idempotency_key is not None:
        known = await _by_key(tx, idempotency_key, fingerprint)
        if known is not None:
            return known, False
    now = time.time()
    order_id = str(uuid.uuid4())
    items = msgspec.json.encode(new.items).decode()
    # ON CONFLICT: a concurrent request with the same key (another process) won the race.
    inserted = await tx.execute(
        "INSERT INTO orders (order_id, customer_id, items, status, idempotency_key, "
        "request_hash, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
        "ON CONFLICT DO NOTHING",
        order_id,
        new.customer_id,
        items,
        PENDING,
        idempotency_key,
        fingerprint,
        now,
        now,
    )
    if not inserted and idempotency_key is not None:
        known = await _by_key(tx, idempotency_key, fingerprint)
        if known is not None:
            return known, False
    if not inserted:  # pragma: no cover - a uuid4 collision
        raise RuntimeError(f"order id {order_id!r} is already taken")
    created = datetime.fromtimestamp(now, UTC)
    view = OrderView(order_id, PENDING, new.customer_id, new.items, None, created, created)
    await announce(tx, view)
    return view, True


async def settle(tx: Transaction, order_id: str, status: str, reason: str | None = None) -> bool:
    """Move a ``PENDING`` order to ``status``; return whether it moved.

    A settled order never changes again: a late or repeated outcome is ignored.
    """
    changed = await tx.execute(
        "UPDATE orders SET status = ?, reason = ?, updated_at = ? "
        "WHERE order_id = ? AND status = 'PENDING'",
        status,
        reason,
        time.time(),
        order_id,
    )
    return changed == 1


async def get_order(store: Store, order_id: str) -> OrderView | None:
    """Return the order ``order_id``, or ``None``."""
    async with store.transaction() as tx:
        row = await tx.fetchone(f"SELECT {_COLUMNS} FROM orders WHERE order_id = ?", order_id)
    return None if row is None else _view(row)
