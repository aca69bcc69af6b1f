"""Sagas: a declared sequence of steps, each a command and its awaited reply, with compensations.

A :class:`Saga` is declared once, like the course's diagram, and attached to a durable
service::

    order_saga = (
        Saga("order", OrderState, timeout=10)
        .step("reserve", send=ReserveStock, reply=ReserveStockResult,
              ok=lambda r: r.reserved, compensate=ReleaseStock)
        .step("charge", send=ChargePayment, reply=ChargePaymentResult,
              ok=lambda r: r.approved)
        .step("confirm", send=SendConfirmation, reply=SendConfirmationResult)
    )
    order_saga.attach(orchestrator)

How it runs (see docs/sagas.md):

* **State in the store.** One row per instance in ``actorbus_saga`` (the state as JSON, the
  status, the step, the attempt, the deadline, a version) and its history in
  ``actorbus_saga_history``; nothing per instance stays in memory, so instances in flight
  are bounded by the database, not by RAM.
* **One transaction per transition.** A reply is a durable delivery: its inbox record, the
  instance's new row, its history and the next command (through the outbox) commit together.
  A restart resumes where the row stands: an unsent command is sent by the relay, a lost
  reply is made up for by the step's timeout, which sends the command again (participants
  deduplicate by ``eventId`` and answer again).
* **Optimistic concurrency.** Every transition updates the row ``WHERE version = ?``; when
  another process got there first the transition is computed again from the row it wrote
  (in the same transaction) or, for a timeout, dropped: one instance never advances twice.
* **Timeouts on the App's clock.** Deadlines are stored as wall-clock seconds, measured
  through the App's clock (``time.time()`` at start plus the clock's progress), so a
  :class:`~actorbus.testing.ManualClock` drives them in tests and they survive restarts.
* **Compensation** runs the ``compensate`` commands of the steps already done, last first
  (on a failed reply: the steps before it; on a timeout: that step too, since its command
  may have taken effect). Compensations are retried until they are answered.
"""

from __future__ import annotations

import time
import weakref
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Generic, Literal, TypeVar

import anyio
import msgspec

from .._clock import Clock, SystemClock
from .._log import get_logger
from ..exceptions import ConfigurationError, SagaError, SagaNotFoundError, StoreConflictError
from ..messages import FILLED_ON_CONSTRUCTION, Command, Message
from ._context import HandlerContext, ServiceContext, ServiceTransaction
from ._request import wait_for
from ._service import Service

if TYPE_CHECKING:
    from ..stores import Row, Store

__all__ = ("Saga", "SagaEvent", "SagaInstance", "SagaStep", "Status")

_log = get_logger("actorbus.app.saga")

S = TypeVar("S", bound=msgspec.Struct)

Status = Literal["running", "compensating", "completed", "compensated"]

#: The tables of every saga of a store (one namespace; append steps, never edit them).
MIGRATIONS = (
    "CREATE TABLE actorbus_saga ("
    " saga TEXT NOT NULL, id TEXT NOT NULL, status TEXT NOT NULL, step INTEGER NOT NULL,"
    " attempt INTEGER NOT NULL, state TEXT NOT NULL, reason TEXT NOT NULL DEFAULT '',"
    " deadline DOUBLE PRECISION, version INTEGER NOT NULL,"
    " created_at DOUBLE PRECISION NOT NULL, updated_at DOUBLE PRECISION NOT NULL,"
    " finished_at DOUBLE PRECISION, PRIMARY KEY (saga, id))",
    "CREATE INDEX actorbus_saga_deadline ON actorbus_saga (saga, deadline)"
    " WHERE deadline IS NOT NULL",
    "CREATE INDEX actorbus_saga_finished ON actorbus_saga (saga, finished_at)"
    " WHERE finished_at IS NOT NULL",
    "CREATE TABLE actorbus_saga_history ("
    " saga TEXT NOT NULL, id TEXT NOT NULL, seq INTEGER NOT NULL,"
    " at DOUBLE PRECISION NOT NULL, step TEXT NOT NULL, event TEXT NOT NULL,"
    " detail TEXT NOT NULL DEFAULT '', PRIMARY KEY (saga, id, seq))",
)

_COLUMNS = "status, step, attempt, state, reason, deadline, version"

