"""Mailbox: bounded, FIFO, nowait fast path, backpressure, closing, statistics."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import anyio
import pytest

from actorbus.exceptions import ActorStoppedError, ConfigurationError, MailboxFullError
from actorbus.runtime._mailbox import Mailbox

pytestmark = pytest.mark.anyio


@contextmanager
def opened(capacity: int) -> Iterator[Mailbox]:
    mailbox = Mailbox("worker", capacity)
    try:
        yield mailbox
    finally:
        mailbox.dispose()


async def test_fifo_and_statistics() -> None:
    with opened(3) as mailbox:
        mailbox.put_nowait("a")
        await mailbox.put("b")
        stats = mailbox.statistics()
        assert (stats.name, stats.capacity, stats.depth, stats.closed) == ("worker", 3, 2, False)
        assert [mailbox.get_nowait(), mailbox.get_nowait()] == ["a", "b"]
        assert mailbox.statistics().depth == 0
        with pytest.raises(anyio.WouldBlock):
            mailbox.get_nowait()


async def test_full_mailbox_raises_mailbox_full_which_is_would_block() -> None:
    with opened(2) as mailbox:
        mailbox.put_nowait(1)
        mailbox.put_nowait(2)
        with pytest.raises(
            MailboxFullError, match=r"mailbox of actor 'worker' is full \(2 messages\)"
        ):
            mailbox.put_nowait(3)
        with pytest.raises(anyio.WouldBlock):
            mailbox.put_nowait(3)
        assert mailbox.statistics().depth == 2


async def test_put_waits_for_room() -> None:
    with opened(1) as mailbox:
        mailbox.put_nowait(1)
        done = anyio.Event()

        async def sender() -> None:
            await mailbox.put(2)
            done.set()

        async with anyio.create_task_group() as tg:
            tg.start_soon(sender)
            await anyio.wait_all_tasks_blocked()
            assert not done.is_set()
            assert mailbox.statistics().senders_waiting == 1
            assert mailbox.get_nowait() == 1
            with anyio.fail_after(5):
                await done.wait()
        assert mailbox.get_nowait() == 2


async def test_blocked_senders_keep_their_order_and_are_not_overtaken() -> None:
    with opened(1) as mailbox:
        mailbox.put_nowait(0)
        async with anyio.create_task_group() as tg:
            for n in (1, 2, 3):
                tg.start_soon(mailbox.put, n)
                await anyio.wait_all_tasks_blocked()
            assert mailbox.statistics().senders_waiting == 3
            taken = [mailbox.get_nowait()]  # frees a slot: the first blocked sender's 1 moves in
            with pytest.raises(MailboxFullError):
                mailbox.put_nowait(99)  # a late put_nowait does not jump the queue
            while len(taken) < 4:
                taken.append(mailbox.get_nowait())
                await anyio.wait_all_tasks_blocked()
        assert taken == [0, 1, 2, 3]
        assert mailbox.statistics().senders_waiting == 0


async def test_a_cancelled_blocked_sender_sent_nothing() -> None:
    with opened(1) as mailbox:
        mailbox.put_nowait("first")
        async with anyio.create_task_group() as tg:
            tg.start_soon(mailbox.put, "cancelled")
            await anyio.wait_all_tasks_blocked()
            tg.cancel_scope.cancel()
        assert mailbox.statistics().senders_waiting == 0
        assert mailbox.clear() == ["first"]


async def test_wait_wakes_on_put_and_on_interrupt() -> None:
    with opened(4) as mailbox:
        woke: list[str] = []

        async def consumer() -> None:
            await mailbox.wait()
            woke.append("first")
            await mailbox.wait()
            woke.append("second")

        async with anyio.create_task_group() as tg:
            tg.start_soon(consumer)
            await anyio.wait_all_tasks_blocked()
            mailbox.put_nowait("x")
            await anyio.wait_all_tasks_blocked()
            assert woke == ["first"]
            mailbox.interrupt()
        assert woke == ["first", "second"]
        assert mailbox.get_nowait() == "x"  # interrupting loses nothing


async def test_close_refuses_new_messages_and_keeps_queued_ones() -> None:
    with opened(2) as mailbox:
        mailbox.put_nowait("kept")
        mailbox.close()
        with pytest.raises(ActorStoppedError, match="actor 'worker' is not running"):
            mailbox.put_nowait("late")
        with pytest.raises(ActorStoppedError):
            await mailbox.put("late")
        assert mailbox.statistics().closed
        assert mailbox.get_nowait() == "kept"
        with pytest.raises(anyio.EndOfStream):
            mailbox.get_nowait()


async def test_close_fails_blocked_senders() -> None:
    with opened(1) as mailbox:
        mailbox.put_nowait(1)
        errors: list[BaseException] = []

        async def sender() -> None:
            try:
                await mailbox.put(2)
            except ActorStoppedError as exc:
                errors.append(exc)

        async with anyio.create_task_group() as tg:
            tg.start_soon(sender)
            await anyio.wait_all_tasks_blocked()
            mailbox.close()
        assert len(errors) == 1
        assert mailbox.clear() == [1]


@pytest.mark.parametrize("capacity", [0, -1, 1.5, True])
async def test_capacity_must_be_positive_int(capacity: object) -> None:
    with pytest.raises(ConfigurationError, match="mailbox size of actor 'worker' must be"):
        Mailbox("worker", capacity)  # type: ignore[arg-type]
