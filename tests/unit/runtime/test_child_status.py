"""SupervisorRef.status: what the console shows of each child (state, restarts, last error)."""

from __future__ import annotations

import time

import anyio
import pytest

from actorbus.runtime import ActorSystem, RestartStrategy

from .helpers import Journal
from .test_supervisor import three

pytestmark = pytest.mark.anyio


async def test_status_shows_state_restarts_and_the_last_error() -> None:
    journal = Journal()
    before = time.time()
    async with ActorSystem() as system:
        sup = await system.start(three(journal, RestartStrategy.ONE_FOR_ONE))
        status = {c.name: c for c in sup.status()}
        assert [c.name for c in sup.status()] == ["a", "b", "c"]
        assert status["a"].kind == "actor"
        assert status["a"].state == "running"
        assert status["a"].restarts == 0
        assert status["a"].last_error is None
        assert status["a"].started_at is not None
        assert status["a"].started_at >= before
        await sup.child("b").tell("boom")
        await journal.wait_count(2, "b", "start")
        await anyio.wait_all_tasks_blocked()
        status = {c.name: c for c in sup.status()}
        assert status["b"].restarts == 1
        assert status["b"].state == "running"
        assert status["b"].last_error is not None
        assert status["b"].last_error == "Boom('b failed on purpose')"
        assert status["a"].last_error is None
    stopped = {c.name: c.state for c in sup.status()}
    assert stopped == {"a": "stopped", "b": "stopped", "c": "stopped"}
