"""The orchestrator's reactions: replies advance sagas; a background task handles timeouts."""

from __future__ import annotations

import functools
import time

import anyio

from actorbus import HandlerContext, Message, Service, ServiceContext

from ..common.outbox import consume_once
from ..common.store import Slot
from ..contracts import (
    ChargePaymentResult,
    RefundPaymentResult,
    ReleaseStockResult,
    ReserveStockResult,
    SendConfirmationResult,
)
from .store import OrchestratorStore, Transition

__all__ = ("REPLIES", "add_handlers", "log_transition")

#: The replies the orchestrator receives (sent straight to its queue, never bound).
REPLIES: tuple[type[Message], ...] = (
    ReserveStockResult,
    ChargePaymentResult,
    SendConfirmationResult,
    RefundPaymentResult,
    ReleaseStockResult,
)

# The longest the deadline watcher sleeps without looking (new sagas wake it earlier).
_MAX_WATCH_SLEEP = 1.0


def log_transition(log: object, transition: Transition) -> None:
    """Log one saga transition as one line, with the order id as correlation id."""
    bound = log.bind(correlation_id=transition.order_id)  # type: ignore[attr-defined]
    fields: dict[str, object] = {"order_id": transition.order_id, "step": transition.step}
    if transition.attempt != 1:
        fields["attempt"] = transition.attempt
    if transition.reason:
        fields["reason"] = transition.reason
    if transition.event == "reply_ignored":
        bound.info("reply_ignored", **fields, why="the saga has left the step it answers")
    elif transition.event in ("saga_step_timed_out", "saga_step_retried"):
        bound.warning(transition.event, **fields)
    else:
        bound.info(transition.event, **fields)


def add_handlers(service: Service, store: Slot[OrchestratorStore]) -> None:
    """Register the reply handlers and the deadline watcher on ``service``."""

    async def on_reply(reply: Message, ctx: HandlerContext) -> None:
        orchestrator = store.value
        order_id: str = getattr(reply, "order_id", "")
        if ctx.correlation_id not in (None, order_id):
            ctx.log.warning(
                "reply_correlation_mismatch", order_id=order_id, correlation=ctx.correlation_id
            )
        handled = await consume_once(
            orchestrator.db, ctx, lambda conn: orchestrator.advance(conn, reply)
        )
        if not handled.first or handled.value is None:
            ctx.log.info("duplicate_ignored", order_id=order_id)
            return
        orchestrator.relay.notify()
        log_transition(ctx.log, handled.value)

    for reply_type in REPLIES:
        service.add_handler(reply_type, on_reply, bind=False)

    @service.background
    async def watch_deadlines(ctx: ServiceContext) -> None:
        """Retry or compensate saga steps whose reply did not come in time."""
        orchestrator = store.value
        while True:
            due = await orchestrator.db.read(orchestrator.next_deadline)
            now = time.time()
            if due is not None and due <= now:
                transitions = await orchestrator.db.write(
                    functools.partial(orchestrator.expire, now=now)
                )
                orchestrator.relay.notify()
                for transition in transitions:
                    log_transition(ctx.log, transition)
                continue
            delay = _MAX_WATCH_SLEEP if due is None else min(_MAX_WATCH_SLEEP, due - now)
            with anyio.move_on_after(delay):
                await orchestrator.db.changes.wait()
