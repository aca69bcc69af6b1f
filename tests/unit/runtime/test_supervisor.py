"""Supervision: strategies, restart types, intensity, escalation, backoff on a ManualClock."""

from __future__ import annotations

import anyio
import pytest
from structlog.testing import capture_logs

from actorbus._clock import ManualClock
from actorbus.exceptions import (
    ActorNotFoundError,
    ActorStoppedError,
    ConfigurationError,
)
from actorbus.runtime import (
    ActorSystem,
    Backoff,
    ChildSpec,
    Restart,
    RestartStrategy,
    SupervisorSpec,
)

from .helpers import Journal, probe

pytestmark = pytest.mark.anyio

NO_DELAY = Backoff(initial=0.0, maximum=0.0, jitter=0.0)


def three(journal: Journal, strategy: RestartStrategy) -> SupervisorSpec:
    return SupervisorSpec(
        name="sup",
        children=[ChildSpec(n, probe(journal, n)) for n in ("a", "b", "c")],
        strategy=strategy,
        backoff=NO_DELAY,
    )


@pytest.mark.parametrize(
    ("strategy", "restarted"),
    [
        (RestartStrategy.ONE_FOR_ONE, {"b"}),
        (RestartStrategy.ONE_FOR_ALL, {"a", "b", "c"}),
        (RestartStrategy.REST_FOR_ONE, {"b", "c"}),
    ],
)
async def test_strategy_restarts_the_right_children(
    strategy: RestartStrategy, restarted: set[str]
) -> None:
    journal = Journal()
    async with ActorSystem() as system:
        sup = await system.start(three(journal, strategy))
        assert [e[0] for e in journal.entries] == ["a", "b", "c"]  # started in order
        journal.entries.clear()
        await sup.child("b").tell("boom")
        await journal.wait_count(1, "b", "start")
        await anyio.wait_all_tasks_blocked()
        starts = [e[0] for e in journal.entries if e[1] == "start"]
        stops = [e[0] for e in journal.entries if e[1] == "stop"]
        assert set(starts) == restarted
        assert starts == sorted(starts)  # restarted in start order
        # the failed child stops first, then its siblings in reverse start order
        assert stops == ["b", *sorted(restarted - {"b"}, reverse=True)]
        for name in "abc":  # every ref still works
            assert await sup.child(name).ask(name) == ("echo", name)


async def test_temporary_child_is_not_restarted_and_transient_is() -> None:
    journal = Journal()
    spec = SupervisorSpec(
        name="sup",
        children=[
            ChildSpec("temp", probe(journal, "temp"), restart=Restart.TEMPORARY),
            ChildSpec("trans", probe(journal, "trans"), restart=Restart.TRANSIENT),
        ],
        backoff=NO_DELAY,
    )
    async with ActorSystem() as system:
        sup = await system.start(spec)
        await sup.child("temp").tell("boom")
        await sup.child("trans").tell("boom")
        await journal.wait_count(2, "trans", "start")
        await anyio.wait_all_tasks_blocked()
        assert journal.count("temp", "start") == 1
        assert not sup.child("temp").is_alive
        with pytest.raises(ActorStoppedError):
            await sup.child("temp").tell("x")


async def test_intensity_exceeded_gives_up_and_escalates_to_the_parent() -> None:
    journal = Journal()
    inner = SupervisorSpec(
        name="inner",
        children=[ChildSpec("w", probe(journal, "w"))],
        max_restarts=1,
        backoff=NO_DELAY,
    )
    outer = SupervisorSpec(
        name="outer",
        children=[ChildSpec("other", probe(journal, "other")), inner],
        max_restarts=5,
        backoff=NO_DELAY,
    )
    with capture_logs() as logs:
        async with ActorSystem() as system:
            sup = await system.start(outer)
            worker = sup.supervisor("inner").child("w")
            await worker.tell("boom")  # restart 1 of inner: allowed
            await worker.tell("boom")  # restart 2 within 5 s: inner gives up
            await journal.wait_count(3, "w", "start")  # outer restarted inner
            await anyio.wait_all_tasks_blocked()
            assert journal.count("other", "start") == 1  # one_for_one at the outer level
            assert await worker.ask("alive") == ("echo", "alive")  # same ref after escalation
    escalated = [e for e in logs if e["event"] == "supervisor_escalated"]
    assert len(escalated) == 1
    assert (escalated[0]["supervisor"], escalated[0]["parent"]) == ("inner", "outer")
    assert escalated[0]["actor"] == "w"
    assert not [e for e in logs if e["event"] == "supervisor_gave_up"]


