"""The public test harness: probes, manual clock, fault injection — on the real memory broker."""

from __future__ import annotations

from collections.abc import Sequence

import anyio
import pytest

from actorbus import Event, HandlerContext, RetryPolicy, Service
from actorbus.brokers import OutboundMessage
from actorbus.exceptions import BrokerConnectionError, PublishNackedError, SupervisorGaveUpError
from actorbus.runtime import Backoff
from actorbus.testing import ManualClock, ServiceHarness, capture_logs

pytestmark = pytest.mark.anyio


class Ping(Event, routing_key="harness.ping", version=1):
    n: int


class Pong(Event, routing_key="harness.pong", version=1):
    n: int


def _echo(**kw: object) -> Service:
    svc = Service("echo", exchange="harness.topic", **kw)  # type: ignore[arg-type]

    @svc.on(Ping)
    async def echo(event: Ping, ctx: HandlerContext) -> None:
        ctx.publish(Pong(n=event.n))

    return svc


async def test_wait_for_returns_published_messages_in_order() -> None:
    async with ServiceHarness([_echo()]) as bus:
        for n in range(3):
            await bus.publish(Ping(n=n))
        pongs = await bus.wait_for(Pong, count=3)
        odd = await bus.wait_for(Pong, where=lambda p: p.n % 2 == 1)
        await bus.wait_until_idle()
    assert [p.n for p in pongs] == [0, 1, 2]
    assert [p.n for p in odd] == [1]
    assert [p.decode(Ping).n for p in bus.published_to("harness.ping")] == [0, 1, 2]


class PongV2(Event, routing_key="harness.pong", version=2):
    n: int
    label: str


async def test_wait_for_tells_versions_that_share_a_routing_key_apart() -> None:
    svc = Service("both", exchange="harness.topic")

    @svc.on(Ping)
    async def answer(event: Ping, ctx: HandlerContext) -> None:
        ctx.publish(PongV2(n=event.n, label="new"))
        ctx.publish(Pong(n=event.n))

    async with ServiceHarness([svc]) as bus:
        await bus.publish(Ping(n=4))
        [old] = await bus.wait_for(Pong)
        [new] = await bus.wait_for(PongV2)
        await bus.wait_until_idle()
    assert (type(old), old.n, old.schema_version) == (Pong, 4, 1)
    assert (type(new), new.label, new.schema_version) == (PongV2, "new", 2)
    assert len(bus.published_to("harness.pong")) == 2


async def test_wait_for_times_out_when_nothing_comes() -> None:
    async with ServiceHarness([_echo()], timeout=0.05) as bus:
        with pytest.raises(TimeoutError):
            await bus.wait_for(Pong)


async def test_manual_clock_drives_retry_backoff_without_real_waiting() -> None:
    clock = ManualClock()
    attempts: list[tuple[int, float]] = []
    svc = Service(
        "flaky",
        exchange="harness.topic",
        retry=RetryPolicy(
            max_attempts=3, backoff=Backoff(initial=30.0, factor=2.0, maximum=120.0, jitter=0)
        ),
        retry_delays=(30.0, 60.0),
    )

    @svc.on(Ping)
    async def flaky(event: Ping, ctx: HandlerContext) -> None:
        attempts.append((ctx.attempt, clock.now()))
        if ctx.attempt < 3:
            raise RuntimeError("not yet")
        ctx.publish(Pong(n=event.n))

    async with ServiceHarness([svc], clock=clock) as bus:
        await bus.publish(Ping(n=7))
        await clock.wait_for_sleepers(1)
        await clock.advance(30.0)
        await clock.wait_for_sleepers(1)
        await clock.advance(60.0)
        [pong] = await bus.wait_for(Pong)
    assert pong.n == 7
    assert attempts == [(1, 0.0), (2, 30.0), (3, 90.0)]


async def test_injected_publish_nack_is_retried_and_nothing_is_lost() -> None:
    async with ServiceHarness(
        [
            _echo(
                retry=RetryPolicy(max_attempts=5, backoff=Backoff(0.001, jitter=0)),
                retry_delays=(0.001,),
            )
        ]
    ) as bus:
        bus.faults.fail_next_publishes(1)
        with pytest.raises(PublishNackedError):
            await bus.publish(Ping(n=1))
        await bus.publish(Ping(n=1))
        [pong] = await bus.wait_for(Pong)
        await bus.wait_until_idle()
    assert pong.n == 1


async def test_dropped_connection_refuses_publishes_until_restored() -> None:
    async with ServiceHarness([_echo()]) as bus:
        bus.faults.drop_connection()
        assert not bus.app.is_ready
        with pytest.raises(BrokerConnectionError):
            await bus.publish(Ping(n=2))
        bus.faults.restore()
        assert bus.app.is_ready
        await bus.publish(Ping(n=2))
        assert [p.n for p in await bus.wait_for(Pong)] == [2]


async def test_duplicated_delivery_has_one_effect() -> None:
    seen: list[int] = []
    svc = Service("counter", exchange="harness.topic")

    @svc.on(Ping)
    async def count(event: Ping, ctx: HandlerContext) -> None:
        seen.append(event.n)

    async with ServiceHarness([svc]) as bus:
        bus.faults.duplicate_next_deliveries(1)
        await bus.publish(Ping(n=3))
        await bus.wait_until_idle()
    assert seen == [3]


class _BrokenInbox:
    """An inbox whose store is down: processing fails outside the handler every time."""

    async def lookup(self, consumer: str, message_id: str) -> Sequence[OutboundMessage] | None:
        raise OSError("inbox database is unreachable")

    async def record(
        self, consumer: str, message_id: str, published: Sequence[OutboundMessage]
    ) -> None:  # pragma: no cover - never reached
        raise OSError("inbox database is unreachable")


async def test_a_consumer_failing_for_good_makes_the_app_fail_with_one_clear_line() -> None:
    async def run_until_it_fails() -> None:
        async with ServiceHarness([_echo()], inbox=_BrokenInbox()) as bus:
            await bus.publish(Ping(n=1))
            await anyio.sleep_forever()

    with capture_logs() as logs, pytest.raises(SupervisorGaveUpError, match="echo"):
        await run_until_it_fails()
    gave_up = [e for e in logs if e["event"] == "supervisor_gave_up"]
    assert len(gave_up) == 1
    assert "inbox database is unreachable" in str(gave_up[0]["error"])


async def test_wait_until_idle_waits_out_a_retry_delay() -> None:
    attempts: list[int] = []
    svc = Service(
        "slowretry",
        exchange="harness.topic",
        retry=RetryPolicy(max_attempts=2, backoff=Backoff(initial=0.05, jitter=0)),
        retry_delays=(0.05,),
    )

    @svc.on(Ping)
    async def flaky(event: Ping, ctx: HandlerContext) -> None:
        attempts.append(ctx.attempt)
        if ctx.attempt == 1:
            raise RuntimeError("once")

    async with ServiceHarness([svc]) as bus:
        await bus.publish(Ping(n=1))
        await bus.wait_until_idle()
        assert attempts == [1, 2]
        assert bus.broker.pending_retries == 0
