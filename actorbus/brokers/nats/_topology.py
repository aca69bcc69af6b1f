"""Declaring exchanges, queues and bindings as JetStream streams, consumers and KV records.

- An exchange is a stream (``_mapping.stream_name``) with interest retention: a message stays
  until every queue bound to it acked it, as in RabbitMQ where each bound queue holds a copy.
  Its description records the exchange's name and type, so a clash is reported by name.
- A queue is one durable pull consumer per filter subject of its bindings (nats-server 2.9
  has one filter subject per consumer), plus a *home* consumer on ``actorbus.direct.<queue>``
  (the default exchange) and a *retry* consumer on ``actorbus.retry.<queue>``. Its record in
  the KV bucket ``actorbus_topology`` lists them, with the spec, so that any process can
  consume the queue and a redeclaration with other arguments is refused.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

import msgspec
from nats.js import api
from nats.js.errors import (
    BadRequestError,
    KeyNotFoundError,
    KeyWrongLastSequenceError,
    NotFoundError,
)

from ...exceptions import ExchangeNotFoundError, QueueNotFoundError, TopologyConflictError
from .._protocol import Binding, ExchangeSpec, QueueSpec, Topology
from ..nats_subjects import (
    DIRECT_STREAM,
    DLQ_STREAM,
    binding_consumer_name,
    consumer_name,
    direct_subject,
    exchange_prefix,
    filters_for,
    home_stream,
    kv_key,
    retry_subject,
    stream_name,
)

if TYPE_CHECKING:
    from nats.js import JetStreamContext
    from nats.js.kv import KeyValue

__all__ = ("ConsumerRef", "QueueRecord", "TopologyManager")

BUCKET = "actorbus_topology"


class ConsumerRef(msgspec.Struct, array_like=True, frozen=True):
    """One JetStream consumer of a queue: its stream, name and filter subject."""

    stream: str
    name: str
    filter: str
    exchange: str = ""
    retry: bool = False


class QueueRecord(msgspec.Struct):
    """A queue as the topology bucket records it."""

    queue: str
    spec: dict[str, Any]
    consumers: list[ConsumerRef]


_encode = msgspec.json.Encoder().encode
_decode_record = msgspec.json.Decoder(QueueRecord).decode


def _spec_dict(spec: QueueSpec) -> dict[str, Any]:
    data = dataclasses.asdict(spec)
    data.pop("durable", None)  # every JetStream consumer is durable
    data["retry_delays"] = list(spec.retry_delays)
    return data


class TopologyManager:
    """Declares topology on one JetStream context and answers which consumers a queue has.

    Args:
        js: The JetStream context.
        replicas: Replicas of every stream (3 in a three-node cluster).
        ack_wait: Seconds before an unacknowledged delivery is delivered again.
        max_ack_pending: The server-side bound on unsettled deliveries of one consumer,
            summed over every subscriber; each subscription's ``prefetch`` bounds its own.
        duplicate_window: Seconds during which a repeated ``Nats-Msg-Id`` is dropped.
    """

    def __init__(
        self,
        js: JetStreamContext,
        *,
        replicas: int,
        ack_wait: float,
        max_ack_pending: int,
        duplicate_window: float,
    ) -> None:
        self._js = js
        self._replicas = replicas
        self._ack_wait = ack_wait
        self._max_ack_pending = max_ack_pending
        self._duplicate_window = duplicate_window
        self._kv: KeyValue | None = None
        self._records: dict[str, QueueRecord] = {}
        self._exchange_types: dict[str, str] = {}
        self.declared = Topology()

    def forget(self) -> None:
        """Drop what is cached (after a reconnect the server may have lost state)."""
        self._kv = None
        self._records.clear()

    # ------------------------------------------------------------------ streams

    async def _stream(self, name: str, subjects: list[str], description: str, *, file: bool) -> str:
        config = api.StreamConfig(
            name=name,
            subjects=subjects,
            description=description,
            retention=api.RetentionPolicy.INTEREST,
            storage=api.StorageType.FILE if file else api.StorageType.MEMORY,
            num_replicas=self._replicas,
            duplicate_window=self._duplicate_window,
        )
        try:
            await self._js.add_stream(config)
        except BadRequestError:
            info = await self._js.stream_info(name)
            return info.config.description or ""
        return description

    async def _base(self) -> KeyValue:
        if self._kv is not None:
            return self._kv
        await self._stream(
            DIRECT_STREAM,
            ["actorbus.direct.>", "actorbus.retry.>"],
            "actorbus: the default exchange and retry waits",
            file=True,
        )
        await self._stream(DLQ_STREAM, ["actorbus.dlq.>"], "actorbus: dead letters", file=True)
        try:
            self._kv = await self._js.key_value(BUCKET)
        except (NotFoundError, BadRequestError):
            self._kv = await self._js.create_key_value(
                bucket=BUCKET, history=1, replicas=self._replicas
            )
        return self._kv

    async def declare_exchange(self, spec: ExchangeSpec) -> None:
        """Create the exchange's stream, or check that the existing one matches.

        Raises:
            TopologyConflictError: A stream of that name is another exchange or type.
        """
        await self._base()
        wanted = _encode({"exchange": spec.name, "type": spec.type}).decode()
        found = await self._stream(
            stream_name(spec.name),
            [f"{exchange_prefix(spec.name)}.>"],
            wanted,
            file=spec.durable,
        )
        if found != wanted:
            raise TopologyConflictError(
                "exchange", spec.name, f"stream {stream_name(spec.name)!r}", wanted, found
            )
        self._exchange_types[spec.name] = spec.type

    async def _exchange_type(self, exchange: str) -> str:
        known = self._exchange_types.get(exchange)
        if known is not None:
            return known
        try:
            info = await self._js.stream_info(stream_name(exchange))
        except NotFoundError:
            raise ExchangeNotFoundError(exchange) from None
        try:
            kind = str(msgspec.json.decode(info.config.description or "{}")["type"])
        except (msgspec.DecodeError, KeyError, TypeError):
            kind = "topic"
        self._exchange_types[exchange] = kind
        return kind

    # ------------------------------------------------------------------ consumers

    async def _consumer(self, ref: ConsumerRef, *, new_only: bool) -> None:
        config = api.ConsumerConfig(
            durable_name=ref.name,
            filter_subject=ref.filter,
            ack_policy=api.AckPolicy.EXPLICIT,
            deliver_policy=api.DeliverPolicy.NEW if new_only else api.DeliverPolicy.ALL,
            ack_wait=self._ack_wait,
            max_ack_pending=self._max_ack_pending * (50 if ref.retry else 1),
            max_deliver=-1,
            max_waiting=4096,
        )
        try:
            await self._js.add_consumer(ref.stream, config)
        except BadRequestError as exc:
            if "already" not in str(exc):
                raise

    # ------------------------------------------------------------------ queues

    async def declare_queue(self, spec: QueueSpec) -> None:
        """Create the queue's home and retry consumers and its record (and its ``.dlq``).

        Raises:
            TopologyConflictError: The queue exists with other arguments.
        """
        await self._record_queue(spec)
        if spec.dead_letter and not spec.name.endswith(".dlq"):
            await self._record_queue(
                QueueSpec(spec.dlq_name, dead_letter=False, retry_delays=spec.retry_delays)
            )

    async def _record_queue(self, spec: QueueSpec) -> None:
        kv = await self._base()
        home = ConsumerRef(home_stream(spec.name), consumer_name(spec.name, "home"),
                           direct_subject(spec.name))  # fmt: skip
        consumers = [home]
        if not spec.name.endswith(".dlq"):
            consumers.append(
                ConsumerRef(
                    DIRECT_STREAM,
                    consumer_name(spec.name, "retry"),
                    retry_subject(spec.name),
                    retry=True,
                )
            )
        for ref in consumers:
            await self._consumer(ref, new_only=False)
        wanted = _spec_dict(spec)
        record = QueueRecord(spec.name, wanted, consumers)
        key = kv_key(spec.name)
        try:
            await kv.create(key, _encode(record))
        except KeyWrongLastSequenceError:
            existing = await self.record(spec.name, fresh=True)
            for argument, value in wanted.items():
                if existing.spec.get(argument) != value:
                    raise TopologyConflictError(
                        "queue", spec.name, argument, repr(value),
                        repr(existing.spec.get(argument)),
                    ) from None  # fmt: skip
            return
        self._records[spec.name] = record

    async def record(self, queue: str, *, fresh: bool = False) -> QueueRecord:
        """Return ``queue``'s record (cached unless ``fresh``).

        Raises:
            QueueNotFoundError: The queue was never declared.
        """
        if not fresh:
            cached = self._records.get(queue)
            if cached is not None:
                return cached
        kv = await self._base()
        try:
            entry = await kv.get(kv_key(queue))
        except KeyNotFoundError:
            raise QueueNotFoundError(queue) from None
        if entry.value is None:
            raise QueueNotFoundError(queue)
        record = _decode_record(entry.value)
        self._records[queue] = record
        return record

    async def declare_binding(self, binding: Binding) -> None:
        """Create a consumer per filter subject of ``binding`` and add them to the queue's record.

        Raises:
            ExchangeNotFoundError: The exchange was not declared.
            QueueNotFoundError: The queue was not declared.
            TopologyError: The pattern cannot be expressed as NATS subjects.
        """
        kind = await self._exchange_type(binding.exchange)
        stream = stream_name(binding.exchange)
        refs = [
            ConsumerRef(
                stream,
                binding_consumer_name(binding.queue, binding.exchange, subject),
                subject,
                binding.exchange,
            )
            for subject in filters_for(binding.exchange, kind, binding.routing_key)
        ]
        kv = await self._base()
        key = kv_key(binding.queue)
        while True:
            try:
                entry = await kv.get(key)
            except KeyNotFoundError:
                raise QueueNotFoundError(binding.queue) from None
            if entry.value is None:
                raise QueueNotFoundError(binding.queue)
            record = _decode_record(entry.value)
            missing = [ref for ref in refs if ref not in record.consumers]
            if not missing:
                self._records[binding.queue] = record
                return
            for ref in missing:
                await self._consumer(ref, new_only=True)
            record.consumers.extend(missing)
            try:
                await kv.update(key, _encode(record), last=entry.revision)
            except KeyWrongLastSequenceError:
                continue  # another process bound it meanwhile: read again
            self._records[binding.queue] = record
            return

    async def declare(self, topology: Topology) -> None:
        """Declare every exchange, queue and binding of ``topology`` (idempotent)."""
        for exchange in topology.exchanges:
            await self.declare_exchange(exchange)
        for queue in topology.queues:
            await self.declare_queue(queue)
        for binding in topology.bindings:
            await self.declare_binding(binding)
        self.declared = self.declared.merge(topology)
