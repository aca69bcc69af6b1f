"""Supervision: restart strategies, restart intensity and backoff, as in Erlang/OTP.

A supervisor runs as one task that owns a task group with one task per running child. All of
its decisions (restart, stop, give up) are made in that one task, one child exit at a time, so
its state needs no locks. Restarts are synchronous, as in OTP: the backoff delay and the
restarted children's ``on_start`` run in the supervisor's task, and other exits wait for them.
"""

from __future__ import annotations

import enum
import math
import random
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import anyio
import anyio.abc
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from actorbus._clock import Clock
from actorbus._log import get_logger
from actorbus.exceptions import (
    ActorNotFoundError,
    ActorStoppedError,
    ConfigurationError,
    SupervisorGaveUpError,
)

from ._actor import ActorRef, _Ask, _Cell, _Failure, _Readiness, _refuse, _Run, run_actor
from ._spec import ChildSpec, Restart, RestartStrategy, SupervisorSpec

__all__ = ("ChildStatus", "SupervisorRef")

_log = get_logger("actorbus.runtime")


@dataclass(frozen=True, slots=True)
class ChildStatus:
    """What an operator sees of one child of a supervisor (see :meth:`SupervisorRef.status`).

    Attributes:
        name: The child's name.
        kind: ``actor`` or ``supervisor``.
        state: ``running``, ``starting`` (between restarts, or ``on_start`` not finished) or
            ``stopped`` (for good).
        restarts: How often it was restarted since the supervisor started.
        last_error: ``repr`` of the error of its last failure, or ``None``.
        started_at: Wall-clock time (``time.time()``) its current run started, or ``None``.
        children: A nested supervisor's own children (empty for an actor).
    """

    name: str
    kind: str
    state: str
    restarts: int
    last_error: str | None
    started_at: float | None
    children: tuple[ChildStatus, ...] = ()


class SupervisorRef:
    """The handle of a running supervisor: look up its children, stop it."""

    __slots__ = ("_sup",)

    def __init__(self, sup: _Supervisor) -> None:
        self._sup = sup

    def __repr__(self) -> str:
        return f"<SupervisorRef {self.name!r} children={list(self.children)!r}>"

    @property
    def name(self) -> str:
        """The supervisor's name."""
        return self._sup.name

    @property
    def children(self) -> tuple[str, ...]:
        """The names of the children, in start order (stopped ones included)."""
        return tuple(child.name for child in self._sup.children)

    @property
    def restarts(self) -> dict[str, int]:
        """How often each child was restarted since the supervisor was started (for metrics)."""
        return {child.name: child.restarts for child in self._sup.children}

    def status(self) -> tuple[ChildStatus, ...]:
        """Return a snapshot of every child: state, restarts, last error, start time."""
        return tuple(_status(child) for child in self._sup.children)

    def child(self, name: str) -> ActorRef:
        """Return the reference of the actor child ``name``; it stays valid across restarts.

        Raises:
            ActorNotFoundError: If there is no actor child of that name.
        """
        child = self._sup.by_name.get(name)
        if child is None or child.cell is None:
            actors = [c.name for c in self._sup.children if c.cell is not None]
            raise ActorNotFoundError(self.name, name, actors)
        return child.cell.ref

    def supervisor(self, name: str) -> SupervisorRef:
        """Return the reference of the nested supervisor ``name``.

        Raises:
            ActorNotFoundError: If there is no nested supervisor of that name.
        """
        child = self._sup.by_name.get(name)
        if child is None or child.sup is None:
            nested = [c.name for c in self._sup.children if c.sup is not None]
            raise ActorNotFoundError(self.name, name, nested)
        return child.sup.ref

    async def stop(self, *, drain: bool = True) -> None:
        """Stop the supervisor and its children for good (children in reverse start order).

        Args:
            drain: Whether each actor handles its queued messages before stopping.
        """
        await self._sup.stop(drain=drain)


class _Mode(enum.Enum):
    HALT = "halt"  # stop the children for a restart by the parent; keep the mailboxes open
    STOP = "stop"  # stop for good; close the mailboxes


class _Exit:
    __slots__ = ("child", "failure", "run")

    def __init__(self, child: _Child, run: _Run, failure: _Failure | None) -> None:
        self.child = child
        self.run = run
        self.failure = failure


class _Ready:
    """Readiness relay for a child run: marks it running, releases ``TaskGroup.start``."""

    __slots__ = ("_released", "_run", "_status")

    def __init__(self, status: anyio.abc.TaskStatus[None], run: _Run) -> None:
        self._status = status
        self._run = run
        self._released = False

    def started(self, value: None = None) -> None:
        self._run.running = True
        self.release()

    def release(self) -> None:
        if not self._released:
            self._released = True
            self._status.started()


