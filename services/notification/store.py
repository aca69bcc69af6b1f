"""The Notification service's state: what the customer was told, in the App's store.

A notification is keyed by the ``eventId`` of the message that caused it: with the inbox record
of that message in the same transaction, a redelivery never tells the customer twice.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Final

import msgspec

from actorbus.stores import MigrationStep, Store, Transaction

__all__ = ("NOTIFICATION_STEPS", "NotificationView", "list_notifications", "record")

#: Notification's tables (migration namespace ``notification``): append steps, never edit one.
NOTIFICATION_STEPS: Final[Sequence[MigrationStep]] = (
    """
    CREATE TABLE notifications (
        caused_by   TEXT PRIMARY KEY,             -- eventId of the message that caused it
        order_id    TEXT NOT NULL,
        kind        TEXT NOT NULL,
        text        TEXT NOT NULL,
        created_at  DOUBLE PRECISION NOT NULL
    );
    CREATE INDEX notifications_by_order ON notifications (order_id, created_at)
    """,
)


class NotificationView(msgspec.Struct, rename="camel"):
    """A notification as ``GET /notifications`` shows it."""

    order_id: str
    kind: str
    text: str
    sent_at: datetime


async def record(tx: Transaction, order_id: str, kind: str, text: str, caused_by: str) -> None:
    """Record that the notification ``kind`` was sent for ``order_id``."""
    await tx.execute(
        "INSERT INTO notifications (caused_by, order_id, kind, text, created_at) "
        "VALUES (?, ?, ?, ?, ?)",
        caused_by,
        order_id,
        kind,
        text,
        time.time(),
    )


async def list_notifications(
    store: Store, order_id: str | None = None, limit: int = 100
) -> list[NotificationView]:
    """Return the notifications of ``order_id`` (oldest first), or the latest ``limit``."""
    columns = "order_id, kind, text, created_at"
    async with store.transaction() as tx:
        if order_id is None:
            rows = await tx.fetchall(
                f"SELECT {columns} FROM notifications ORDER BY created_at DESC, caused_by LIMIT ?",
                limit,
            )
            rows.reverse()
        else:
            rows = await tx.fetchall(
                f"SELECT {columns} FROM notifications WHERE order_id = ? "
                "ORDER BY created_at, caused_by LIMIT ?",
                order_id,
                limit,
            )
    return [
        NotificationView(
            order_id=row["order_id"],
            kind=row["kind"],
            text=row["text"],
            sent_at=datetime.fromtimestamp(row["created_at"], UTC),
        )
        for row in rows
    ]