# Transitions tried on one delivery before its conflict is left to the delivery's retry.
_CONFLICT_ATTEMPTS = 10

# Wall-clock origin of each non-system clock (a ManualClock starts at 0).
_EPOCHS: weakref.WeakKeyDictionary[Any, float] = weakref.WeakKeyDictionary()


def saga_time(clock: Clock) -> float:
    """Return wall-clock seconds as measured by ``clock`` (what deadlines are stored in)."""
    if type(clock) is SystemClock:
        return time.time()
    epoch = _EPOCHS.get(clock)
    if epoch is None:
        epoch = _EPOCHS[clock] = time.time() - clock.now()
    return epoch + clock.now()


CommandSpec = type[Command] | Callable[[Any], Command]

#: What a transition does besides the row: (step, history event, detail or command to send).
Effect = tuple[str, str, Any]


class SagaStep(msgspec.Struct, frozen=True):
    """One declared step (see :meth:`Saga.step`)."""

    name: str
    send: Any  # a Command type (built from the state's fields) or a function of the state
    sends: type[Command] | None
    awaits: tuple[type[Message], ...]
    bind: bool
    ok: Any
    why: Any
    update: Any
    compensate: Any
    compensates_with: type[Command] | None
    compensation_awaits: tuple[type[Message], ...]
    timeout: float
    attempts: int | None


class SagaEvent(msgspec.Struct, frozen=True):
    """One entry of an instance's history: when, at which step, what happened."""

    at: float
    step: str
    event: str
    detail: str = ""


class SagaInstance(msgspec.Struct, Generic[S], frozen=True):
    """An instance as stored: its state, where it stands, and (from :meth:`Saga.get`) history.

    Attributes:
        status: ``running``, ``compensating``, ``completed`` or ``compensated``.
        step: The name of the step it waits on (or compensates, or finished at).
    """

    saga: str
    id: str
    status: Status
    step: str
    attempt: int
    state: S
    reason: str
    deadline: float | None
    version: int
    created_at: float
    updated_at: float
    finished_at: float | None
    history: tuple[SagaEvent, ...] = ()

    @property
    def finished(self) -> bool:
        """Completed or compensated."""
        return self.status in ("completed", "compensated")


class _Row(msgspec.Struct):
    status: str
    step: int
    attempt: int
    state: Any
    reason: str
    deadline: float | None
    version: int


def _build(spec: Any, state: Any, reason: str) -> Command:
    """Build a step's command: call ``spec``, or fill a Command type from the state's fields."""
    if isinstance(spec, type):
        names = {f.name for f in msgspec.structs.fields(spec)}
        values = {n: getattr(state, n) for n in names if hasattr(state, n)}
        if "reason" in names and "reason" not in values:
            values["reason"] = reason
        built: Command = spec(**values)
        return built
    return spec(state)  # type: ignore[no-any-return]


def _check_buildable(saga: str, command: type[Command], state: type[msgspec.Struct]) -> None:
    have = {f.name for f in msgspec.structs.fields(state)} | {"reason"}
    # eventId and occurredAt are required on the wire, but constructing fills them.
    missing = [
        f.name
        for f in msgspec.structs.fields(command)
        if f.required and f.name not in have and f.name not in FILLED_ON_CONSTRUCTION
    ]
    if missing:
        raise ConfigurationError(
            f"saga {saga!r}: {command.__qualname__} needs {missing}, which "
            f"{state.__qualname__} does not have; add them to the state, or pass a function: "
            f"send=lambda s: {command.__qualname__}(...)"
        )


def _types(value: type[Message] | Sequence[type[Message]] | None) -> tuple[type[Message], ...]:
    if value is None:
        return ()
    return (value,) if isinstance(value, type) else tuple(value)


