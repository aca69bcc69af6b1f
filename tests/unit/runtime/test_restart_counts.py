"""SupervisorRef.restarts: how often each child was restarted, for metrics."""

from __future__ import annotations

import anyio
import pytest

from actorbus.runtime import ActorSystem, RestartStrategy

from .helpers import Journal
from .test_supervisor import three

pytestmark = pytest.mark.anyio


async def test_restarts_are_counted_per_child() -> None:
    journal = Journal()
    async with ActorSystem() as system:
        sup = await system.start(three(journal, RestartStrategy.REST_FOR_ONE))
        assert sup.restarts == {"a": 0, "b": 0, "c": 0}
        await sup.child("b").tell("boom")
        await journal.wait_count(2, "b", "start")
        await anyio.wait_all_tasks_blocked()
        assert sup.restarts == {"a": 0, "b": 1, "c": 1}  # c restarted with b
        await sup.child("c").tell("boom")
        await journal.wait_count(3, "c", "start")
        await anyio.wait_all_tasks_blocked()
        assert sup.restarts == {"a": 0, "b": 1, "c": 2}
        # A snapshot: changing it changes nothing.
        sup.restarts["a"] = 99
        assert sup.restarts["a"] == 0
