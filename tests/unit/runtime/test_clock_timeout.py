"""ManualClock.wait_for_sleepers fails fast instead of hanging a wrong test."""

from __future__ import annotations

import pytest

from actorbus.testing import ManualClock

pytestmark = pytest.mark.anyio


async def test_wait_for_sleepers_times_out_saying_how_many_slept() -> None:
    clock = ManualClock()
    with pytest.raises(TimeoutError, match=r"for 2 task\(s\) to sleep .* but 0 did"):
        await clock.wait_for_sleepers(2, timeout=0.01)
