"""Every public exception of actorbus, under one root: :class:`ActorbusError`.

Grouped by layer. Messages are built in ``__init__`` so that every raise site says the same
thing the same way: what was wrong, where, and what to do.
"""

from __future__ import annotations

from collections.abc import Iterable

import anyio

__all__ = (
    "ActorbusError",
    "ConfigurationError",
    # runtime
    "RuntimeLayerError",
    "ActorNotFoundError",
    "ActorStoppedError",
    "AskTimeoutError",
    "MailboxFullError",
    "SupervisorGaveUpError",
    # messages
    "MessageError",
    "DecodeError",
    "MessageTooLargeError",
    "UnknownMessageTypeError",
    "UnsupportedContentTypeError",
    "UnsupportedVersionError",
    "NoIdentityError",
    # brokers
    "BrokerError",
    "BrokerConnectionError",
    "UnknownBrokerError",
    "PublishError",
    "UnroutableError",
    "PublishNackedError",
    "TopologyError",
    "QueueNotFoundError",
    "BrokerImportError",
    "ExchangeNotFoundError",
    "PublishTooLargeError",
    "TopologyConflictError",
    # stores
    "StoreError",
    "StoreUnavailableError",
    "UnknownStoreError",
    "StoreImportError",
    "StoreSchemaError",
    "StoreClosedError",
    "StoreUsageError",
    "InboxKeyError",
    "StoreQueryError",
    "StoreIntegrityError",
    "StoreConflictError",
    # request/reply and sagas
    "RequestError",
    "RequestTimeoutError",
    "UnexpectedReplyError",
    "SagaError",
    "SagaNotFoundError",
    # handler signals
    "HandlerSignal",
    "RejectMessage",
    "RetryLater",
)


class ActorbusError(Exception):
    """Root of every exception raised by actorbus."""


class ConfigurationError(ActorbusError, ValueError):
    """A declaration, option or URL is invalid; raised at start-up, never per message."""


# --------------------------------------------------------------------------- runtime


class RuntimeLayerError(ActorbusError):
    """Base of the actor runtime's errors."""


class ActorStoppedError(RuntimeLayerError):
    """A message was sent to an actor that is not running."""

    def __init__(self, actor: str) -> None:
        self.actor = actor
        super().__init__(f"actor {actor!r} is not running; the message was not delivered")


class ActorNotFoundError(RuntimeLayerError, LookupError):
    """A supervisor was asked for a child it does not have."""

    def __init__(self, supervisor: str, name: str, known: Iterable[str]) -> None:
        self.supervisor = supervisor
        self.name = name
        listed = ", ".join(repr(n) for n in sorted(known)) or "none"
        super().__init__(
            f"supervisor {supervisor!r} has no child {name!r} (its children: {listed})"
        )


class MailboxFullError(RuntimeLayerError, anyio.WouldBlock):
    """``tell_nowait`` found the actor's bounded mailbox full (an ``anyio.WouldBlock``)."""

    def __init__(self, actor: str, capacity: int) -> None:
        self.actor = actor
        self.capacity = capacity
        super().__init__(
            f"mailbox of actor {actor!r} is full ({capacity} messages); "
            "use 'await tell(...)' to wait for room, or raise the mailbox size"
        )


class AskTimeoutError(RuntimeLayerError, TimeoutError):
    """An ``ask`` got no reply in time."""

    def __init__(self, actor: str, timeout: float) -> None:
        self.actor = actor
        self.timeout = timeout
        super().__init__(f"actor {actor!r} did not reply within {timeout:g} s")


class SupervisorGaveUpError(RuntimeLayerError):
    """A supervisor exceeded its restart intensity and stopped its children."""

    def __init__(
        self, supervisor: str, actor: str, restarts: int, period: float, last_error: BaseException
    ) -> None:
        self.supervisor = supervisor
        self.actor = actor
        self.restarts = restarts
        self.period = period
        self.last_error = last_error
        super().__init__(
            f"supervisor {supervisor!r} gave up: actor {actor!r} failed more than {restarts} "
            f"times in {period:g} s; last error: {type(last_error).__name__}: {last_error}"
        )


# -------------------------------------------------------------------------- messages


class MessageError(ActorbusError):
    """Base of the message layer's errors (encoding, decoding, registry)."""


