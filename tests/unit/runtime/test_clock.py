"""ManualClock: virtual time that moves only on advance(); SystemClock: the loop's clock."""

from __future__ import annotations

import anyio
import pytest

from actorbus._clock import ManualClock, SystemClock

pytestmark = pytest.mark.anyio


async def test_sleeper_wakes_only_when_time_passes_its_deadline() -> None:
    clock = ManualClock(start=100.0)
    woke: list[float] = []

    async def sleeper() -> None:
        await clock.sleep(2.0)
        woke.append(clock.now())

    async with anyio.create_task_group() as tg:
        tg.start_soon(sleeper)
        await clock.wait_for_sleepers(1)
        assert clock.sleepers == 1
        assert clock.next_deadline == 102.0
        await clock.advance(1.5)
        assert woke == []
        assert clock.now() == 101.5
        await clock.advance(0.5)
        assert woke == [102.0]
    assert clock.sleepers == 0


async def test_advance_wakes_in_deadline_order_and_follows_re_sleeps() -> None:
    clock = ManualClock()
    woke: list[tuple[str, float]] = []

    async def sleeper(name: str, first: float, second: float) -> None:
        await clock.sleep(first)
        woke.append((name, clock.now()))
        await clock.sleep(second)
        woke.append((name, clock.now()))

    async with anyio.create_task_group() as tg:
        tg.start_soon(sleeper, "a", 3.0, 1.0)
        tg.start_soon(sleeper, "b", 1.0, 1.0)
        await clock.wait_for_sleepers(2)
        await clock.advance(10.0)
    assert woke == [("b", 1.0), ("b", 2.0), ("a", 3.0), ("a", 4.0)]
    assert clock.now() == 10.0


async def test_cancelled_sleeper_is_forgotten() -> None:
    clock = ManualClock()
    async with anyio.create_task_group() as tg:
        tg.start_soon(clock.sleep, 5.0)
        await clock.wait_for_sleepers(1)
        tg.cancel_scope.cancel()
    assert clock.sleepers == 0
    assert clock.next_deadline is None


async def test_non_positive_sleep_returns_without_advance() -> None:
    clock = ManualClock()
    with anyio.fail_after(1):
        await clock.sleep(0)
        await clock.sleep(-1)
    assert clock.sleepers == 0


@pytest.mark.parametrize("seconds", [-1.0, float("nan"), float("inf")])
async def test_advance_rejects_bad_amounts(seconds: float) -> None:
    with pytest.raises(ValueError, match="finite, non-negative number of seconds"):
        await ManualClock().advance(seconds)


async def test_system_clock_follows_the_event_loop() -> None:
    clock = SystemClock()
    before = clock.now()
    assert before == pytest.approx(anyio.current_time(), abs=1.0)
    await clock.sleep(0)
    assert clock.now() >= before
