"""The Notification service's state: the notifications sent, per order."""

from __future__ import annotations

import sqlite3
import time
from datetime import UTC, datetime
from typing import ClassVar

import msgspec

from ..common.store import ServiceStore

__all__ = ("NOTIFICATION_SCHEMA", "NotificationStore", "NotificationView")

NOTIFICATION_SCHEMA = """
CREATE TABLE IF NOT EXISTS notifications (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    order_id    TEXT NOT NULL,
    kind        TEXT NOT NULL,
    text        TEXT NOT NULL,
    caused_by   TEXT NOT NULL,                -- eventId of the message that caused it
    created_at  REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS notifications_by_order ON notifications (order_id, id);
"""


class NotificationView(msgspec.Struct, rename="camel"):
    """A notification as ``GET /notifications`` shows it."""

    order_id: str
    kind: str
    text: str
    sent_at: datetime


class NotificationStore(ServiceStore):
    """Notifications, recorded with the inbox row of the message that caused them."""

    schema: ClassVar[str] = ServiceStore.schema + NOTIFICATION_SCHEMA

    @staticmethod
    def record(
        conn: sqlite3.Connection, order_id: str, kind: str, text: str, caused_by: str
    ) -> None:
        """Record that the notification ``kind`` was sent for ``order_id`` (in a transaction)."""
        conn.execute(
            "INSERT INTO notifications (order_id, kind, text, caused_by, created_at) "
            "VALUES (?, ?, ?, ?, ?)",
            (order_id, kind, text, caused_by, time.time()),
        )

    async def list(self, order_id: str | None = None, limit: int = 100) -> list[NotificationView]:
        """Return the notifications of ``order_id`` (oldest first), or the latest ``limit``."""

        def query(conn: sqlite3.Connection) -> list[NotificationView]:
            if order_id is None:
                rows = conn.execute(
                    "SELECT * FROM (SELECT * FROM notifications ORDER BY id DESC LIMIT ?) "
                    "ORDER BY id",
                    (limit,),
                ).fetchall()
            else:
                rows = conn.execute(
                    "SELECT * FROM notifications WHERE order_id = ? ORDER BY id LIMIT ?",
                    (order_id, limit),
                ).fetchall()
            return [
                NotificationView(
                    order_id=row["order_id"],
                    kind=row["kind"],
                    text=row["text"],
                    sent_at=datetime.fromtimestamp(row["created_at"], UTC),
                )
                for row in rows
            ]

        return await self.db.read(query)
