"""Per-queue ordering with a standby: ``Service(..., single_active_consumer=True)``.

Two Apps (two connections, as two processes would have) run the same service on one queue
declared with ``x-single-active-consumer``. RabbitMQ delivers to the first consumer only;
the second stands by. When the active one stops (its App leaves: a rolling restart), the
standby takes over, and the messages are still handled in the order they were published:
no message handled by the standby before an earlier one was handled by the leaver.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path

import anyio
import pytest
from anyio.abc import TaskStatus

from actorbus import App, Event, HandlerContext, Service
from actorbus.brokers import QueueType
from actorbus.testing._rabbitmq import RabbitMQNode

from ..faults._fixtures import single_active_handover_keeps_order

pytestmark = [pytest.mark.amqp, pytest.mark.anyio, pytest.mark.timeout(60)]

COUNT = 60
#: The active consumer holds this message until it is being stopped, so that it stops
#: with deliveries in flight (the handler's and those prefetched behind it).
HOLD_AT = 20


class StepTaken(Event, routing_key="sac.step-taken", version=1):
    """One step of an ordered stream (one key: a single queue's order)."""

    n: int


def _service(
    queue: str,
    exchange: str,
    queue_type: QueueType,
    label: str,
    record: Callable[[str, int], None],
    hold: anyio.Event,
) -> Service:
    service = Service(
        "ordered", queue=queue, exchange=exchange, queue_type=queue_type,
        single_active_consumer=True, prefetch=10,
    )  # fmt: skip

    @service.on(StepTaken)
    async def on_step(event: StepTaken, ctx: HandlerContext) -> None:
        record(label, event.n)
        if label == "a" and event.n == HOLD_AT:
            await hold.wait()

    return service


@pytest.mark.parametrize(
    "queue_type",
    [
        "classic",
        pytest.param(
            "quorum",
            marks=pytest.mark.skipif(
                not single_active_handover_keeps_order(),
                reason="needs the AmqpSubscription.cancel change for single-active-consumer "
                "queues (reported diff): a quorum queue activates the standby on basic.cancel "
                "and returns the leaver's prefetched messages behind newer ones",
            ),
        ),
    ],
)
async def test_standby_takes_over_in_order(
    fault_node: RabbitMQNode, vhost_url: str, tmp_path: Path, queue_type: QueueType
) -> None:
    prefix = f"sac-{uuid.uuid4().hex[:8]}"
    queue, exchange = f"{prefix}.queue", f"{prefix}.topic"
    handled: list[tuple[str, int]] = []
    held = anyio.Event()
    release = anyio.Event()
    all_done = anyio.Event()

    def record(label: str, n: int) -> None:
        handled.append((label, n))
        if label == "a" and n == HOLD_AT:
            held.set()
        if len({m for _, m in handled}) == COUNT:
            all_done.set()

    async def run(label: str, stop: anyio.Event, *, task_status: TaskStatus[App]) -> None:
        service = _service(queue, exchange, queue_type, label, record, release)
        app = App(
            [service],
            broker=vhost_url,
            data_dir=tmp_path / label,
            metrics=False,
            drain_timeout=5,
        )
        async with app:
            task_status.started(app)
            await stop.wait()

    vhost = vhost_url.rpartition("/")[2].partition("?")[0]

    async def consumers() -> list[str]:
        """The ``activity_status`` of each consumer of the queue (``rabbitmqctl``)."""
        args = ("list_consumers", "-p", vhost, "--quiet", "--no-table-headers")
        columns = ("queue_name", "activity_status")
        output = await anyio.to_thread.run_sync(lambda: fault_node.ctl(*args, *columns))
        rows = [line.split("\t") for line in output.splitlines() if line.strip()]
        return sorted(status for name, status in rows if name == queue)

    stop_a, stop_b = anyio.Event(), anyio.Event()
    async with anyio.create_task_group() as tg:
        app_a = await tg.start(run, "a", stop_a)  # first consumer: the active one
        await tg.start(run, "b", stop_b)
        assert await consumers() == ["single_active", "waiting"]
        for n in range(1, COUNT + 1):
            await app_a.publish(StepTaken(n=n))
        with anyio.fail_after(20):
            await held.wait()
        assert handled == [("a", n) for n in range(1, HOLD_AT + 1)], "b must stand by"

        # Stop the active App while it holds message HOLD_AT and more prefetched behind it,
        # and let the held handler finish as the stop begins.
        stop_a.set()
        await anyio.wait_all_tasks_blocked()
        release.set()
        with anyio.fail_after(30):
            await all_done.wait()
        stop_b.set()

    numbers = [n for _, n in handled]
    firsts = list(dict.fromkeys(numbers))  # first handling of each message, in time order
    takeover = next(i for i, (label, _) in enumerate(handled) if label == "b")
    summary = f"a: {numbers[:takeover]}, then b: {numbers[takeover:]}"
    assert {label for label, _ in handled[:takeover]} == {"a"}, summary
    assert {label for label, _ in handled[takeover:]} == {"b"}, summary
    assert firsts == list(range(1, COUNT + 1)), f"order broken at the takeover: {summary}"
    print(f"[sac-{queue_type}] {summary}")
