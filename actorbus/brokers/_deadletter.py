"""Dead letters: the headers that record a death, and the operations on a dead-letter queue.

One vocabulary for every broker and for the operators' tools. A broker that dead-letters or
retries a delivery writes the ``x-actorbus-*`` headers below; RabbitMQ adds its own
``x-death`` records when it dead-letters by itself (``x-delivery-limit``, a rejected
delivery). The operations (:func:`dead_letter_count`, :func:`peek_dead_letters`,
:func:`replay_dead_letters`, :func:`purge_dead_letters`) work on any :class:`Broker` through
its ``queue_depth``, ``get``, ``publish`` and ``purge``; the CLI's ``dlq`` command and the
console call them.

Replay publishes a dead letter back to its original exchange and routing key with its
``message_id`` (``eventId``) unchanged, so idempotent consumers drop any that were handled
after all; each is acked from the dead-letter queue only after the broker confirmed the
copy, so a crash mid-replay duplicates at worst and never loses. A replayed copy carries a
fresh :data:`XH_REPLAY` id: a broker that deduplicates by message id (NATS JetStream's
``Nats-Msg-Id``) tells a replay from a repeated publish by it, instead of dropping the replay
(and the retry and dead-letter copies of its new life) as duplicates of the first life.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import msgspec

from .._log import get_logger
from ..messages import Envelope, OutboundMessage

if TYPE_CHECKING:
    from ._protocol import Broker, Delivery

__all__ = (
    "BROKER_DEATH_HEADERS",
    "DEATH_HEADERS",
    "DeadLetter",
    "REASON_DECODE_ERROR",
    "REASON_DELIVERY_LIMIT",
    "REASON_HANDLER_ERROR",
    "REASON_MAXLEN",
    "REASON_MESSAGE_TOO_LARGE",
    "REASON_REJECTED",
    "XH_ATTEMPT",
    "XH_ATTEMPTS",
    "XH_ERROR_MESSAGE",
    "XH_ERROR_TYPE",
    "XH_ORIGINAL_EXCHANGE",
    "XH_ORIGINAL_QUEUE",
    "XH_ORIGINAL_ROUTING_KEY",
    "XH_REASON",
    "XH_REPLAY",
    "dead_letter_count",
    "dead_letter_queue",
    "describe_dead_letter",
    "peek_dead_letters",
    "purge_dead_letters",
    "replay_dead_letters",
)

_log = get_logger("actorbus.brokers")

# Headers that brokers and the app agree on. Brokers set the ``original-*`` ones when they
# dead-letter or retry a delivery; the app supplies the error ones.
XH_ATTEMPT = "x-actorbus-attempt"
"""Header: the attempt number (1-based) a retried message will be delivered as."""
XH_REASON = "x-actorbus-reason"
"""Header: why a message was dead-lettered (``handler-error``, ``decode-error``, …)."""
XH_ERROR_TYPE = "x-actorbus-error-type"
"""Header: the class name of the exception that dead-lettered the message."""
XH_ERROR_MESSAGE = "x-actorbus-error-message"
"""Header: the exception's message (truncated)."""
XH_ATTEMPTS = "x-actorbus-attempts"
"""Header: how many attempts were made before dead-lettering."""
XH_ORIGINAL_EXCHANGE = "x-actorbus-original-exchange"
"""Header: the exchange the message was first published to."""
XH_ORIGINAL_ROUTING_KEY = "x-actorbus-original-routing-key"
"""Header: the routing key the message was first published with."""
XH_ORIGINAL_QUEUE = "x-actorbus-original-queue"
"""Header: the queue the message was consumed from when it was dead-lettered."""
XH_REPLAY = "x-actorbus-replay"
"""Header: a fresh id on each replayed copy of a dead letter (its ``message_id`` is kept)."""

