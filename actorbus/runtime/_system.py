"""The actor system: owns the root task group and the top-level supervision trees."""

from __future__ import annotations

from collections.abc import Callable
from types import TracebackType

import anyio
import anyio.abc

from actorbus._clock import Clock, SystemClock
from actorbus._log import get_logger
from actorbus.exceptions import ConfigurationError, SupervisorGaveUpError

from ._actor import Actor, ActorRef
from ._spec import ChildSpec, SupervisorSpec
from ._supervisor import SupervisorRef, _Supervisor

__all__ = ("ActorSystem",)

_log = get_logger("actorbus.runtime")


class _Tree:
    """A top-level supervisor and the scope of its task in the root task group."""

    __slots__ = ("done", "scope", "sup")

    def __init__(self, sup: _Supervisor) -> None:
        self.sup = sup
        self.scope = anyio.CancelScope()
        self.done = anyio.Event()


class _Relay:
    """Forwards readiness to ``TaskGroup.start`` and remembers whether it happened."""

    __slots__ = ("_status", "started_once")

    def __init__(self, status: anyio.abc.TaskStatus[None]) -> None:
        self._status = status
        self.started_once = False

    def started(self, value: None = None) -> None:
        if not self.started_once:
            self.started_once = True
            self._status.started()


def _origin(error: SupervisorGaveUpError) -> tuple[str, BaseException]:
    """Follow an escalation chain down to the actor that failed first."""
    path = [error.supervisor]
    cause: BaseException = error
    while isinstance(cause, SupervisorGaveUpError):
        path.append(cause.actor)
        cause = cause.last_error
    deduplicated = [name for i, name in enumerate(path) if i == 0 or name != path[i - 1]]
    return "/".join(deduplicated), cause


