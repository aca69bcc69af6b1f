"""Actors: the :class:`Actor` base class, :class:`ActorRef`, and the per-actor message loop."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import anyio
import anyio.lowlevel

from actorbus._log import get_logger
from actorbus.exceptions import ActorStoppedError, AskTimeoutError

from ._mailbox import Mailbox, MailboxStatistics

__all__ = ("Actor", "ActorRef")

_log = get_logger("actorbus.runtime")

# The loop takes messages with receive_nowait and only yields to the event loop when the
# mailbox is empty; a busy actor still checkpoints every _FAIR_BATCH messages so that a full
# mailbox cannot starve other tasks or delay cancellation indefinitely.
_FAIR_BATCH = 64


class Actor:
    """Subclass and override :meth:`receive`; one task per actor processes its mailbox in order.

    Instances are created by a supervisor from a factory (``ChildSpec.factory``), again after
    each restart; state that must survive a restart belongs outside the instance.
    """

    _actorbus_ref: ActorRef | None = None

    async def on_start(self) -> None:
        """Run once per instance, before the first message.

        If it raises, the start counts as a failure of the actor: :meth:`on_failure` runs with
        ``message=None`` and the supervisor decides (restart or give up). :meth:`on_stop` does
        not run for an instance that failed to start.
        """

    async def receive(self, message: Any) -> Any:
        """Handle one message; the return value is the reply to :meth:`ActorRef.ask`.

        If it raises, the actor fails: the exception is re-raised to the asker (for ``ask``),
        :meth:`on_failure` and :meth:`on_stop` run, and the supervisor decides what happens.
        The message is not retried; the queued messages are kept for the next instance.

        Raises:
            NotImplementedError: Unless overridden.
        """
        raise NotImplementedError(
            f"{type(self).__qualname__} must override Actor.receive(message) to handle messages"
        )

    async def on_stop(self) -> None:
        """Run when this instance ends: on a clean stop, before a restart and after a failure.

        If it raises, the error is logged (``actor_hook_failed``) and the stop or restart goes
        on. It does not run when the actor's task is cancelled from outside.
        """

    async def on_failure(self, exc: Exception, message: Any) -> None:
        """Run when :meth:`receive` or :meth:`on_start` raised, before the supervisor decides.

        Args:
            exc: The exception.
            message: The message being handled, or ``None`` if :meth:`on_start` failed.

        If it raises, the error is logged (``actor_hook_failed``) and supervision goes on.
        """

    @property
    def ref(self) -> ActorRef:
        """This actor's reference; valid across restarts.

        Raises:
            RuntimeError: If the actor was not started by an ``ActorSystem``.
        """
        ref = self._actorbus_ref
        if ref is None:
            raise RuntimeError(
                f"{type(self).__qualname__} has no ActorRef yet: actors get one when a "
                "supervisor starts them (ActorSystem.start or ActorSystem.spawn), not in __init__"
            )
        return ref

    @property
    def name(self) -> str:
        """This actor's name (unique under its supervisor)."""
        return self.ref.name


class _Ask:
    """A request in the mailbox: the message and a one-shot reply slot."""

    __slots__ = ("done", "error", "message", "value")

    def __init__(self, message: Any) -> None:
        self.message = message
        self.done = anyio.Event()
        self.value: Any = None
        self.error: BaseException | None = None

    def reply(self, value: Any) -> None:
        self.value = value
        self.done.set()

    def fail(self, error: BaseException) -> None:
        self.error = error
        self.done.set()


def _refuse(items: list[Any], name: str) -> None:
    """Fail the asks among dropped messages, so their askers do not wait for a timeout."""
    for item in items:
        if type(item) is _Ask and not item.done.is_set():
            item.fail(ActorStoppedError(name))


class _Run:
    """One run of a child (an actor instance, or one run of a nested supervisor)."""

    __slots__ = ("done", "expected", "running", "scope", "stop_requested", "task_id")

    def __init__(self) -> None:
        self.scope = anyio.CancelScope()
        self.done = anyio.Event()
        self.running = False  # on_start succeeded (actor) / all children running (supervisor)
        self.expected = False  # the supervisor stopped it on purpose: its exit is no failure
        self.stop_requested = False  # leave the message loop after the current message
        self.task_id: int | None = None


class _Failure:
    """Why a run failed: the exception and the message being handled (``None`` at start)."""

    __slots__ = ("error", "message")

    def __init__(self, error: Exception, message: Any) -> None:
        self.error = error
        self.message = message


class _Cell:
    """Everything about an actor child that survives restarts: its mailbox and reference."""

    __slots__ = ("incarnation", "mailbox", "name", "ref", "terminating")

    def __init__(self, name: str, capacity: int) -> None:
        self.name = name
        self.mailbox = Mailbox(name, capacity)
        self.incarnation: _Run | None = None
        self.terminating = False
        self.ref = ActorRef(self)


