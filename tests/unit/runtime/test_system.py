"""ActorSystem: root give-up, graceful stop, stop timeout, cancellation, spawn."""

from __future__ import annotations

import anyio
import pytest
from structlog.testing import capture_logs

from actorbus.exceptions import ActorStoppedError, ConfigurationError, SupervisorGaveUpError
from actorbus.runtime import ActorRef, ActorSystem, Backoff, ChildSpec, SupervisorSpec

from .helpers import WAIT, Journal, probe

pytestmark = pytest.mark.anyio

NO_DELAY = Backoff(initial=0.0, maximum=0.0, jitter=0.0)


async def test_root_give_up_raises_from_async_with_and_logs_one_error() -> None:
    journal = Journal()
    inner = SupervisorSpec("inner", [ChildSpec("w", probe(journal, "w"))], max_restarts=0)
    root = SupervisorSpec(
        "root",
        [ChildSpec("bystander", probe(journal, "bystander")), inner],
        max_restarts=0,
        backoff=NO_DELAY,
    )
    body_cancelled = False
    refs: dict[str, ActorRef] = {}

    async def run() -> None:
        nonlocal body_cancelled
        async with ActorSystem() as system:
            systems.append(system)
            sup = await system.start(root)
            refs["bystander"] = sup.child("bystander")
            refs["other"] = await system.spawn(probe(journal, "other"), name="other")
            await sup.supervisor("inner").child("w").tell("boom")
            try:
                with anyio.fail_after(WAIT):  # only a guard: the give-up cancels the body
                    await anyio.sleep_forever()
            finally:
                body_cancelled = True

    systems: list[ActorSystem] = []
    with (
        capture_logs() as logs,
        pytest.raises(
            SupervisorGaveUpError, match="supervisor 'root' gave up: actor 'inner' failed"
        ) as info,
    ):
        await run()
    system = systems[0]
    assert body_cancelled
    assert system.failure is info.value
    assert isinstance(info.value.last_error, SupervisorGaveUpError)
    assert info.value.last_error.actor == "w"
    errors = [e for e in logs if e["log_level"] == "error"]
    assert len(errors) == 1
    assert errors[0]["event"] == "supervisor_gave_up"
    assert (errors[0]["supervisor"], errors[0]["actor"]) == ("root", "inner")
    assert errors[0]["origin"] == "root/inner/w"
    assert "w failed on purpose" in errors[0]["error"]
    # the other tree was stopped gracefully, the failed tree's actors refuse messages
    assert journal.of("other")[-1] == ("stop",)
    assert journal.of("bystander")[-1] == ("stop",)
    assert not refs["other"].is_alive
    with pytest.raises(ActorStoppedError):
        refs["bystander"].tell_nowait("x")


async def test_give_up_while_starting_raises_from_start() -> None:
    journal = Journal()
    spec = SupervisorSpec(
        "root", [ChildSpec("w", probe(journal, "w", fail_start=True))], backoff=NO_DELAY
    )

    async def run() -> None:
        async with ActorSystem() as system:
            await system.start(spec)

    with (
        capture_logs() as logs,
        pytest.raises(SupervisorGaveUpError, match="actor 'w' failed more than 3 times"),
    ):
        await run()
    assert journal.count("w", "start") == 4
    assert [e["event"] for e in logs if e["log_level"] == "error"] == ["supervisor_gave_up"]


async def test_exit_stops_trees_in_reverse_start_order_and_drains() -> None:
    journal = Journal()
    async with ActorSystem() as system:
        first = await system.start(SupervisorSpec("first", [ChildSpec("a", probe(journal, "a"))]))
        await system.start(SupervisorSpec("second", [ChildSpec("b", probe(journal, "b"))]))
        for i in range(3):
            first.child("a").tell_nowait(i)
    stops = [e[0] for e in journal.entries if e[1] == "stop"]
    assert stops == ["b", "a"]
    assert [e[1] for e in journal.of("a") if e[0] == "receive"] == [0, 1, 2]
    assert system.failure is None


async def test_stop_timeout_cancels_what_does_not_drain() -> None:
    journal = Journal()
    async with ActorSystem() as system:
        ref = await system.spawn(probe(journal, "a"), name="a")
        await ref.tell("hang")
        await journal.wait_count(1, "a", "receive", "hang")
        await system.stop(timeout=0)
        assert journal.count("a", "cancelled") == 1
        assert not ref.is_alive


async def test_cancelling_the_surrounding_scope_propagates_and_leaves_no_tasks() -> None:
    journal = Journal()
    before = {task.id for task in anyio.get_running_tasks()}
    with anyio.CancelScope() as scope:
        async with ActorSystem() as system:
            sup = await system.start(
                SupervisorSpec(
                    "root",
                    [
                        ChildSpec("a", probe(journal, "a")),
                        SupervisorSpec("nested", [ChildSpec("b", probe(journal, "b"))]),
                    ],
                )
            )
            await sup.child("a").tell("hang")
            await journal.wait_count(1, "a", "receive", "hang")
            scope.cancel()
            await anyio.sleep_forever()
    assert scope.cancelled_caught
    assert journal.count("a", "cancelled") == 1
    assert {task.id for task in anyio.get_running_tasks()} == before
    assert system.failure is None


async def test_spawn_rejects_duplicates_and_needs_async_with() -> None:
    system = ActorSystem()
    with pytest.raises(RuntimeError, match="use 'async with ActorSystem"):
        await system.spawn(probe(Journal(), "a"), name="a")
    async with system:
        await system.spawn(probe(Journal(), "a"), name="a")
        with pytest.raises(ConfigurationError, match="already has a child named 'a'"):
            await system.spawn(probe(Journal(), "a"), name="a")
        with pytest.raises(ConfigurationError, match="already runs a supervisor named"):
            await system.start(SupervisorSpec(system.name))