class _Child:
    """A supervisor's record of one child: its spec and the thing that survives restarts."""

    __slots__ = (
        "cell",
        "last_error",
        "name",
        "restart_times",
        "restarts",
        "spec",
        "started_at",
        "sup",
    )

    def __init__(self, spec: ChildSpec | SupervisorSpec, parent: _Supervisor) -> None:
        self.spec = spec
        self.name = spec.name
        self.restart_times: deque[float] = deque()
        self.restarts = 0  # ever, for metrics; restart_times only holds the window
        self.last_error: str | None = None  # for the console; set once per failure
        self.started_at: float | None = None
        self.cell: _Cell | None = None
        self.sup: _Supervisor | None = None
        if isinstance(spec, ChildSpec):
            self.cell = _Cell(spec.name, spec.mailbox_size)
        else:
            self.sup = _Supervisor(spec, parent.clock)

    @property
    def node(self) -> _Cell | _Supervisor:
        node = self.cell if self.cell is not None else self.sup
        if node is None:  # pragma: no cover - one of them is always set
            raise RuntimeError(f"child {self.name!r} has neither a cell nor a supervisor")
        return node

    @property
    def incarnation(self) -> _Run | None:
        return self.node.incarnation

    @incarnation.setter
    def incarnation(self, run: _Run | None) -> None:
        self.node.incarnation = run

    @property
    def terminating(self) -> bool:
        return self.node.terminating

    def retire(self) -> None:
        """Stop accepting messages for good (the child will never run again)."""
        if self.cell is not None:
            self.cell.terminating = True
            self.cell.mailbox.close()
            _refuse(self.cell.mailbox.clear(), self.name)
            self.cell.mailbox.dispose()
        elif self.sup is not None:
            self.sup.terminating = True
            self.sup.close_all()


