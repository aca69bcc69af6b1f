"""The JetStream names of AMQP topology: streams, subjects, filter subjects, consumers.

Pure functions, without nats-py, so that the NATS broker (which declares these names) and
the AsyncAPI document (:mod:`actorbus.describe`, which describes them) use one mapping;
``docs/nats.md`` explains it:

- An exchange ``orders.topic`` is a stream ``orders_topic`` holding the subjects
  ``orders.topic.>``; a message published with routing key ``order.created`` is stored under
  ``orders.topic.order.created``.
- A routing-key word that cannot be a subject token (empty, ``*``, ``>``, containing
  whitespace, ``.`` or ``%``) is written ``%<utf-8 hex>``; the empty key is the single token
  ``%``.
- A binding pattern becomes filter subjects: ``*`` stays ``*``; a trailing ``#`` becomes the
  prefix itself and ``prefix.>``; ``#`` alone is ``exchange.>``; a ``#`` in the middle is
  refused. A direct exchange's keys are literal; a fanout exchange's filter is ``exchange.>``.
- The default exchange (route by queue name) and the retry waits live in the stream
  ``ACTORBUS`` (``actorbus.direct.<queue>``, ``actorbus.retry.<queue>``), dead letters in
  ``ACTORBUS_DLQ`` (``actorbus.dlq.<queue>``).
- A queue is a set of durable consumers: one per binding filter, a *home* consumer on its
  default-exchange subject and a *retry* consumer (:func:`consumer_name`).
"""

from __future__ import annotations

import hashlib
import re

from ..exceptions import TopologyError

__all__ = (
    "DIRECT_STREAM",
    "DLQ_STREAM",
    "binding_consumer_name",
    "consumer_name",
    "direct_subject",
    "exchange_prefix",
    "filters_for",
    "home_stream",
    "kv_key",
    "retry_subject",
    "stream_name",
    "subject_for",
)

DIRECT_STREAM = "ACTORBUS"
"""The stream of the default exchange (``actorbus.direct.<queue>``) and of retry waits."""
DLQ_STREAM = "ACTORBUS_DLQ"
"""The stream of every dead-letter queue (``actorbus.dlq.<queue>``)."""

_PLAIN_WORD = re.compile(r"[^\s.*>%]+")
_NAME_CHARS = re.compile(r"[^A-Za-z0-9_-]")


def _word(word: str) -> str:
    if _PLAIN_WORD.fullmatch(word):
        return word
    return "%" + word.encode().hex()


def _tokens(key: str) -> str:
    return ".".join(_word(w) for w in key.split("."))


def exchange_prefix(exchange: str) -> str:
    """Return the subject prefix of ``exchange``: its words as tokens (``orders.topic``)."""
    return _tokens(exchange)


def stream_name(exchange: str) -> str:
    """Return the stream of ``exchange``: ``orders.topic`` → ``orders_topic``."""
    return _NAME_CHARS.sub("_", exchange) or "_"


def subject_for(exchange: str, routing_key: str) -> str:
    """Return the subject a message to ``exchange`` with ``routing_key`` is stored under."""
    if not exchange:
        return direct_subject(routing_key)
    return f"{exchange_prefix(exchange)}.{_tokens(routing_key)}"


def direct_subject(queue: str) -> str:
    """Return the subject of ``queue`` on the default exchange (its dead letters' for ``.dlq``)."""
    if queue.endswith(".dlq"):
        return f"actorbus.dlq.{_tokens(queue[:-4])}"
    return f"actorbus.direct.{_tokens(queue)}"


def retry_subject(queue: str) -> str:
    """Return the subject where retries of ``queue`` wait their delay."""
    return f"actorbus.retry.{_tokens(queue)}"


def home_stream(queue: str) -> str:
    """Return the stream holding ``queue``'s default-exchange subject."""
    return DLQ_STREAM if queue.endswith(".dlq") else DIRECT_STREAM


def filters_for(exchange: str, exchange_type: str, pattern: str) -> list[str]:
    """Return the filter subjects of a binding of ``exchange`` with ``pattern``.

    Raises:
        TopologyError: A topic pattern has ``#`` before its last word (NATS's ``>`` must be
            the last token).
    """
    prefix = exchange_prefix(exchange)
    if exchange_type == "fanout":
        return [f"{prefix}.>"]
    if exchange_type == "direct":
        return [f"{prefix}.{_tokens(pattern)}"]
    words = pattern.split(".")
    if "#" in words[:-1]:
        raise TopologyError(
            f"binding pattern {pattern!r} of exchange {exchange!r} has '#' before its last "
            "word, which NATS subjects cannot express ('>' must be last); bind with '*' "
            "words, or with a trailing '#'"
        )
    tokens = ["*" if w == "*" else _word(w) for w in words]
    if words[-1] != "#":
        return [f"{prefix}.{'.'.join(tokens)}"]
    head = tokens[:-1]
    if not head:
        return [f"{prefix}.>"]
    joined = ".".join(head)
    return [f"{prefix}.{joined}", f"{prefix}.{joined}.>"]


def _short_hash(text: str) -> str:
    return hashlib.sha1(text.encode(), usedforsecurity=False).hexdigest()[:10]


def consumer_name(queue: str, role: str) -> str:
    """Return the durable consumer name of ``queue`` for ``role`` (``home``, ``retry``, a filter).

    Consumer names cannot hold ``.``, ``*``, ``>`` or whitespace; a hash of the exact queue
    name keeps ``a.b`` and ``a_b`` apart.
    """
    base = f"{_NAME_CHARS.sub('_', queue)[:60]}-{_short_hash(queue)}"
    if role == "home":
        return base
    if role == "retry":
        return f"{base}-retry"
    return f"{base}-{_short_hash(role)}"


def binding_consumer_name(queue: str, exchange: str, filter_subject: str) -> str:
    """Return the durable consumer of ``queue`` for one filter subject of a binding."""
    return consumer_name(queue, f"{stream_name(exchange)} {filter_subject}")


def kv_key(queue: str) -> str:
    """Return the key of ``queue``'s record in the topology bucket."""
    return f"q.{_NAME_CHARS.sub('_', queue)[:100]}.{_short_hash(queue)}"