class DecodeError(MessageError, ValueError):
    """A payload could not be decoded into its registered type.

    Attributes:
        type_name: What it was decoded as, e.g. ``"OrderCreated (order.created v1)"``.
        detail: What was wrong; for a schema mismatch msgspec's text, e.g.
            ``"Expected `int`, got `str` - at `$.qty`"``.
        routing_key: The wire name of the type, if known.
        version: The schema version it was decoded as, if known.
        path: The JSON path of the offending value (``"$.qty"``), if known.
    """

    def __init__(
        self,
        type_name: str,
        detail: str,
        *,
        payload: bytes | bytearray | memoryview | None = None,
        routing_key: str | None = None,
        version: int | None = None,
        path: str | None = None,
    ) -> None:
        self.type_name = type_name
        self.detail = detail
        self.routing_key = routing_key
        self.version = version
        self.path = path
        shown = ""
        if payload is not None:
            snippet = bytes(payload[:120])
            more = "…" if len(payload) > 120 else ""
            shown = f"; payload starts {snippet!r}{more}"
        super().__init__(f"cannot decode {type_name}: {detail}{shown}")


class MessageTooLargeError(MessageError, ValueError):
    """A payload is larger than the configured limit."""

    def __init__(self, size: int, limit: int, where: str = "") -> None:
        self.size = size
        self.limit = limit
        at = f" ({where})" if where else ""
        super().__init__(
            f"message of {size} bytes exceeds the limit of {limit} bytes{at}; "
            "raise the codec's max_size (JsonCodec(max_size=...)) if such messages are expected"
        )


class UnknownMessageTypeError(MessageError, LookupError):
    """The wire names a message type that the running app did not register."""

    def __init__(self, name: str, known: Iterable[str]) -> None:
        self.name = name
        listed = ", ".join(sorted(known)) or "none"
        super().__init__(
            f"unknown message type {name!r}: only registered types are decoded "
            f"(registered: {listed})"
        )


class UnsupportedContentTypeError(MessageError, ValueError):
    """A delivery's content type is not one the codec reads."""

    def __init__(self, content_type: str, expected: str = "application/json") -> None:
        self.content_type = content_type
        super().__init__(
            f"unsupported content type {content_type!r}: this consumer reads {expected}"
        )


class UnsupportedVersionError(MessageError, LookupError):
    """The wire names a schema version that no registered type or upcaster handles."""

    def __init__(
        self, name: str, version: object, supported: Iterable[int], *, hint: str = ""
    ) -> None:
        self.name = name
        self.version = version
        self.supported = tuple(sorted(supported))
        listed = ", ".join(str(v) for v in self.supported) or "none"
        extra = f"; {hint}" if hint else ""
        super().__init__(
            f"unsupported schemaVersion {version!r} for {name!r} (supported: {listed}){extra}"
        )


class NoIdentityError(MessageError, ValueError):
    """A delivery carries no identity to deduplicate it by: no ``eventId``, no message id.

    A durable consumer never makes one up (a random key is never recognised again, an empty
    one makes every later message a "duplicate"): it dead-letters the message (reason
    ``no-identity``) without running its handler.
    """

    def __init__(self, queue: str, message_type: str) -> None:
        self.queue = queue
        self.message_type = message_type
        super().__init__(
            f"message {message_type!r} on queue {queue!r} has no identity: the payload has no "
            "top-level 'eventId' and the transport message_id is empty; it was not processed. "
            "Have the producer set 'eventId' in the payload (or the AMQP message_id)"
        )


# --------------------------------------------------------------------------- brokers


class BrokerError(ActorbusError):
    """Base of the broker layer's errors."""


class UnknownBrokerError(BrokerError, ConfigurationError, LookupError):
    """No broker is registered for a URL scheme."""

    def __init__(self, scheme: str, known: Iterable[str]) -> None:
        self.scheme = scheme
        listed = ", ".join(f"{s}://" for s in sorted(known))
        super().__init__(
            f"no broker for URL scheme {scheme!r}; known schemes: {listed}. A third-party "
            "broker registers itself under the 'actorbus.brokers' entry-point group"
        )


class BrokerConnectionError(BrokerError, ConnectionError):
    """The broker cannot be reached, or the connection was lost."""

    def __init__(self, url: str, reason: str) -> None:
        self.url = url  # always a redacted URL
        self.reason = reason
        super().__init__(f"cannot connect to broker {url}: {reason}")


class TopologyError(BrokerError):
    """Declaring exchanges, queues or bindings failed (e.g. a clash of queue arguments)."""


class QueueNotFoundError(TopologyError, LookupError):
    """An operation named a queue that does not exist."""

    def __init__(self, queue: str) -> None:
        self.queue = queue
        super().__init__(f"queue {queue!r} does not exist; is the service declaring it running?")


class PublishError(BrokerError):
    """A published message was not confirmed by the broker."""


class UnroutableError(PublishError):
    """A mandatory message matched no queue."""

    def __init__(self, exchange: str, routing_key: str, message_id: str | None = None) -> None:
        self.exchange = exchange
        self.routing_key = routing_key
        self.message_id = message_id
        mid = f" (message_id {message_id!r})" if message_id else ""
        super().__init__(
            f"message{mid} published to exchange {exchange!r} with routing key "
            f"{routing_key!r} matched no queue; declare a queue bound to it first"
        )


