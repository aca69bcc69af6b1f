"""The JetStream subject mapping (``actorbus.brokers.nats_subjects``) keeps AMQP's meaning.

The broker and the AsyncAPI document share the one mapping; these check it against AMQP's
own rules: a routing key comes back from its subject, and a binding's filter subjects match
exactly the keys the AMQP topic pattern matches.
"""

from __future__ import annotations

import itertools

import pytest

from actorbus.brokers import nats_subjects
from actorbus.brokers._routing import topic_matches
from actorbus.brokers.nats import _mapping
from actorbus.exceptions import TopologyError

NAMES = ["orders.topic", "a", "a.b.c", "", "x y", "a..b", "*", ">", "%", "é.ü", "#", "q.dlq"]
KEYS = ["order.created", "order.created.v2", "order", "stock.x", "a b.c", "", "x", "%.>", "é"]
PATTERNS = ["order.created", "order.*", "order.#", "#", "*.x", "*", "a b.c", "%.>", "*.*"]


@pytest.mark.parametrize("exchange", NAMES)
def test_a_routing_key_comes_back_from_its_subject(exchange: str) -> None:
    prefix = len(nats_subjects.exchange_prefix(exchange).split("."))
    for key in KEYS + NAMES:
        subject = nats_subjects.subject_for(exchange, key)
        if exchange:
            assert _mapping.decode_key(subject.split(".")[prefix:]) == key
        assert _mapping.subject_for(exchange, key) == subject  # the cached one


@pytest.mark.parametrize("pattern", PATTERNS)
def test_topic_filters_match_what_the_amqp_pattern_matches(pattern: str) -> None:
    filters = nats_subjects.filters_for("orders.topic", "topic", pattern)
    # Not the empty key: it is one token ``%`` on NATS (so ``*`` matches it), while AMQP
    # brokers disagree on whether it is zero words or one empty word.
    words = [".".join(p) for p in itertools.product(["order", "x"], repeat=3)]
    for key in [k for k in KEYS if k] + words:
        subject = nats_subjects.subject_for("orders.topic", key)
        nats = any(_mapping.subject_matches(f, subject) for f in filters)
        assert nats == topic_matches(pattern, key), (pattern, key, filters)


def test_a_hash_before_the_last_word_is_refused() -> None:
    with pytest.raises(TopologyError, match="'#' before its last word"):
        nats_subjects.filters_for("orders.topic", "topic", "a.#.b")


def test_fanout_and_direct_filters() -> None:
    assert nats_subjects.filters_for("fan", "fanout", "ignored") == ["fan.>"]
    assert nats_subjects.filters_for("d.x", "direct", "a.*") == ["d.x.a.%2a"]