# Values of XH_REASON: why a message died. Brokers set the first four; the app the others.
REASON_REJECTED = "rejected"
"""A consumer rejected it without requeueing (``nack(requeue=False)``)."""
REASON_MAXLEN = "maxlen"
"""The queue was full (``max_length``) and dropped its oldest message."""
REASON_DELIVERY_LIMIT = "delivery-limit"
"""It was redelivered more often than the queue's ``delivery_limit``."""
REASON_MESSAGE_TOO_LARGE = "message-too-large"
"""Its body exceeded the size limit before it reached the consumer."""
REASON_DECODE_ERROR = "decode-error"
"""It could not be decoded (malformed, unknown type or version, wrong content type)."""
REASON_HANDLER_ERROR = "handler-error"
"""Its handler kept failing until the retry policy gave up."""

#: Headers RabbitMQ writes when it dead-letters a message itself. A copy that a broker
#: re-publishes (a retry, a dead letter of ours) drops them: they describe another hop.
BROKER_DEATH_HEADERS = frozenset(
    {
        "x-death",
        "x-first-death-exchange",
        "x-first-death-queue",
        "x-first-death-reason",
        "x-last-death-exchange",
        "x-last-death-queue",
        "x-last-death-reason",
        "x-delivery-count",
    }
)

#: Every header that describes a death; a replayed message starts a fresh life without them.
DEATH_HEADERS = BROKER_DEATH_HEADERS | {
    XH_REASON,
    XH_ERROR_TYPE,
    XH_ERROR_MESSAGE,
    XH_ATTEMPTS,
    XH_ATTEMPT,
    XH_ORIGINAL_EXCHANGE,
    XH_ORIGINAL_ROUTING_KEY,
    XH_ORIGINAL_QUEUE,
}


class DeadLetter(msgspec.Struct, kw_only=True, rename="camel"):
    """What an operator needs to know of one dead letter (JSON: camelCase keys).

    Attributes:
        message_id: The message's id (its ``eventId``).
        type: The wire name of its type.
        correlation_id: The business flow it belongs to.
        reason: Why it died (``handler-error``, ``decode-error``, ``rejected``, …).
        error_type: The class name of the exception that killed it.
        error: The exception's message.
        attempts: How many attempts were made.
        original_exchange: Where it was first published.
        original_routing_key: The routing key it was first published with.
        body: The payload as text (replacement characters for bad UTF-8), at most 2,000
            characters.
    """

    message_id: str
    type: str
    correlation_id: str | None
    reason: Any
    error_type: Any
    error: Any
    attempts: Any
    original_exchange: str | None
    original_routing_key: str | None
    body: str


def dead_letter_queue(queue: str) -> str:
    """Return the dead-letter queue of ``queue`` (``queue`` itself if it is one already)."""
    return queue if queue.endswith(".dlq") else f"{queue}.dlq"


def _x_death(headers: Mapping[str, Any]) -> Mapping[str, Any]:
    deaths = headers.get("x-death")
    if isinstance(deaths, list | tuple) and deaths and isinstance(deaths[-1], Mapping):
        oldest: Mapping[str, Any] = deaths[-1]  # the oldest death: where it came from
        return oldest
    return {}


def _origin(headers: Mapping[str, Any]) -> tuple[str | None, str | None]:
    """Where a dead letter was first published: our headers, else RabbitMQ's ``x-death``."""
    exchange = headers.get(XH_ORIGINAL_EXCHANGE)
    routing_key = headers.get(XH_ORIGINAL_ROUTING_KEY)
    if routing_key is None:
        death = _x_death(headers)
        keys = death.get("routing-keys")
        if keys:
            exchange = death.get("exchange", exchange)
            routing_key = keys[0] if isinstance(keys, list | tuple) else str(keys)
    return exchange, routing_key


def describe_dead_letter(delivery: Delivery) -> DeadLetter:
    """Return what ``delivery`` (taken from a dead-letter queue) says about its death."""
    env = delivery.envelope
    headers: Mapping[str, Any] = env.headers or {}
    exchange, routing_key = _origin(headers)
    return DeadLetter(
        message_id=env.message_id,
        type=env.type,
        correlation_id=env.correlation_id,
        reason=headers.get(XH_REASON) or _x_death(headers).get("reason"),
        error_type=headers.get(XH_ERROR_TYPE),
        error=headers.get(XH_ERROR_MESSAGE),
        attempts=headers.get(XH_ATTEMPTS),
        original_exchange=exchange,
        original_routing_key=routing_key,
        body=delivery.body.decode("utf-8", "replace")[:2000],
    )