class PublishNackedError(PublishError):
    """The broker refused (nacked) a published message."""

    def __init__(self, exchange: str, routing_key: str, message_id: str | None = None) -> None:
        self.exchange = exchange
        self.routing_key = routing_key
        self.message_id = message_id
        mid = f" (message_id {message_id!r})" if message_id else ""
        super().__init__(
            f"broker nacked the message{mid} published to {exchange!r} / {routing_key!r}; "
            "it was not stored and will be published again by the caller's retry"
        )


# ---------------------------------------------------------- request/reply and sagas


class RequestError(ActorbusError):
    """A request (``ctx.request``, ``App.request``) did not get the reply it waited for."""


class RequestTimeoutError(RequestError, TimeoutError):
    """No reply came within the request's timeout; a reply arriving later is dropped."""

    def __init__(
        self,
        command: str,
        routing_key: str,
        exchange: str,
        timeout: float,
        request_id: str | None = None,
    ) -> None:
        self.command = command
        self.routing_key = routing_key
        self.exchange = exchange
        self.timeout = timeout
        self.request_id = request_id
        rid = f" (request id {request_id!r})" if request_id else ""
        super().__init__(
            f"no reply to {command} sent to {routing_key!r} through exchange {exchange!r}"
            f"{rid} within {timeout:g} s; is the service that handles {routing_key!r} "
            "running and replying (ctx.reply)? Raise the timeout if it is only slow"
        )


class UnexpectedReplyError(RequestError, MessageError):
    """A request's reply was of another type than the ones the request expects."""

    def __init__(
        self, command: str, got: str, expected: Iterable[type], detail: str | None = None
    ) -> None:
        self.command = command
        self.got = got
        names = [getattr(t, "__routing_key__", "") or t.__qualname__ for t in expected]
        self.expected = names
        more = f": {detail}" if detail else ""
        super().__init__(
            f"the reply to {command} is {got!r}, expected one of {names}{more}; declare the "
            "reply type(s) the handler sends: request(command, reply=(A, B))"
        )


class SagaError(ActorbusError):
    """A saga was misused or its instance is not where the caller expects it."""


class SagaNotFoundError(SagaError, LookupError):
    """No instance of the saga has this id (never started, or pruned after retention)."""

    def __init__(self, saga: str, instance_id: str) -> None:
        self.saga = saga
        self.instance_id = instance_id
        super().__init__(
            f"saga {saga!r} has no instance {instance_id!r}: it was never started, or it "
            "finished longer ago than the saga's retention and was pruned"
        )


# ------------------------------------------------------------------- handler signals


class HandlerSignal(ActorbusError):
    """Raised by a handler to steer what happens to its delivery; never logged as an error."""


class RejectMessage(HandlerSignal):
    """Dead-letter the current message now, without retrying."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


class RetryLater(HandlerSignal):
    """Retry the current message after a delay (counts as an attempt)."""

    def __init__(self, reason: str, delay: float | None = None) -> None:
        self.reason = reason
        self.delay = delay
        super().__init__(reason)


# ------------------------------------------------------------- brokers (appended)


class BrokerImportError(BrokerError, ConfigurationError, ImportError):
    """The broker registered for a URL scheme could not be imported."""

    def __init__(self, scheme: str, target: str, reason: str, hint: str = "") -> None:
        self.scheme = scheme
        self.target = target
        self.reason = reason
        remedy = f"; {hint}" if hint else ""
        super().__init__(
            f"the broker for URL scheme {scheme!r} ({target}) cannot be loaded: {reason}{remedy}"
        )


class ExchangeNotFoundError(TopologyError, LookupError):
    """An operation named an exchange that was not declared."""

    def __init__(self, exchange: str, routing_key: str | None = None) -> None:
        self.exchange = exchange
        self.routing_key = routing_key
        key = f" (routing key {routing_key!r})" if routing_key is not None else ""
        super().__init__(
            f"exchange {exchange!r} does not exist{key}; declare it in the topology first"
        )


class PublishTooLargeError(PublishError, MessageTooLargeError):
    """A published body exceeds the broker's maximum message size; it was not stored."""


