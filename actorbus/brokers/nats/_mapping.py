"""AMQP vocabulary → JetStream names: streams, subjects, filter subjects, consumers, headers.

The mapping (``docs/nats.md`` explains it at length):

- An exchange ``orders.topic`` is a stream ``orders_topic`` holding the subjects
  ``orders.topic.>``; a message published with routing key ``order.created`` is stored under
  ``orders.topic.order.created``. The subject keeps the exchange's and the key's words, so a
  plain NATS client can publish into the exchange and ``nats stream view`` reads naturally.
- A routing-key word that cannot be a subject token (empty, ``*``, ``>``, containing
  whitespace, ``.`` or ``%``) is written ``%<utf-8 hex>``; the empty key is the single token
  ``%``. So every key has at least one token and ``>`` (one or more tokens) matches them all.
- A binding pattern becomes filter subjects: ``*`` stays ``*``; a trailing ``#`` (zero or
  more words) becomes two filters, the prefix itself and ``prefix.>``; ``#`` alone is
  ``exchange.>``. A ``#`` in the middle has no NATS counterpart and is refused. A direct
  exchange's keys are literal (``*`` is encoded); a fanout exchange's filter is ``exchange.>``.
- The default exchange (route by queue name), the retry waits and the dead letters live in
  two streams of their own: ``ACTORBUS`` (``actorbus.direct.<queue>``,
  ``actorbus.retry.<queue>``) and ``ACTORBUS_DLQ`` (``actorbus.dlq.<queue>``).
- Envelope fields travel as headers: ``Nats-Msg-Id`` (the message id, which JetStream also
  deduplicates on), ``Actorbus-Type``, ``Actorbus-Routing-Key``, … Application headers keep
  their names; a value that is not a one-line string is JSON and its name is listed in
  ``Actorbus-Json``, so ``{"count": -3}`` comes back as an ``int``.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

import msgspec

from ...messages import Envelope
from ..nats_subjects import (
    DIRECT_STREAM,
    DLQ_STREAM,
    consumer_name,
    direct_subject,
    exchange_prefix,
    filters_for,
    home_stream,
    kv_key,
    retry_subject,
    stream_name,
)
from ..nats_subjects import subject_for as _subject_for

__all__ = (
    "DIRECT_STREAM",
    "DLQ_STREAM",
    "H_EXCHANGE",
    "H_MESSAGE_ID",
    "H_NOT_BEFORE",
    "consumer_name",
    "decode_key",
    "direct_subject",
    "envelope_from_headers",
    "exchange_prefix",
    "filters_for",
    "headers_for",
    "home_stream",
    "kv_key",
    "retry_subject",
    "stream_name",
    "subject_matches",
    "subject_for",
)

H_MESSAGE_ID = "Nats-Msg-Id"
H_ORIGINAL_ID = "Actorbus-Message-Id"  # a copy (retry, dead letter) has its own Nats-Msg-Id
H_TYPE = "Actorbus-Type"
H_EXCHANGE = "Actorbus-Exchange"
H_ROUTING_KEY = "Actorbus-Routing-Key"
H_CORRELATION = "Actorbus-Correlation-Id"
H_CAUSATION = "Actorbus-Causation-Id"
H_REPLY_TO = "Actorbus-Reply-To"
H_CONTENT_TYPE = "Content-Type"
H_TIMESTAMP = "Actorbus-Timestamp"
H_JSON = "Actorbus-Json"
H_NOT_BEFORE = "Actorbus-Not-Before"
"""A retry copy is not handed over before this time (seconds since the epoch)."""

_RESERVED = frozenset(
    {
        H_MESSAGE_ID,
        H_ORIGINAL_ID,
        H_TYPE,
        H_EXCHANGE,
        H_ROUTING_KEY,
        H_CORRELATION,
        H_CAUSATION,
        H_REPLY_TO,
        H_CONTENT_TYPE,
        H_TIMESTAMP,
        H_JSON,
        H_NOT_BEFORE,
    }
)

_json_encode = msgspec.json.Encoder().encode
_json_decode = msgspec.json.Decoder().decode


def _unword(token: str) -> str:
    if token.startswith("%"):
        try:
            return bytes.fromhex(token[1:]).decode()
        except ValueError:
            return token
    return token


def decode_key(tokens: list[str]) -> str:
    """Return the routing key (or queue name) that the subject tokens ``tokens`` encode."""
    return ".".join(_unword(t) for t in tokens)


#: :func:`~actorbus.brokers.nats_subjects.subject_for`, cached: publishers name few
#: exchanges and keys, and the words are checked one by one.
subject_for = functools.lru_cache(maxsize=4096)(_subject_for)


def subject_matches(pattern: str, subject: str) -> bool:
    """Whether the filter subject ``pattern`` (``*``, ``>``) matches ``subject``."""
    want = pattern.split(".")
    have = subject.split(".")
    for i, token in enumerate(want):
        if token == ">":
            return len(have) > i
        if i >= len(have) or (token != "*" and token != have[i]):
            return False
    return len(want) == len(have)


def headers_for(
    exchange: str, envelope: Envelope, extra: Mapping[str, Any] | None = None
) -> dict[str, str]:
    """Return the NATS headers carrying ``envelope`` (plus ``extra`` application headers)."""
    h: dict[str, str] = {
        H_MESSAGE_ID: envelope.message_id,
        H_TYPE: envelope.type,
        H_EXCHANGE: exchange,
        H_ROUTING_KEY: envelope.routing_key,
        H_CONTENT_TYPE: envelope.content_type,
    }
    if envelope.correlation_id is not None:
        h[H_CORRELATION] = envelope.correlation_id
    if envelope.causation_id is not None:
        h[H_CAUSATION] = envelope.causation_id
    if envelope.reply_to is not None:
        h[H_REPLY_TO] = envelope.reply_to
    if envelope.timestamp is not None:
        h[H_TIMESTAMP] = repr(float(envelope.timestamp))
    app = envelope.headers
    if extra:
        app = {**app, **extra}
    if app:
        typed: list[str] = []
        for name, value in app.items():
            if name in _RESERVED:
                continue
            if isinstance(value, str) and "\n" not in value and "\r" not in value:
                h[name] = value
            else:
                h[name] = _json_encode(value).decode()
                typed.append(name)
        if typed:
            h[H_JSON] = ",".join(typed)
    return h


def _seconds(text: str, default: float | None) -> Any:
    try:
        return float(text)
    except ValueError:
        return default


def envelope_from_headers(
    headers: Mapping[str, str] | None,
    routing_key: str,
    *,
    timestamp: float | None,
    redelivered: bool,
) -> tuple[str, Envelope, float]:
    """Return ``(exchange, envelope, not_before)`` from a message's NATS headers.

    ``routing_key`` (decoded from the subject) is used when the publisher was not actorbus.
    """
    if not headers:
        key = routing_key
        envelope = Envelope("", key, key, timestamp=timestamp, redelivered=redelivered)
        return "", envelope, 0.0
    h = headers
    get = h.get
    app: dict[str, Any] = {}
    for name, value in h.items():
        if name not in _RESERVED and not name.startswith("Nats-"):
            app[name] = value
    typed = get(H_JSON)
    if typed:
        for name in typed.split(","):
            text = app.get(name)
            if isinstance(text, str):
                try:
                    app[name] = _json_decode(text)
                except msgspec.DecodeError:
                    continue  # kept as the text it is
    attempt = app.get("x-actorbus-attempt", 1)
    stamp = get(H_TIMESTAMP)
    if stamp is not None:
        timestamp = _seconds(stamp, timestamp)
    key = get(H_ROUTING_KEY, routing_key)
    envelope = Envelope(
        get(H_ORIGINAL_ID) or get(H_MESSAGE_ID, ""),
        get(H_TYPE, key),
        key,
        correlation_id=get(H_CORRELATION),
        causation_id=get(H_CAUSATION),
        reply_to=get(H_REPLY_TO),
        content_type=get(H_CONTENT_TYPE, "application/json"),
        headers=app,
        timestamp=timestamp,
        redelivered=redelivered,
        attempt=attempt if isinstance(attempt, int) else 1,
    )
    not_before = get(H_NOT_BEFORE)
    due = _seconds(not_before, 0.0) if not_before else 0.0
    return get(H_EXCHANGE, ""), envelope, due