class ActorRef:
    """The address of an actor: send it messages, ask it questions, stop it.

    A reference stays valid across restarts of the actor, because the mailbox survives them.
    """

    __slots__ = ("_cell", "_mailbox", "name", "tell_nowait")

    tell_nowait: Callable[[Any], None]
    """Send a message if the mailbox has room, without waiting (the mailbox's ``put_nowait``
    itself: one call, no wrapper).

    Raises:
        MailboxFullError: If the mailbox is full (an ``anyio.WouldBlock``).
        ActorStoppedError: If the actor was stopped.
    """

    def __init__(self, cell: _Cell) -> None:
        self.name = cell.name
        self._cell = cell
        self._mailbox = cell.mailbox
        self.tell_nowait = cell.mailbox.put_nowait

    def __repr__(self) -> str:
        state = "alive" if self.is_alive else "stopped"
        return f"<ActorRef {self.name!r} {state}>"

    async def tell(self, message: Any) -> None:
        """Send ``message`` without waiting for it to be handled.

        Waits while the bounded mailbox is full (backpressure); returns at once, without
        yielding, when there is room.

        Raises:
            ActorStoppedError: If the actor was stopped (also while waiting for room).
        """
        await self._mailbox.put(message)

    async def ask(self, message: Any, *, timeout: float | None = 5.0) -> Any:
        """Send ``message`` and wait for the value that :meth:`Actor.receive` returns.

        Args:
            message: The request.
            timeout: Seconds to wait for room in the mailbox and for the reply together;
                ``None`` waits forever. A request that timed out is still handled later.

        Returns:
            The actor's reply.

        Raises:
            AskTimeoutError: If no reply came within ``timeout``.
            ActorStoppedError: If the actor was stopped before it handled the request.
            Exception: Whatever ``receive()`` raised while handling this request.
        """
        request = _Ask(message)
        if timeout is None:
            await self._mailbox.put(request)
            await request.done.wait()
        else:
            with anyio.move_on_after(timeout):
                await self._mailbox.put(request)
                await request.done.wait()
            if not request.done.is_set():
                raise AskTimeoutError(self.name, timeout)
        if request.error is not None:
            raise request.error
        return request.value

    @property
    def is_alive(self) -> bool:
        """Whether the actor accepts messages (it may be between restarts)."""
        return not self._mailbox.closed

    def statistics(self) -> MailboxStatistics:
        """Return a snapshot of the actor's mailbox (depth, capacity, processed, ...)."""
        return self._mailbox.statistics()

    async def stop(self, *, drain: bool = True) -> None:
        """Stop the actor for good; its supervisor does not restart it.

        New messages are refused at once. With ``drain`` the actor handles what is queued
        first; without, it stops after the current message and queued asks fail with
        ``ActorStoppedError``. :meth:`Actor.on_stop` runs. Returns when the actor has stopped;
        called from the actor itself, it only requests the stop.

        Args:
            drain: Whether to handle the queued messages before stopping.
        """
        cell = self._cell
        cell.terminating = True
        mailbox = self._mailbox
        mailbox.close()
        run = cell.incarnation
        if not drain or run is None:
            _refuse(mailbox.clear(), self.name)
        if run is None:
            mailbox.dispose()
            return
        if not drain:
            run.stop_requested = True
            mailbox.interrupt()
        if run.task_id == anyio.get_current_task().id:
            return
        await run.done.wait()


async def _call_hook(actor: Actor, hook: str, *args: Any) -> None:
    """Await a cleanup hook; log and swallow its error (never a cancellation)."""
    try:
        await getattr(actor, hook)(*args)
    except Exception as exc:
        _log.warning(
            "actor_hook_failed", actor=actor.name, hook=hook, error=repr(exc), exc_info=exc
        )


class _Readiness(Protocol):
    def started(self, value: None = None) -> None: ...


async def run_actor(
    cell: _Cell, factory: Callable[[], object], run: _Run, ready: _Readiness
) -> _Failure | None:
    """Run one instance of an actor until it stops (``None``) or fails.

    Marks ``run.running`` and calls ``ready.started()`` once ``on_start`` succeeded; on a
    failure to start it returns without calling it.
    """
    run.task_id = anyio.get_current_task().id
    try:
        actor = factory()
        if not isinstance(actor, Actor):
            raise TypeError(
                f"the factory of actor {cell.name!r} returned {type(actor).__qualname__}, "
                "not an Actor subclass instance"
            )
    except Exception as exc:
        return _Failure(exc, None)
    actor._actorbus_ref = cell.ref
    try:
        await actor.on_start()
    except Exception as exc:
        await _call_hook(actor, "on_failure", exc, None)
        return _Failure(exc, None)
    run.running = True
    ready.started()
    failure = await _serve(actor, cell.mailbox, run)
    if failure is not None:
        await _call_hook(actor, "on_failure", failure.error, failure.message)
    await _call_hook(actor, "on_stop")
    return failure


async def _serve(actor: Actor, mailbox: Mailbox, run: _Run) -> _Failure | None:
    """Handle messages in order until the mailbox ends, a stop is requested, or one fails."""
    get_nowait = mailbox.get_nowait
    handle = actor.receive
    budget = _FAIR_BATCH
    spun = False
    while not run.stop_requested:
        try:
            item = get_nowait()
        except anyio.WouldBlock:
            budget = _FAIR_BATCH
            if not spun:
                # Look once more after one event-loop turn before parking: a running
                # producer usually refills the mailbox within it, and a checkpoint costs
                # less than parking (an Event created, awaited and set): +15-30 % on the
                # memory-broker benchmark.
                spun = True
                await anyio.lowlevel.checkpoint()
                continue
            spun = False
            await mailbox.wait()
            continue
        except anyio.EndOfStream:
            return None
        if type(item) is _Ask:
            try:
                reply = await handle(item.message)
            except Exception as exc:
                mailbox.failed += 1
                item.fail(exc)
                return _Failure(exc, item.message)
            except BaseException:  # cancelled mid-request: do not leave the asker waiting
                item.fail(ActorStoppedError(mailbox.name))
                raise
            item.reply(reply)
        else:
            try:
                await handle(item)
            except Exception as exc:
                mailbox.failed += 1
                return _Failure(exc, item)
        mailbox.processed += 1
        spun = False
        budget -= 1
        if not budget:
            budget = _FAIR_BATCH
            await anyio.lowlevel.checkpoint()
    return None