class TopologyConflictError(TopologyError):
    """A declaration clashes with an existing queue or exchange (AMQP ``PRECONDITION_FAILED``).

    Attributes:
        kind: ``"queue"`` or ``"exchange"``.
        name: The clashing queue or exchange.
        argument: The argument that differs (``x-queue-type``, ``durable``, ``type``, …).
        requested: What this declaration asked for, as the broker reported it.
        existing: What the broker has, as the broker reported it.
    """

    def __init__(self, kind: str, name: str, argument: str, requested: str, existing: str) -> None:
        self.kind = kind
        self.name = name
        self.argument = argument
        self.requested = requested
        self.existing = existing
        super().__init__(
            f"{kind} {name!r} already exists with {argument} = {existing} but this declaration "
            f"asks for {argument} = {requested}; delete the {kind} (after draining it) or "
            "declare it with the same arguments"
        )


# -------------------------------------------------------------------------- stores


class StoreError(ActorbusError):
    """Base of the store layer's errors (inbox, outbox, transactions, migrations)."""


class StoreUnavailableError(StoreError, ConnectionError):
    """The store's database cannot be reached, or the connection was lost mid-transaction.

    Raised from ``async with store`` when the database is down at start, and from a
    transaction whose connection was lost: the transaction's outcome is then unknown (a lost
    COMMIT may or may not have been applied), so the caller must not ack and should retry later;
    the inbox recognises a retry of work that did commit.
    """

    def __init__(self, url: str, reason: str) -> None:
        self.url = url  # always a redacted URL
        self.reason = reason
        super().__init__(
            f"store {url} is unavailable: {reason}; the transaction was not confirmed, "
            "retry it once the database is reachable"
        )


class UnknownStoreError(StoreError, ConfigurationError, LookupError):
    """No store is registered for a URL scheme."""

    def __init__(self, scheme: str, known: Iterable[str]) -> None:
        self.scheme = scheme
        listed = ", ".join(f"{s}://" for s in sorted(known))
        super().__init__(
            f"no store for URL scheme {scheme!r}; known schemes: {listed}. A third-party "
            "store registers itself under the 'actorbus.stores' entry-point group"
        )


class StoreImportError(StoreError, ConfigurationError, ImportError):
    """The store registered for a URL scheme could not be imported (e.g. asyncpg missing)."""

    def __init__(self, scheme: str, target: str, reason: str, hint: str = "") -> None:
        self.scheme = scheme
        self.target = target
        self.reason = reason
        remedy = f"; {hint}" if hint else ""
        super().__init__(
            f"the store for URL scheme {scheme!r} ({target}) cannot be loaded: {reason}{remedy}"
        )


class StoreSchemaError(StoreError):
    """The database holds a schema this code cannot use (e.g. written by a newer release)."""

    def __init__(self, url: str, namespace: str, found: int, supported: int) -> None:
        self.url = url
        self.namespace = namespace
        self.found = found
        self.supported = supported
        super().__init__(
            f"store {url}: schema {namespace!r} is at version {found} but this code knows only "
            f"versions up to {supported}; it was migrated by a newer release. Run that release "
            "(or newer); refusing to start rather than write to a schema it does not understand"
        )


class StoreClosedError(StoreError):
    """A store or a transaction was used outside its ``async with`` block."""

    def __init__(self, what: str) -> None:
        self.what = what
        super().__init__(
            f"{what} is not open; use it inside its 'async with' block "
            "(async with store: ... / async with store.transaction() as tx: ...)"
        )


class StoreUsageError(StoreError, RuntimeError):
    """The store was used in a way that cannot work (e.g. a nested transaction)."""


class InboxKeyError(StoreError, ValueError):
    """An inbox claim was given an empty message id: identity is never invented."""

    def __init__(self, consumer: str, message_id: object) -> None:
        self.consumer = consumer
        self.message_id = message_id
        super().__init__(
            f"inbox of consumer {consumer!r}: message id {message_id!r} cannot be a "
            "deduplication key; pass the payload's eventId (or the transport message id), and "
            "dead-letter a message that has neither instead of processing it"
        )


class StoreQueryError(StoreError):
    """A statement failed in the database.

    Attributes:
        sql: The statement (as written by the caller, before placeholder translation).
        reason: The database's message.
    """

    def __init__(self, url: str, sql: str, reason: str) -> None:
        self.url = url
        self.sql = sql
        self.reason = reason
        shown = " ".join(sql.split())
        if len(shown) > 200:
            shown = shown[:200] + "…"
        super().__init__(f"store {url}: statement failed: {reason} (in: {shown})")


class StoreIntegrityError(StoreQueryError):
    """A statement violated a constraint (unique, foreign key, not null, check).

    Only the unit that ran it is rolled back (to its savepoint); the rest of its batch commits.
    """


class StoreConflictError(StoreQueryError):
    """A serialization failure or deadlock; re-running the unit of work may succeed.

    ``store.run(fn)`` re-runs ``fn`` on this error; ``async with store.transaction()`` cannot
    re-run its body and raises it to the caller.
    """