class ActorSystem:
    """The root of the supervision trees; use it with ``async with``.

    ``async with ActorSystem() as system:`` opens the root task group in the caller's task. On
    exit, every tree is stopped gracefully (last started, first stopped). When a top-level
    supervisor gives up, the system logs one ``supervisor_gave_up`` error, stops the other
    trees, cancels the body of the ``async with`` and raises ``SupervisorGaveUpError`` from it.

    Args:
        name: The system's name, used for the supervisor of :meth:`spawn` ed actors.
        clock: The clock for restart backoff and intensity (a ``ManualClock`` in tests).
        stop_timeout: Seconds the graceful stop on exit (or after a failure) may take before
            the remaining actors are cancelled; ``None`` waits forever.
    """

    def __init__(
        self,
        name: str = "actorbus",
        *,
        clock: Clock | None = None,
        stop_timeout: float | None = 10.0,
    ) -> None:
        self.name = name
        self.clock: Clock = clock if clock is not None else SystemClock()
        self.stop_timeout = stop_timeout
        self._tg: anyio.abc.TaskGroup | None = None
        self._trees: list[_Tree] = []
        self._failure: SupervisorGaveUpError | None = None
        self._spawn_root: SupervisorRef | None = None
        self._spawn_lock: anyio.Lock | None = None

    def __repr__(self) -> str:
        return f"<ActorSystem {self.name!r} trees={[t.sup.name for t in self._trees]!r}>"

    @property
    def failure(self) -> SupervisorGaveUpError | None:
        """The error of the top-level supervisor that gave up, if one did."""
        return self._failure

    async def __aenter__(self) -> ActorSystem:
        """Open the root task group.

        Raises:
            RuntimeError: If the system is already open.
        """
        if self._tg is not None:
            raise RuntimeError(f"actor system {self.name!r} is already running")
        tg = anyio.create_task_group()
        await tg.__aenter__()
        self._tg = tg
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        """Stop every tree gracefully, close the root task group, report a give-up.

        On cancellation the trees are cancelled, not drained.

        Raises:
            SupervisorGaveUpError: If a top-level supervisor gave up.
        """
        tg = self._tg
        if tg is None:
            return False
        cancelled = anyio.get_cancelled_exc_class()
        # anyio's task group wraps a body exception passed to it in an ExceptionGroup, so only a
        # cancellation is handed over; anything else propagates unchanged once all has stopped.
        passed: BaseException | None = exc if isinstance(exc, cancelled) else None
        if passed is None:
            try:
                await self.stop(timeout=self.stop_timeout)
            except cancelled as stop_exc:  # the root scope was cancelled after a give-up
                passed = stop_exc
        try:
            suppressed = await tg.__aexit__(
                type(passed) if passed is not None else None,
                passed,
                passed.__traceback__ if passed is not None else None,
            )
        finally:
            self._tg = None
            self._spawn_root = None
        failure = self._failure
        if failure is not None and (exc is None or exc is failure or isinstance(exc, cancelled)):
            raise failure
        if passed is not None and passed is not exc and not suppressed:
            raise passed
        return exc is not None and exc is passed and suppressed

    def _require_tg(self) -> anyio.abc.TaskGroup:
        if self._tg is None:
            raise RuntimeError(
                f"actor system {self.name!r} is not running; use 'async with ActorSystem() as "
                "system:' and start supervisors inside the block"
            )
        return self._tg

    async def start(self, spec: SupervisorSpec) -> SupervisorRef:
        """Start a supervision tree under the root; return once every child ran ``on_start``.

        Raises:
            ConfigurationError: If a running top-level supervisor has the same name.
            SupervisorGaveUpError: If the tree gave up while starting (the system fails).
        """
        tg = self._require_tg()
        if any(t.sup.name == spec.name and not t.done.is_set() for t in self._trees):
            raise ConfigurationError(
                f"actor system {self.name!r} already runs a supervisor named {spec.name!r}; "
                "top-level supervisor names must be unique"
            )
        tree = _Tree(_Supervisor(spec, self.clock))
        self._trees.append(tree)
        await tg.start(self._run_tree, tree)
        return tree.sup.ref

    async def spawn(
        self, factory: Callable[[], Actor], *, name: str, mailbox_size: int = 1000
    ) -> ActorRef:
        """Start one actor under the system's own one-for-one supervisor.

        That supervisor is named after the system and created on first use; it has the default
        restart intensity, and giving up fails the system like any top-level supervisor.

        Returns:
            The actor's reference, once its ``on_start`` succeeded.

        Raises:
            ConfigurationError: If the name is taken or a value is invalid.
        """
        spec = ChildSpec(name=name, factory=factory, mailbox_size=mailbox_size)
        self._require_tg()
        if self._spawn_lock is None:
            self._spawn_lock = anyio.Lock()
        async with self._spawn_lock:
            if self._spawn_root is None:
                self._spawn_root = await self.start(SupervisorSpec(name=self.name))
        return await self._spawn_root._sup.add_child(spec)

    async def stop(self, *, timeout: float | None = 10.0) -> None:
        """Stop every tree gracefully, last started first; each actor drains its mailbox.

        Args:
            timeout: Seconds for the whole graceful stop; the actors still running after it
                are cancelled. ``None`` waits forever.
        """
        trees = [tree for tree in reversed(self._trees) if not tree.done.is_set()]
        with anyio.move_on_after(timeout):
            for tree in trees:
                await tree.sup.stop(drain=True)
        for tree in trees:
            if not tree.done.is_set():
                tree.scope.cancel()
                await tree.done.wait()
                tree.sup.close_all()
        self._spawn_root = None

    async def _run_tree(self, tree: _Tree, *, task_status: anyio.abc.TaskStatus[None]) -> None:
        relay = _Relay(task_status)
        try:
            with tree.scope:
                try:
                    await tree.sup.serve(relay)
                except SupervisorGaveUpError as exc:
                    tree.sup.close_all()
                    self._record(exc)
                    if not relay.started_once:
                        raise  # to the caller of start()
                    await self._fail()
        finally:
            tree.sup.close_all()  # idempotent; after a cancellation nobody else would
            tree.done.set()

    def _record(self, exc: SupervisorGaveUpError) -> None:
        if self._failure is not None:
            return
        self._failure = exc
        origin, cause = _origin(exc)
        _log.error(
            "supervisor_gave_up",
            system=self.name,
            supervisor=exc.supervisor,
            actor=exc.actor,
            origin=origin,
            error=repr(cause),
            restarts=exc.restarts,
            within=exc.period,
        )

    async def _fail(self) -> None:
        """Stop the other trees gracefully, then cancel the root task group."""
        tg = self._tg
        try:
            await self.stop(timeout=self.stop_timeout)
        finally:
            if tg is not None:
                tg.cancel_scope.cancel()
