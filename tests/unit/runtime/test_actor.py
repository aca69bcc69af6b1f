"""Actors and ActorRef: tell, ask, timeouts, errors to the asker, hooks, stop."""

from __future__ import annotations

from functools import partial
from typing import Any

import anyio
import pytest

from actorbus.exceptions import ActorStoppedError, AskTimeoutError, MailboxFullError
from actorbus.runtime import Actor, ActorSystem

from .helpers import Boom, Journal, Probe, probe

pytestmark = pytest.mark.anyio


async def test_tell_is_processed_in_order_and_counted() -> None:
    journal = Journal()
    async with ActorSystem() as system:
        ref = await system.spawn(probe(journal, "a"), name="a")
        for i in range(5):
            await ref.tell(i)
        await journal.wait_count(1, "a", "receive", 4)
        assert [e[1] for e in journal.of("a") if e[0] == "receive"] == [0, 1, 2, 3, 4]
        stats = ref.statistics()
        assert (stats.processed, stats.failed, stats.depth) == (5, 0, 0)
        assert ref.name == "a"
        assert ref.is_alive


async def test_ask_returns_the_reply() -> None:
    async with ActorSystem() as system:
        ref = await system.spawn(probe(Journal(), "a"), name="a")
        assert await ref.ask("hi") == ("echo", "hi")


async def test_ask_times_out() -> None:
    gate = anyio.Event()
    async with ActorSystem() as system:
        ref = await system.spawn(probe(Journal(), "a", gate=gate), name="a")
        with pytest.raises(AskTimeoutError, match="actor 'a' did not reply within 0 s"):
            await ref.ask("slow", timeout=0)
        gate.set()
        assert await ref.ask("next", timeout=None) == ("echo", "next")


async def test_ask_reraises_the_receive_error_and_the_ref_survives_the_restart() -> None:
    journal = Journal()
    async with ActorSystem() as system:
        ref = await system.spawn(probe(journal, "a"), name="a")
        with pytest.raises(Boom, match="a failed on purpose"):
            await ref.ask("boom")
        assert await ref.ask("after") == ("echo", "after")
        assert journal.count("a", "start") == 2
        assert ref.statistics().failed == 1


async def test_tell_nowait_raises_when_full() -> None:
    gate = anyio.Event()
    journal = Journal()
    async with ActorSystem() as system:
        ref = await system.spawn(probe(journal, "a", gate=gate), name="a", mailbox_size=2)
        ref.tell_nowait("in-flight")
        await journal.wait_count(1, "a", "gated", "in-flight")
        ref.tell_nowait(1)
        ref.tell_nowait(2)
        with pytest.raises(MailboxFullError) as info:
            ref.tell_nowait(3)
        assert isinstance(info.value, anyio.WouldBlock)
        assert ref.statistics().depth == 2
        gate.set()


async def test_tell_waits_for_room_when_full() -> None:
    gate = anyio.Event()
    journal = Journal()
    async with ActorSystem() as system:
        ref = await system.spawn(probe(journal, "a", gate=gate), name="a", mailbox_size=1)
        await ref.tell(0)
        await journal.wait_count(1, "a", "gated", 0)
        await ref.tell(1)
        sent = anyio.Event()

        async def sender() -> None:
            await ref.tell(2)
            sent.set()

        async with anyio.create_task_group() as tg:
            tg.start_soon(sender)
            await anyio.wait_all_tasks_blocked()
            assert not sent.is_set()
            gate.set()
        await journal.wait_count(1, "a", "receive", 2)


async def test_hook_order_over_a_failure_and_a_clean_stop() -> None:
    journal = Journal()
    async with ActorSystem() as system:
        ref = await system.spawn(probe(journal, "a"), name="a")
        await ref.tell("boom")
        await ref.tell("x")
        await journal.wait_count(1, "a", "receive", "x")
        await ref.stop()
    assert journal.of("a") == [
        ("start",),
        ("receive", "boom"),
        ("failure", "boom"),
        ("stop",),
        ("start",),
        ("receive", "x"),  # the queued message survived the restart
        ("stop",),
    ]


