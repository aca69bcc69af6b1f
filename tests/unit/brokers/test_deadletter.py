"""Dead-letter operations over the broker protocol, on both embedded brokers."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest

from actorbus.brokers import (
    DEFAULT_EXCHANGE,
    XH_ORIGINAL_EXCHANGE,
    XH_ORIGINAL_ROUTING_KEY,
    XH_REASON,
    Binding,
    Broker,
    ExchangeSpec,
    OutboundMessage,
    QueueSpec,
    Topology,
    connect,
    replay_dead_letters,
)
from actorbus.messages import Envelope
from actorbus.testing import capture_logs

pytestmark = pytest.mark.anyio


@pytest.fixture(params=["memory", "sqlite"])
async def broker(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Broker]:
    if request.param == "memory":
        url = f"memory://{uuid.uuid4().hex}"
    else:
        url = f"sqlite:///{tmp_path / 'broker.sqlite3'}"
    async with connect(url) as opened:
        yield opened


async def test_replay_all_replays_only_what_waited_when_it_started(broker: Broker) -> None:
    """A replayed copy that lands in the dead-letter queue again is not replayed again.

    Here the origin of the dead letters routes straight back into their dead-letter queue (as
    a consumer that fails at once would, faster). A replay that read on until the queue was
    empty would take up its own copies (which a real consumer's failure would have given an
    origin again: a loop without end); these have none, so it would skip them with a
    ``replay_skipped`` warning.
    """
    await broker.declare(
        Topology(
            exchanges=(ExchangeSpec("loop.topic"),),
            queues=(QueueSpec("loop.queue"),),
            bindings=(Binding("loop.topic", "loop.queue.dlq", "loop.back"),),
        )
    )
    for i in range(3):
        headers = {
            XH_ORIGINAL_EXCHANGE: "loop.topic",
            XH_ORIGINAL_ROUTING_KEY: "loop.back",
            XH_REASON: "handler-error",
        }
        envelope = Envelope(f"m-{i}", "loop.back", "loop.queue.dlq", headers=headers)
        await broker.publish(OutboundMessage(DEFAULT_EXCHANGE, envelope, b"{}"))
    with anyio.fail_after(10), capture_logs() as logs:
        replayed = await replay_dead_letters(broker, "loop.queue")
    assert [e for e in logs if e["event"] == "replay_skipped"] == []
    assert replayed == ["m-0", "m-1", "m-2"]
    assert await broker.queue_depth("loop.queue.dlq") == 3  # the copies, for the next replay