class Saga(Generic[S]):
    """A declarative saga (an orchestration, or an event-driven process manager).

    Args:
        name: The saga's name (its rows are keyed by it), e.g. ``"order"``.
        state: The msgspec Struct type of an instance's state (stored as JSON).
        timeout: Seconds each step waits for its reply unless the step says otherwise.
        attempts: Times a step's command is sent before the saga compensates, unless the
            step says otherwise; ``None``: until it is answered.
        retention: Seconds a finished instance stays queryable before it is pruned.
        poll: Longest sleep (seconds of the App's clock) of the deadline watcher between
            two looks at the store (deadlines set by other processes).
        on_completed: ``async (state, tx)``: runs in the transaction of the last reply.
        on_compensated: ``async (state, reason, tx)``: runs in the transaction that ends
            the compensation (or the failed first step).
    """

    def __init__(
        self,
        name: str,
        state: type[S],
        *,
        timeout: float = 30.0,
        attempts: int | None = 3,
        retention: float = 7 * 86400.0,
        poll: float = 1.0,
        on_completed: Callable[[S, ServiceTransaction], Any] | None = None,
        on_compensated: Callable[[S, str, ServiceTransaction], Any] | None = None,
    ) -> None:
        if timeout <= 0 or (attempts is not None and attempts < 1) or retention < 0:
            raise ConfigurationError(
                f"saga {name!r}: timeout must be > 0, attempts >= 1 (or None), retention "
                f">= 0; got {timeout!r}, {attempts!r}, {retention!r}"
            )
        self.name = name
        self.state_type = state
        self.timeout = timeout
        self.attempts = attempts
        self.retention = retention
        self.poll = poll
        self.steps: list[SagaStep] = []
        self.on_completed = on_completed
        self.on_compensated = on_compensated
        #: Event types that start an instance: type → (id of, state of).
        self.starters: dict[type[Message], tuple[Callable[[Any], str], Callable[[Any], S]]] = {}
        #: How a message type finds its instance (default: the envelope's correlation id).
        self.correlations: dict[type[Message], Callable[[Any], str]] = {}
        self._decoder = msgspec.json.Decoder(state)
        self._wake: anyio.Event | None = None
        self.services: list[Service] = []

    def __repr__(self) -> str:
        return f"Saga({self.name!r}, steps={[s.name for s in self.steps]})"

    # ------------------------------------------------------------------ declaring

    def step(
        self,
        name: str,
        *,
        send: CommandSpec | None = None,
        reply: type[Message] | Sequence[type[Message]] | None = None,
        event: type[Message] | Sequence[type[Message]] | None = None,
        correlate: Callable[[Any], str] | None = None,
        ok: Callable[[Any], bool] | None = None,
        why: Callable[[Any], str] | None = None,
        update: Callable[[S, Any], S] | None = None,
        compensate: CommandSpec | None = None,
        compensation_reply: type[Message] | Sequence[type[Message]] | None = None,
        timeout: float | None = None,
        attempts: int | Literal["default"] | None = "default",
    ) -> Saga[S]:
        """Append a step; return the saga (so steps chain like the diagram reads).

        Args:
            name: The step's name (shown in history, graph and queries).
            send: The command: a Command type, built from the state's fields of the same
                names (plus ``reason``: why the saga compensates), or ``lambda state: ...``.
            reply: The reply (or replies) awaited, sent to this service's queue.
            event: Or: the event(s) awaited, published to the exchange (the queue is bound).
            correlate: How an awaited message names its instance (e.g. ``lambda e:
                e.order_id``); the envelope's correlation id by default.
            ok: Whether the reply means success (``True`` if omitted); ``False`` compensates.
            why: The reason recorded when ``ok`` says no.
            update: ``(state, reply) -> state``: fold the reply into the state.
            compensate: The command that undoes this step (a type or a function).
            compensation_reply: The reply that confirms the compensation (without one the
                compensation is sent and the saga moves on).
            timeout: Seconds to wait for the reply (the saga's by default).
            attempts: Sends before giving up (the saga's by default; ``None``: for ever).

        Raises:
            ConfigurationError: A name repeats, or a command cannot be built from the state.
        """
        if any(s.name == name for s in self.steps):
            raise ConfigurationError(f"saga {self.name!r} already has a step {name!r}")
        if reply is not None and event is not None:
            raise ConfigurationError(
                f"saga {self.name!r}, step {name!r}: await a reply or an event, not both"
            )
        sends = send if isinstance(send, type) else None
        compensates_with = compensate if isinstance(compensate, type) else None
        for command in (sends, compensates_with):
            if command is not None:
                _check_buildable(self.name, command, self.state_type)
        awaits = _types(reply) or _types(event)
        if send is None and not awaits:
            raise ConfigurationError(
                f"saga {self.name!r}, step {name!r} neither sends nor awaits anything"
            )
        for type_ in awaits:
            if correlate is not None:
                self.correlations[type_] = correlate
        self.steps.append(
            SagaStep(
                name,
                send,
                sends,
                awaits,
                event is not None,
                ok,
                why,
                update,
                compensate,
                compensates_with,
                _types(compensation_reply),
                timeout if timeout is not None else self.timeout,
                self.attempts if attempts == "default" else attempts,
            )
        )
        return self

    def started_by(
        self,
        event: type[Message],
        *,
        id: Callable[[Any], str],
        state: Callable[[Any], S],
    ) -> Saga[S]:
        """Start an instance when ``event`` is published (an event-driven process manager).

        Args:
            event: The event type (the service's queue is bound to it).
            id: The instance id it starts (a second event with the same id starts nothing).
            state: The initial state made from the event.
        """
        self.starters[event] = (id, state)
        return self

    def attach(self, service: Service) -> None:
        """Run this saga in ``service``: its reply and event handlers, tables, deadlines.

        The service must be durable (an App with a store): every transition is one
        transaction of that store.
        """
        if not self.steps:
            raise ConfigurationError(f"saga {self.name!r} has no steps")
        handled: set[type[Message]] = set()
        for step in self.steps:
            for type_, bind in [(t, step.bind) for t in step.awaits] + [
                (t, False) for t in step.compensation_awaits
            ]:
                if type_ not in handled:
                    handled.add(type_)
                    service.add_handler(type_, self._on_message, bind=bind)
        for type_ in self.starters:
            if type_ not in handled:
                handled.add(type_)
                service.add_handler(type_, self._on_message, bind=True)
        service.declare_publishes(
            *{t for s in self.steps for t in (s.sends, s.compensates_with) if t is not None}
        )
        service.startup(self._migrate)
        service.background(self._watch)
        service.sagas.append(self)
        self.services.append(service)

    def describe(self) -> list[dict[str, Any]]:
        """Return the steps as plain data (for graphs and AsyncAPI): what each sends and awaits.

        A command given as a function shows as ``"?"`` unless it names its type.
        """

        def wire(spec: Any, declared: type[Command] | None) -> str | None:
            if spec is None:
                return None
            return declared.__routing_key__ if declared is not None else "?"

        return [
            {
                "step": step.name,
                "sends": wire(step.send, step.sends),
                "awaits": [t.__routing_key__ for t in step.awaits],
                "awaitsEvent": step.bind,
                "compensate": wire(step.compensate, step.compensates_with),
                "compensationAwaits": [t.__routing_key__ for t in step.compensation_awaits],
                "timeout": step.timeout,
                "attempts": step.attempts,
            }
            for step in self.steps
        ]

    # ------------------------------------------------------------------ starting, querying

    async def start(self, tx: ServiceTransaction | HandlerContext, id: str, state: S) -> bool:
        """Start instance ``id`` with ``state`` in the caller's transaction; send step one.

        Call it inside ``async with ctx.transaction() as tx`` (an endpoint) or with a durable
        handler's ``ctx``: the instance, its first command and the caller's own writes
        commit together.

        Returns:
            ``False`` if instance ``id`` exists already (nothing is done).
        """
        stx = _service_tx(tx)
        exists = await stx.fetchval(
            "SELECT 1 FROM actorbus_saga WHERE saga = ? AND id = ?", self.name, id
        )
        if exists:
            return False
        now = saga_time(stx.context.clock)
        await stx.execute(
            f"INSERT INTO actorbus_saga (saga, id, {_COLUMNS}, created_at, updated_at)"
            " VALUES (?, ?, 'running', 0, 0, ?, '', NULL, 0, ?, ?)",
            self.name,
            id,
            msgspec.json.encode(state).decode(),
            now,
            now,
        )
        row = _Row("running", 0, 0, state, "", None, 0)
        await self._history(stx, id, 0, now, [(self.steps[0].name, "started", "")])
        await self._commit(stx, id, row, self._enter(row, 0, now), now)
        if self._wake is not None:
            self._wake.set()
        return True

    async def get(self, store: Store | ServiceContext, id: str) -> SagaInstance[S]:
        """Return instance ``id`` with its history.

        Raises:
            SagaNotFoundError: No such instance (never started, or pruned).
        """
        db = store.store if isinstance(store, ServiceContext) else store
        if db is None:
            raise ConfigurationError(f"saga {self.name!r}: get() needs the App's store")
        async with db.transaction() as tx:
            row = await tx.fetchone(
                f"SELECT {_COLUMNS}, created_at, updated_at, finished_at FROM actorbus_saga "
                "WHERE saga = ? AND id = ?",
                self.name,
                id,
            )
            if row is None:
                raise SagaNotFoundError(self.name, id)
            history = await tx.fetchall(
                "SELECT at, step, event, detail FROM actorbus_saga_history "
                "WHERE saga = ? AND id = ? ORDER BY seq",
                self.name,
                id,
            )
        return self._instance(id, row, tuple(SagaEvent(*h) for h in history))

    async def instances(
        self, store: Store, *, status: Status | None = None, limit: int = 100
    ) -> list[SagaInstance[S]]:
        """Return up to ``limit`` instances (optionally of one ``status``), oldest first."""
        sql = (
            f"SELECT id, {_COLUMNS}, created_at, updated_at, finished_at FROM actorbus_saga "
            "WHERE saga = ?"
        )
        args: list[Any] = [self.name]
        if status is not None:
            sql += " AND status = ?"
            args.append(status)
        async with store.transaction() as tx:
            rows = await tx.fetchall(sql + " ORDER BY created_at LIMIT ?", *args, limit)
        return [self._instance(r[0], tuple(r)[1:]) for r in rows]

    async def count(self, store: Store, *, status: Status | None = None) -> int:
        """Return how many instances there are (of one ``status``)."""
        sql = "SELECT count(*) FROM actorbus_saga WHERE saga = ?"
        args: list[Any] = [self.name]
        if status is not None:
            sql += " AND status = ?"
            args.append(status)
        async with store.transaction() as tx:
            return int(await tx.fetchval(sql, *args))

    def _instance(
        self, id: str, row: Row | tuple[Any, ...], history: tuple[SagaEvent, ...] = ()
    ) -> SagaInstance[S]:
        status, step, attempt, state, reason, deadline, version, created, updated, finished = (
            row[i] for i in range(10)
        )
        index = min(int(step), len(self.steps) - 1)
        return SagaInstance(
            self.name, id, status, self.steps[index].name, int(attempt),
            self._decoder.decode(state), reason, deadline, int(version),
            float(created), float(updated), None if finished is None else float(finished),
            history,
        )  # fmt: skip

    # ------------------------------------------------------------------ transitions

    def _enter(self, row: _Row, index: int, now: float, attempt: int = 1) -> list[Effect]:
        """Move ``row`` to forward step ``index``; return what to record and send."""
        step = self.steps[index]
        row.status, row.step, row.attempt = "running", index, attempt
        effects: list[Effect] = []
        if step.send is not None:
            effects.append((step.name, "sent", _build(step.send, row.state, row.reason)))
        row.deadline = now + step.timeout if step.awaits else None
        if not step.awaits:  # send-only: done at once
            return effects + self._advance(row, index, now)
        return effects

    def _advance(self, row: _Row, index: int, now: float) -> list[Effect]:
        if index + 1 < len(self.steps):
            return self._enter(row, index + 1, now)
        row.status, row.deadline = "completed", None
        return [(self.steps[index].name, "completed", "")]

    def _compensate_from(self, row: _Row, index: int, now: float) -> list[Effect]:
        """Compensate steps ``index``, ``index - 1``, … 0 that declare a compensation."""
        for j in range(index, -1, -1):
            step = self.steps[j]
            if step.compensate is None:
                continue
            row.status, row.step, row.attempt = "compensating", j, 1
            command = _build(step.compensate, row.state, row.reason)
            effects: list[Effect] = [(step.name, "compensating", command)]
            if step.compensation_awaits:
                row.deadline = now + step.timeout
                return effects
            return effects + self._compensate_from(row, j - 1, now)
        row.status, row.deadline = "compensated", None
        return [(self.steps[max(index, 0)].name, "compensated", row.reason)]

    def _on_reply(self, row: _Row, message: Message, now: float) -> list[Effect] | None:
        step = self.steps[row.step]
        kind = type(message)
        if row.status == "compensating":
            if kind not in step.compensation_awaits:
                return None
            replied: Effect = (step.name, "replied", kind.__routing_key__)
            return [replied, *self._compensate_from(row, row.step - 1, now)]
        if row.status != "running" or kind not in step.awaits:
            return None
        effects: list[Effect] = [(step.name, "replied", kind.__routing_key__)]
        if step.ok is not None and not step.ok(message):
            row.reason = step.why(message) if step.why is not None else f"{step.name} failed"
            effects.append((step.name, "failed", row.reason))
            return effects + self._compensate_from(row, row.step - 1, now)
        if step.update is not None:
            row.state = step.update(row.state, message)
        return effects + self._advance(row, row.step, now)

    def _on_timeout(self, row: _Row, now: float) -> list[Effect]:
        step = self.steps[row.step]
        if row.status == "compensating":
            row.attempt += 1
            row.deadline = now + step.timeout
            command = _build(step.compensate, row.state, row.reason)
            return [(step.name, "timed_out", ""), (step.name, "compensating", command)]
        if step.attempts is None or row.attempt < step.attempts:
            effects: list[Effect] = [(step.name, "timed_out", f"attempt {row.attempt}")]
            return effects + self._enter(row, row.step, now, row.attempt + 1)
        what = step.sends.__qualname__ if step.sends is not None else step.name
        key = step.sends.__routing_key__ if step.sends is not None else step.name
        row.reason = (
            f"{what} ({key}) got no reply within {step.timeout:g} s ({row.attempt} attempts)"
        )
        effects = [(step.name, "timed_out", row.reason)]
        return effects + self._compensate_from(row, row.step, now)

    async def _commit(
        self, tx: ServiceTransaction, id: str, row: _Row, effects: list[Effect], now: float
    ) -> bool:
        """Write ``row`` if its version is still the one read; record and send ``effects``."""
        finished = row.status in ("completed", "compensated")
        changed = await tx.execute(
            "UPDATE actorbus_saga SET status = ?, step = ?, attempt = ?, state = ?, reason = ?,"
            " deadline = ?, version = version + 1, updated_at = ?, finished_at = ?"
            " WHERE saga = ? AND id = ? AND version = ?",
            row.status, row.step, row.attempt, msgspec.json.encode(row.state).decode(),
            row.reason, row.deadline, now, now if finished else None, self.name, id, row.version,
        )  # fmt: skip
        if changed != 1:
            return False
        version = row.version + 1
        entries: list[tuple[str, str, str]] = []
        for step_name, event, detail in effects:
            if isinstance(detail, Command):
                await tx.send(detail, correlation_id=id, expect_reply=True)
                entries.append((step_name, event, detail.__routing_key__))
            else:
                entries.append((step_name, event, detail))
        await self._history(tx, id, version, now, entries)
        if row.status == "completed" and self.on_completed is not None:
            await self.on_completed(row.state, tx)
        elif row.status == "compensated" and self.on_compensated is not None:
            await self.on_compensated(row.state, row.reason, tx)
        if finished:
            _log.info("saga_finished", saga=self.name, id=id, status=row.status, reason=row.reason)
        return True

    async def _history(
        self,
        tx: ServiceTransaction,
        id: str,
        version: int,
        now: float,
        entries: list[tuple[str, str, str]],
    ) -> None:
        for k, (step, event, detail) in enumerate(entries):
            await tx.execute(
                "INSERT INTO actorbus_saga_history (saga, id, seq, at, step, event, detail)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                self.name, id, version * 64 + k, now, step, event, detail,
            )  # fmt: skip

    async def _load(self, tx: ServiceTransaction, id: str) -> _Row | None:
        row = await tx.fetchone(
            f"SELECT {_COLUMNS} FROM actorbus_saga WHERE saga = ? AND id = ?", self.name, id
        )
        if row is None:
            return None
        status, step, attempt, state, reason, deadline, version = (row[i] for i in range(7))
        return _Row(
            status, int(step), int(attempt), self._decoder.decode(state), reason,
            deadline, int(version),
        )  # fmt: skip

    # ------------------------------------------------------------------ runtime

    async def _on_message(self, message: Message, ctx: HandlerContext) -> None:
        """Apply a reply or event to its instance (in the delivery's transaction)."""
        tx = _service_tx(ctx)
        kind = type(message)
        starter = self.starters.get(kind)
        if starter is not None:
            id_of, state_of = starter
            await self.start(tx, id_of(message), state_of(message))
            if not any(kind in s.awaits for s in self.steps):
                return
        correlate = self.correlations.get(kind)
        id = correlate(message) if correlate is not None else ctx.correlation_id
        if not id:
            ctx.log.warning("saga_message_uncorrelated", saga=self.name)
            return
        now = saga_time(ctx.context.clock)
        for _ in range(_CONFLICT_ATTEMPTS):
            row = await self._load(tx, id)
            if row is None:
                ctx.log.info("saga_message_ignored", saga=self.name, id=id, why="no instance")
                return
            effects = self._on_reply(row, message, now)
            if effects is None:
                ctx.log.info(
                    "saga_message_ignored", saga=self.name, id=id,
                    why="the instance does not wait for it", status=row.status,
                )  # fmt: skip
                return
            if await self._commit(tx, id, row, effects, now):
                return
        raise StoreConflictError(
            "saga", f"saga {self.name!r} instance {id!r}", "kept changing under this process"
        )

    async def _migrate(self, ctx: ServiceContext) -> None:
        if ctx.store is None:
            raise ConfigurationError(
                f"saga {self.name!r} in service {ctx.service.name!r} needs a store: run the "
                "App with one (App(..., store='sqlite:///data/app.sqlite3') or --store URL)"
            )
        await ctx.store.migrate("actorbus_saga", MIGRATIONS)

    async def _watch(self, ctx: ServiceContext) -> None:
        """Time out due steps, prune finished instances; sleep on the App's clock between."""
        store, clock = ctx.store, ctx.clock
        if store is None:  # pragma: no cover - refused at start-up
            return
        self._wake = anyio.Event()
        pruned_at = 0.0
        while True:
            now = saga_time(clock)
            async with store.transaction() as tx:
                due = await tx.fetchval(
                    "SELECT min(deadline) FROM actorbus_saga WHERE saga = ? AND"
                    " deadline IS NOT NULL",
                    self.name,
                )
            if due is not None and due <= now:
                await self.expire(ctx, now)
                continue
            if now - pruned_at > min(self.retention, 600.0):
                pruned_at = now
                await self.prune(store, now)
            delay = self.poll if due is None else min(self.poll, due - now)
            woken = await wait_for(self._wake, delay, clock)
            if woken:
                self._wake = anyio.Event()

    async def expire(self, ctx: ServiceContext, now: float | None = None) -> int:
        """Time out every step whose deadline passed; return how many instances moved."""
        store = ctx.store
        if store is None:
            raise SagaError(f"saga {self.name!r}: expire() needs the App's store")
        now = saga_time(ctx.clock) if now is None else now
        async with store.transaction() as tx:
            due = await tx.fetchall(
                "SELECT id FROM actorbus_saga WHERE saga = ? AND deadline IS NOT NULL"
                " AND deadline <= ? ORDER BY deadline LIMIT 200",
                self.name,
                now,
            )
        moved = 0
        for (id,) in due:
            async with ctx.transaction() as stx:
                row = await self._load(stx, id)
                if row is None or row.deadline is None or row.deadline > now:
                    continue  # another process moved it meanwhile
                effects = self._on_timeout(row, now)
                if await self._commit(stx, id, row, effects, now):
                    moved += 1
                    _log.warning(
                        "saga_step_timed_out", saga=self.name, id=id, step=row.step,
                        status=row.status, attempt=row.attempt,
                    )  # fmt: skip
        return moved

    async def prune(self, store: Store, now: float | None = None) -> int:
        """Delete instances finished more than ``retention`` seconds ago; return how many."""
        cutoff = (time.time() if now is None else now) - self.retention
        async with store.transaction() as tx:
            gone = await tx.fetchall(
                "SELECT id FROM actorbus_saga WHERE saga = ? AND finished_at IS NOT NULL"
                " AND finished_at < ? LIMIT 1000",
                self.name,
                cutoff,
            )
            for (id,) in gone:
                await tx.execute(
                    "DELETE FROM actorbus_saga_history WHERE saga = ? AND id = ?", self.name, id
                )
                await tx.execute(
                    "DELETE FROM actorbus_saga WHERE saga = ? AND id = ?", self.name, id
                )
        return len(gone)


def _service_tx(tx: ServiceTransaction | HandlerContext) -> ServiceTransaction:
    if isinstance(tx, ServiceTransaction):
        return tx
    return ServiceTransaction(tx.tx, tx.context)