async def test_restarts_outside_the_window_do_not_count() -> None:
    clock = ManualClock()
    journal = Journal()
    spec = SupervisorSpec(
        name="sup",
        children=[ChildSpec("w", probe(journal, "w"))],
        max_restarts=1,
        within=10.0,
        backoff=NO_DELAY,
    )
    async with ActorSystem(clock=clock) as system:
        ref = (await system.start(spec)).child("w")
        for n in range(2, 5):
            await ref.tell("boom")
            await journal.wait_count(n, "w", "start")
            await clock.advance(11.0)
        assert system.failure is None


async def test_backoff_delays_restarts_on_the_clock() -> None:
    clock = ManualClock()
    journal = Journal()
    spec = SupervisorSpec(
        name="sup",
        children=[ChildSpec("w", probe(journal, "w"))],
        max_restarts=10,
        within=100.0,
        backoff=Backoff(initial=1.0, factor=2.0, maximum=3.0, jitter=0.0),
    )
    async with ActorSystem(clock=clock) as system:
        ref = (await system.start(spec)).child("w")
        for attempt, delay in enumerate([1.0, 2.0, 3.0], start=1):
            await ref.tell("boom")
            await clock.wait_for_sleepers(1)
            assert clock.next_deadline == pytest.approx(clock.now() + delay)
            await clock.advance(delay * 0.9)
            assert journal.count("w", "start") == attempt  # not restarted yet
            await clock.advance(delay * 0.1)
            await journal.wait_count(attempt + 1, "w", "start")
        assert clock.now() == pytest.approx(6.0)


async def test_stopping_during_backoff_does_not_wait_for_it() -> None:
    clock = ManualClock()
    journal = Journal()
    spec = SupervisorSpec(
        name="sup",
        children=[ChildSpec("w", probe(journal, "w"))],
        backoff=Backoff(initial=60.0, jitter=0.0, maximum=60.0),
    )
    async with ActorSystem(clock=clock) as system:
        sup = await system.start(spec)
        await sup.child("w").tell("boom")
        await clock.wait_for_sleepers(1)
        with anyio.fail_after(5):
            await sup.stop()
        assert clock.sleepers == 0
        assert journal.count("w", "start") == 1
        assert not sup.child("w").is_alive


async def test_start_returns_once_every_child_ran_on_start() -> None:
    journal = Journal()
    spec = SupervisorSpec(
        name="sup",
        children=[
            ChildSpec("a", probe(journal, "a")),
            SupervisorSpec(name="nested", children=[ChildSpec("b", probe(journal, "b"))]),
        ],
    )
    async with ActorSystem() as system:
        sup = await system.start(spec)
        assert journal.entries == [("a", "start"), ("b", "start")]
        assert sup.children == ("a", "nested")
        assert sup.supervisor("nested").children == ("b",)


async def test_lookups_name_what_is_missing() -> None:
    async with ActorSystem() as system:
        sup = await system.start(SupervisorSpec("sup", [ChildSpec("a", probe(Journal(), "a"))]))
        with pytest.raises(ActorNotFoundError, match=r"has no child 'x' \(its children: 'a'\)"):
            sup.child("x")
        with pytest.raises(ActorNotFoundError, match="has no child 'a'"):
            sup.supervisor("a")


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: ChildSpec("", probe(Journal(), "a")), "child name must be a non-empty string"),
        (lambda: ChildSpec("a", "nope"), "factory of child 'a' must be callable"),  # type: ignore[arg-type]
        (lambda: ChildSpec("a", probe(Journal(), "a"), mailbox_size=0), "mailbox_size of"),
        (
            lambda: SupervisorSpec(
                "s", [ChildSpec("a", probe(Journal(), "a")), ChildSpec("a", probe(Journal(), "a"))]
            ),
            "has two children named 'a'",
        ),
        (lambda: SupervisorSpec("s", [], max_restarts=-1), "max_restarts of supervisor 's'"),
        (lambda: SupervisorSpec("s", [], within=0), "within of supervisor 's'"),
    ],
)
async def test_specs_are_validated(make: object, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        make()  # type: ignore[operator]