class _Supervisor:
    """The state and the task of one supervisor; survives its own restarts."""

    def __init__(self, spec: SupervisorSpec, clock: Clock) -> None:
        self.spec = spec
        self.name = spec.name
        self.clock = clock
        self.ref = SupervisorRef(self)
        self.incarnation: _Run | None = None
        self.terminating = False
        self.children: list[_Child] = []
        self.by_name: dict[str, _Child] = {}
        for child_spec in spec.children:
            self._add(child_spec)
        self._events: MemoryObjectSendStream[_Exit | None] | None = None
        self._restarts: deque[float] = deque()
        self._mode: _Mode | None = None
        self._drain = True
        self._backoff_scope: anyio.CancelScope | None = None
        self._tg: anyio.abc.TaskGroup | None = None
        self._pending: list[_Child] = []
        self._waiters: list[tuple[_Child, _Ask]] = []
        self._finished: anyio.Event | None = None
        self._rng = random.Random()

    def __repr__(self) -> str:
        return f"<Supervisor {self.name!r}>"

    def _add(self, spec: ChildSpec | SupervisorSpec) -> _Child:
        child = _Child(spec, self)
        self.children.append(child)
        self.by_name[child.name] = child
        return child

    # ------------------------------------------------------------------ requests

    def request(self, mode: _Mode, *, drain: bool = True) -> None:
        """Ask the supervisor's task to halt or stop (idempotent; STOP wins over HALT)."""
        if mode is _Mode.STOP or self._mode is None:
            self._mode = mode
        if not drain:
            self._drain = False
        if self._backoff_scope is not None:
            self._backoff_scope.cancel()
        if self._events is not None:
            self._events.send_nowait(None)

    async def stop(self, *, drain: bool = True) -> None:
        """Stop for good and wait until every child has stopped."""
        self.terminating = True
        self.request(_Mode.STOP, drain=drain)
        finished = self._finished
        if finished is None:
            self.close_all()
        else:
            await finished.wait()

    def close_all(self) -> None:
        """Close every mailbox in this subtree (nobody will run them again)."""
        for child in self.children:
            child.retire()

    async def add_child(self, spec: ChildSpec) -> ActorRef:
        """Start a new actor child and return its reference once its ``on_start`` succeeded.

        Raises:
            ConfigurationError: If a child of that name exists.
            ActorStoppedError: If the supervisor is not running or stops first.
            SupervisorGaveUpError: If the supervisor gives up before the child is running.
        """
        if self._events is None or self._mode is not None:
            raise ActorStoppedError(self.name)
        if spec.name in self.by_name:
            raise ConfigurationError(
                f"supervisor {self.name!r} already has a child named {spec.name!r}; "
                "child names must be unique under one supervisor"
            )
        child = self._add(spec)
        reply = _Ask(spec)
        self._waiters.append((child, reply))
        self._pending.append(child)
        self._events.send_nowait(None)
        await reply.done.wait()
        if reply.error is not None:
            raise reply.error
        ref: ActorRef = reply.value
        return ref

    # ---------------------------------------------------------------- main loop

    async def serve(self, ready: _Readiness) -> None:
        """Run the supervisor until it is halted or stopped; ``ready`` once all children run.

        Raises:
            SupervisorGaveUpError: If the restart intensity was exceeded; all children have
                been stopped by then (their mailboxes stay open for a restart by the parent).
        """
        finished = self._finished = anyio.Event()
        self._restarts.clear()
        gave_up: SupervisorGaveUpError | None = None
        events, inbox = anyio.create_memory_object_stream[_Exit | None](math.inf)
        try:
            async with anyio.create_task_group() as tg, events, inbox:
                self._tg = tg
                self._events = events
                try:
                    await self._loop(ready, inbox)
                except SupervisorGaveUpError as exc:
                    gave_up = exc
                finally:
                    self._tg = None
                    self._events = None
        finally:
            self._finished = None
            finished.set()
            waiters, self._waiters = self._waiters, []
            for _, reply in waiters:
                reply.fail(gave_up if gave_up is not None else ActorStoppedError(self.name))
        if gave_up is not None:
            raise gave_up

    async def _loop(
        self, ready: _Readiness, inbox: MemoryObjectReceiveStream[_Exit | None]
    ) -> None:
        for child in list(self.children):
            if self._mode is not None:
                break
            if not child.terminating and child.incarnation is None:
                await self._start(child)
        is_ready = False
        while True:
            while self._pending and self._mode is None:
                child = self._pending.pop(0)
                if not child.terminating and child.incarnation is None:
                    await self._start(child)
            if self._mode is not None:
                await self._shutdown()
                return
            if not is_ready and self._all_running():
                is_ready = True
                ready.started()
            if self._waiters:
                self._resolve_waiters()
            event = await inbox.receive()
            if event is not None:
                await self._on_exit(event)

    def _all_running(self) -> bool:
        for child in self.children:
            if child.terminating:
                continue
            run = child.incarnation
            if run is None or not run.running:
                return False
        return True

    def _resolve_waiters(self) -> None:
        waiting = []
        for child, reply in self._waiters:
            run = child.incarnation
            if run is not None and run.running and child.cell is not None:
                reply.reply(child.cell.ref)
            elif child.terminating:
                reply.fail(ActorStoppedError(child.name))
            else:
                waiting.append((child, reply))
        self._waiters = waiting

    async def _start(self, child: _Child) -> None:
        tg = self._tg
        if tg is None:  # pragma: no cover - only called from the loop
            raise RuntimeError(f"supervisor {self.name!r} is not running")
        run = _Run()
        child.incarnation = run
        child.started_at = time.time()
        if child.sup is not None:
            child.sup.prepare()
        await tg.start(self._child_main, child, run)

    def prepare(self) -> None:
        """Forget a halt request before the parent (re)starts this supervisor."""
        if self._mode is _Mode.HALT:
            self._mode = None
        self._drain = True

    async def _child_main(
        self, child: _Child, run: _Run, *, task_status: anyio.abc.TaskStatus[None]
    ) -> None:
        ready = _Ready(task_status, run)
        failure: _Failure | None = None
        try:
            with run.scope:
                if child.cell is not None:
                    failure = await run_actor(child.cell, _factory_of(child), run, ready)
                elif child.sup is not None:
                    failure = await self._run_nested(child.sup, ready)
        finally:
            ready.release()
            run.done.set()
        if self._events is not None:
            self._events.send_nowait(_Exit(child, run, failure))

    async def _run_nested(self, sup: _Supervisor, ready: _Ready) -> _Failure | None:
        try:
            await sup.serve(ready)
        except SupervisorGaveUpError as exc:
            _log.warning(
                "supervisor_escalated",
                supervisor=sup.name,
                parent=self.name,
                actor=exc.actor,
                error=repr(exc.last_error),
            )
            return _Failure(exc, None)
        return None

    # ---------------------------------------------------------------- decisions

    async def _on_exit(self, event: _Exit) -> None:
        child, run, failure = event.child, event.run, event.failure
        if child.incarnation is not run or run.expected:
            return  # a run we stopped on purpose, or an old one
        child.incarnation = None
        if failure is not None:
            child.last_error = repr(failure.error)[:500]
        if failure is not None and child.cell is not None:
            _log.warning(
                "actor_failed",
                supervisor=self.name,
                actor=child.name,
                error=repr(failure.error),
                during="start" if failure.message is None else "receive",
                exc_info=failure.error,
            )
        if child.terminating:
            child.retire()
            return
        restart = child.spec.restart
        if restart is Restart.TEMPORARY or (restart is Restart.TRANSIENT and failure is None):
            child.retire()
            return
        error: BaseException = (
            failure.error if failure is not None else ActorStoppedError(child.name)
        )
        now = self.clock.now()
        if self._count(self._restarts, now) > self.spec.max_restarts:
            await self._give_up(child, error)
        attempt = self._count(child.restart_times, now)
        affected = self._affected(child)
        for sibling in reversed(affected):
            if sibling is not child:
                await self._halt(sibling)
                if sibling.spec.restart is Restart.TEMPORARY:
                    sibling.retire()
        delay = self.spec.backoff.delay(attempt, self._rng)
        with anyio.CancelScope() as scope:
            self._backoff_scope = scope
            if self._mode is not None:
                scope.cancel()
            await self.clock.sleep(delay)
        self._backoff_scope = None
        for sibling in affected:
            if self._mode is not None:
                return
            if sibling.terminating or sibling.incarnation is not None:
                continue
            await self._start(sibling)
            sibling.restarts += 1
            _log.info(
                "actor_restarted",
                supervisor=self.name,
                actor=sibling.name,
                cause=child.name,
                attempt=attempt,
                delay=delay,
            )

    def _count(self, times: deque[float], now: float) -> int:
        """Record a restart at ``now`` and return how many fall within the window."""
        times.append(now)
        horizon = now - self.spec.within
        while times and times[0] < horizon:
            times.popleft()
        return len(times)

    def _affected(self, child: _Child) -> list[_Child]:
        strategy = self.spec.strategy
        if strategy is RestartStrategy.ONE_FOR_ONE:
            return [child]
        if strategy is RestartStrategy.ONE_FOR_ALL:
            return [c for c in self.children if c is child or not c.terminating]
        index = self.children.index(child)
        return [c for c in self.children[index:] if c is child or not c.terminating]

    async def _give_up(self, child: _Child, error: BaseException) -> None:
        for sibling in reversed(list(self.children)):
            await self._halt(sibling)
        raise SupervisorGaveUpError(
            self.name, child.name, self.spec.max_restarts, self.spec.within, error
        ) from error

    async def _halt(self, child: _Child) -> None:
        """Stop a running child without closing its mailbox (for a restart or a give-up)."""
        run = child.incarnation
        if run is None:
            return
        run.expected = True
        run.stop_requested = True
        timeout: float | None = None
        if child.cell is not None:
            child.cell.mailbox.interrupt()
            timeout = child.spec.shutdown if isinstance(child.spec, ChildSpec) else None
        elif child.sup is not None:
            child.sup.request(_Mode.HALT)
        with anyio.move_on_after(timeout):
            await run.done.wait()
        if not run.done.is_set():
            run.scope.cancel()
            await run.done.wait()
        if child.incarnation is run:
            child.incarnation = None

    async def _shutdown(self) -> None:
        children = list(reversed(self.children))
        if self._mode is _Mode.HALT:
            for child in children:
                await self._halt(child)
            return
        for child in children:
            run = child.incarnation
            if run is not None:
                run.expected = True
            if child.cell is not None:
                await child.cell.ref.stop(drain=self._drain)
            elif child.sup is not None:
                await child.sup.stop(drain=self._drain)
            child.retire()
            if child.incarnation is run:
                child.incarnation = None


def _status(child: _Child) -> ChildStatus:
    run = child.incarnation
    if child.terminating and run is None:
        state = "stopped"
    elif run is not None and run.running:
        state = "running"
    else:
        state = "starting"
    nested = () if child.sup is None else tuple(_status(c) for c in child.sup.children)
    return ChildStatus(
        child.name,
        "actor" if child.cell is not None else "supervisor",
        state,
        child.restarts,
        child.last_error,
        child.started_at,
        nested,
    )


def _factory_of(child: _Child) -> Callable[[], Any]:
    spec = child.spec
    if not isinstance(spec, ChildSpec):  # pragma: no cover - only actor children have one
        raise TypeError(f"child {child.name!r} is a supervisor, not an actor")
    return spec.factory
