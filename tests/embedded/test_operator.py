"""Operator views on the reference system running on its default embedded broker.

``python -m actorbus run services --data-dir DIR --http 127.0.0.1:0 --metrics 127.0.0.1:0``:
``/readyz`` names the broker file, ``/metrics`` (front door and metrics port) counts what the
system did, and ``python -m actorbus dlq list|show|replay|purge QUEUE --broker
sqlite:///DIR/broker.sqlite3`` run from another process operates on the running system's dead
letters: an undecodable ``order.created.v2`` published with ``actorbus.connect(url)`` is
dead-lettered by Inventory, listed, shown with its reason, replayed (and dead-lettered
again, since it is still undecodable) and purged.
"""

from __future__ import annotations

import json
import sys
import uuid
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

import actorbus
from actorbus.brokers import OutboundMessage
from actorbus.messages import Envelope

from ..faults._harness import REPO, eventually
from ._system import DefaultRun

pytestmark = [pytest.mark.slow, pytest.mark.anyio, pytest.mark.timeout(90)]


async def dlq(*args: str, broker: str) -> tuple[int, Any, str]:
    """``python -m actorbus dlq ARGS --broker URL --json``: exit code, JSON answer, stderr."""
    env = {"PYTHONPATH": str(REPO), "ACTORBUS_LOG_FORMAT": "json", "PATH": "/usr/bin:/bin"}
    with anyio.fail_after(30):
        done = await anyio.run_process(
            [sys.executable, "-m", "actorbus", "dlq", *args, "--broker", broker, "--json"],
            cwd=REPO, env=env, check=False,
        )  # fmt: skip
    out = done.stdout.decode().strip()
    return done.returncode, json.loads(out) if out else None, done.stderr.decode()


def sample(text: str, name: str, **labels: str) -> float:
    """The sum of the Prometheus samples ``name`` whose labels include ``labels``."""
    total = 0.0
    for line in text.splitlines():
        if not line.startswith((name + "{", name + " ")):
            continue
        head, _, value = line.rpartition(" ")
        if all(f'{key}="{val}"' in head for key, val in labels.items()):
            total += float(value)
    return total


async def test_readiness_metrics_and_dlq_on_a_running_system(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    broker_url = f"sqlite:///{data_dir / 'broker.sqlite3'}"
    async with anyio.create_task_group() as tg, httpx.AsyncClient(timeout=10) as client:
        process = DefaultRun(tg, "services", data_dir=data_dir, extra=["--metrics", "127.0.0.1:0"])
        try:
            await process.start()
            url = process.base_url
            metrics_url = str(process.ready_record()["metrics"])

            # Readiness names the embedded broker.
            ready = await client.get(f"{url}/readyz")
            assert ready.status_code == 200, ready.text
            assert ready.json()["status"] == "ready"
            assert ready.json()["broker"] == broker_url

            # An order goes through; both /metrics count it.
            placed = await client.post(f"{url}/orders", json={"sku": "ABC", "qty": 1})
            order = f"{url}/orders/{placed.json()['orderId']}"

            async def confirmed() -> bool:
                return (await client.get(order)).json()["status"] == "CONFIRMED"

            await eventually(confirmed, timeout=20, what="the order to be CONFIRMED")
            for where in (f"{url}/metrics", metrics_url):
                text = (await client.get(where)).text
                assert sample(text, "actorbus_broker_ready") == 1, where
                assert sample(text, "actorbus_app_ready") == 1, where
                assert sample(text, "actorbus_messages_acked_total", queue="inventory.queue") >= 1
                assert sample(text, "actorbus_messages_published_total") >= 1, where

            # A dead letter: an undecodable order.created.v2, from another connection.
            message_id = str(uuid.uuid4())
            async with actorbus.connect(broker_url) as broker:
                envelope = Envelope(
                    message_id, "order.created.v2", "order.created.v2",
                    content_type="application/json",
                )  # fmt: skip
                await broker.publish(
                    OutboundMessage("orders.topic", envelope, b'{"orderId": 42, "items": "x"')
                )
            dead_lettered = '"message_dead_lettered"'
            await process.log.wait_count(dead_lettered, 1)

            code, answer, stderr = await dlq("list", "inventory.queue", broker=broker_url)
            assert code == 0, stderr
            assert answer == {"queue": "inventory.queue.dlq", "messages": 1}

            code, answer, stderr = await dlq("show", "inventory.queue", broker=broker_url)
            assert code == 0, stderr
            [shown] = answer["messages"]
            assert shown["messageId"] == message_id
            assert shown["type"] == "order.created.v2"
            assert shown["reason"] == "decode-error"
            assert "at `$.orderId`" in shown["error"]
            assert shown["originalExchange"] == "orders.topic"
            assert shown["originalRoutingKey"] == "order.created.v2"

            # Replay: back to orders.topic / order.created.v2; still undecodable, so Inventory
            # dead-letters it a second time.
            code, answer, stderr = await dlq(
                "replay", "inventory.queue", "--message-id", message_id, broker=broker_url
            )
            assert code == 0, stderr
            assert len(answer["replayed"]) == 1
            await process.log.wait_count(dead_lettered, 2)
            code, answer, stderr = await dlq("list", "inventory.queue", broker=broker_url)
            assert answer["messages"] == 1

            text = (await client.get(f"{url}/metrics")).text
            assert (
                sample(text, "actorbus_messages_dead_lettered_total", queue="inventory.queue") == 2
            )

            code, answer, stderr = await dlq("purge", "inventory.queue", "--yes", broker=broker_url)
            assert code == 0, stderr
            assert answer == {"queue": "inventory.queue.dlq", "purged": 1}
            code, answer, stderr = await dlq("list", "inventory.queue", broker=broker_url)
            assert answer["messages"] == 0

            # An unknown queue is exit 1, naming it.
            code, answer, stderr = await dlq("list", "nosuch.queue", broker=broker_url)
            assert code == 1
            assert "nosuch.queue" in stderr

            # The system still works after all that.
            assert (await client.get(f"{url}/readyz")).status_code == 200
        finally:
            await process.aclose()
            tg.cancel_scope.cancel()
