"""Helpers for the console's tests: the reference system with a console, and a dead letter."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio

import services
from actorbus import App
from actorbus.describe import ConsoleModel
from actorbus.messages import Envelope, OutboundMessage

TOKEN = "console-test-token"
WAIT = 20.0


@contextlib.asynccontextmanager
async def console_app(
    data_dir: Path,
    *,
    http: str | None = None,
    broker: str = "memory://",
    flow: str = "choreography",
    **options: Any,
) -> AsyncIterator[App]:
    """Run the reference system (choreography, or ``flow``) on ``broker`` with the console."""
    svcs = services.services(flow)
    options.setdefault("admin_token", TOKEN)
    options.setdefault("system_model", ConsoleModel(svcs))
    options.setdefault("store", f"sqlite:///{(data_dir / 'store.sqlite3').as_posix()}")
    async with App(svcs, broker=broker, data_dir=data_dir, http=http, **options) as app:
        yield app


async def publish_undecodable(app: App) -> str:
    """Publish an ``order.created.v2`` that cannot be decoded; return its message id.

    Inventory dead-letters it at once (reason ``decode-error``) into ``inventory.queue.dlq``.
    """
    message_id = f"bad-{uuid.uuid4().hex[:8]}"
    envelope = Envelope(
        message_id,
        "order.created.v2",
        "order.created.v2",
        correlation_id=f"flow-{message_id}",
        content_type="application/json",
        headers={},
    )
    await app.broker.publish(OutboundMessage("orders.topic", envelope, b'{"orderId": 1,'))
    return message_id


async def wait_for_dead_letters(app: App, queue: str, count: int) -> None:
    """Wait until ``queue``'s dead-letter queue holds ``count`` messages."""
    with anyio.fail_after(WAIT):
        while await app.broker.queue_depth(f"{queue}.dlq") != count:  # noqa: ASYNC110
            await anyio.sleep(0.02)  # the broker has no "depth changed" event to wait on