async def dead_letter_count(broker: Broker, queue: str) -> int:
    """Return how many dead letters ``queue`` has.

    Raises:
        QueueNotFoundError: The dead-letter queue does not exist.
    """
    return await broker.queue_depth(dead_letter_queue(queue))


async def _take(broker: Broker, dlq: str, limit: int | None) -> list[Delivery]:
    taken: list[Delivery] = []
    while limit is None or len(taken) < limit:
        delivery = await broker.get(dlq)
        if delivery is None:
            break
        taken.append(delivery)
    return taken


async def peek_dead_letters(broker: Broker, queue: str, limit: int = 20) -> list[DeadLetter]:
    """Return up to ``limit`` dead letters of ``queue``, oldest first, leaving them in place.

    Raises:
        QueueNotFoundError: The dead-letter queue does not exist.
    """
    dlq = dead_letter_queue(queue)
    await broker.queue_depth(dlq)  # an unknown queue fails here, with its name
    taken = await _take(broker, dlq, limit)
    try:
        return [describe_dead_letter(d) for d in taken]
    finally:
        for delivery in reversed(taken):  # back where they were, in their order
            await delivery.nack(requeue=True)


async def replay_dead_letters(
    broker: Broker, queue: str, *, limit: int | None = None, message_id: str | None = None
) -> list[str]:
    """Publish dead letters back to their original exchange and routing key; return their ids.

    Each copy keeps its ``message_id`` and loses the death headers; the dead letter is acked
    only after the broker confirmed the copy. Dead letters with no recorded origin are left
    in place (logged as ``replay_skipped``). Only the dead letters waiting when the replay
    starts are replayed: a copy that fails again meanwhile waits for the next replay.

    Args:
        broker: A connected broker.
        queue: The work queue (its dead-letter queue is ``queue.dlq``) or a ``.dlq``.
        limit: Replay at most this many, oldest first; all that wait when ``None``.
        message_id: Replay only the message with this id (the others stay in place).

    Raises:
        QueueNotFoundError: The dead-letter queue does not exist.
    """
    dlq = dead_letter_queue(queue)
    # Only what is there now: a replay that fails again while this runs is dead-lettered
    # anew and must wait for the next replay, or a failing consumer would loop forever.
    waiting = await broker.queue_depth(dlq)
    replayed: list[str] = []
    skipped: list[Delivery] = []
    try:
        while waiting > 0 and (limit is None or len(replayed) < limit):
            delivery = await broker.get(dlq)
            if delivery is None:
                break
            waiting -= 1
            env = delivery.envelope
            if message_id is not None and env.message_id != message_id:
                skipped.append(delivery)
                continue
            exchange, routing_key = _origin(env.headers or {})
            if routing_key is None:
                skipped.append(delivery)
                _log.warning("replay_skipped", message_id=env.message_id, reason="no origin")
                continue
            await broker.publish(_revived(env, exchange or "", routing_key, delivery.body))
            await delivery.ack()
            replayed.append(env.message_id)
            if message_id is not None:
                break
    finally:
        for delivery in reversed(skipped):
            await delivery.nack(requeue=True)
    return replayed


def _revived(env: Envelope, exchange: str, routing_key: str, body: bytes) -> OutboundMessage:
    headers = {k: v for k, v in (env.headers or {}).items() if k not in DEATH_HEADERS}
    headers[XH_REPLAY] = uuid.uuid4().hex  # a new life: not a duplicate of the first publish
    envelope = Envelope(
        env.message_id,
        env.type,
        routing_key,
        correlation_id=env.correlation_id,
        causation_id=env.causation_id,
        reply_to=env.reply_to,
        content_type=env.content_type,
        headers=headers,
        timestamp=env.timestamp,
    )
    return OutboundMessage(exchange, envelope, body)


async def purge_dead_letters(broker: Broker, queue: str) -> int:
    """Delete every dead letter of ``queue``; return how many were deleted.

    Raises:
        QueueNotFoundError: The dead-letter queue does not exist.
    """
    return await broker.purge(dead_letter_queue(queue))