async def test_failed_on_start_calls_on_failure_without_message_and_no_on_stop() -> None:
    journal = Journal()
    attempts = 0

    def factory() -> Probe:
        nonlocal attempts
        attempts += 1
        return Probe(journal, "a", fail_start=attempts == 1)

    async with ActorSystem() as system:
        ref = await system.spawn(factory, name="a")  # returns once a start succeeded
        assert await ref.ask("ok") == ("echo", "ok")
    assert journal.of("a")[:3] == [("start",), ("failure", None), ("start",)]


async def test_graceful_stop_drains_then_refuses() -> None:
    gate = anyio.Event()
    journal = Journal()
    async with ActorSystem() as system:
        ref = await system.spawn(probe(journal, "a", gate=gate), name="a")
        for i in range(3):
            await ref.tell(i)
        await journal.wait_count(1, "a", "gated", 0)
        async with anyio.create_task_group() as tg:
            tg.start_soon(ref.stop)
            await anyio.wait_all_tasks_blocked()
            assert not ref.is_alive
            with pytest.raises(ActorStoppedError, match="actor 'a' is not running"):
                await ref.tell("late")
            gate.set()
        received = [e[1] for e in journal.of("a") if e[0] == "receive"]
        assert received == [0, 1, 2]
        assert journal.of("a")[-1] == ("stop",)


async def test_stop_without_drain_fails_queued_asks() -> None:
    gate = anyio.Event()
    journal = Journal()
    results: list[Any] = []
    async with ActorSystem() as system:
        ref = await system.spawn(probe(journal, "a", gate=gate), name="a")
        await ref.tell("in-flight")
        await journal.wait_count(1, "a", "gated", "in-flight")

        async def asker() -> None:
            try:
                await ref.ask("queued")
            except ActorStoppedError as exc:
                results.append(exc)

        async with anyio.create_task_group() as tg:
            tg.start_soon(asker)
            await anyio.wait_all_tasks_blocked()
            tg.start_soon(partial(ref.stop, drain=False))
            await anyio.wait_all_tasks_blocked()
            gate.set()
        assert len(results) == 1
        assert ("receive", "queued") not in journal.of("a")
        assert journal.of("a")[-1] == ("stop",)


async def test_actor_can_stop_itself() -> None:
    journal = Journal()

    class Quitter(Probe):
        async def receive(self, message: Any) -> Any:
            if message == "quit":
                await self.ref.stop()
            return await super().receive(message)

    async with ActorSystem() as system:
        ref = await system.spawn(lambda: Quitter(journal, "q"), name="q")
        await ref.tell("quit")
        await journal.wait_count(1, "q", "stop")
        assert not ref.is_alive
        assert journal.count("q", "start") == 1  # not restarted


async def test_default_receive_and_unattached_ref_explain_themselves() -> None:
    actor = Actor()
    with pytest.raises(RuntimeError, match="has no ActorRef yet"):
        _ = actor.ref
    with pytest.raises(NotImplementedError, match=r"must override Actor\.receive"):
        await actor.receive("x")


async def test_hook_errors_are_logged_and_do_not_block_restart() -> None:
    from structlog.testing import capture_logs

    journal = Journal()

    class BadStop(Probe):
        async def on_stop(self) -> None:
            raise RuntimeError("on_stop broke")

    with capture_logs() as logs:
        async with ActorSystem() as system:
            ref = await system.spawn(lambda: BadStop(journal, "b"), name="b")
            await ref.tell("boom")
            assert await ref.ask("x") == ("echo", "x")
    hooks = [e for e in logs if e["event"] == "actor_hook_failed"]
    assert hooks
    assert hooks[0]["hook"] == "on_stop"
    assert hooks[0]["actor"] == "b"
