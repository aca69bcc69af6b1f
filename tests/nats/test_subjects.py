"""``actorbus.brokers.nats_subjects`` (what describe documents) agrees with the broker's mapping.

The NATS broker declares topology with :mod:`actorbus.brokers.nats_subjects`; the publish and
delivery paths still have their own copies in ``actorbus.brokers.nats._mapping``. Until those
import the shared module, this pins the two to the same answers.
"""

from __future__ import annotations

import pytest

from actorbus.brokers import nats_subjects
from actorbus.brokers.nats import _mapping
from actorbus.exceptions import TopologyError

NAMES = ["orders.topic", "a", "a.b.c", "", "x y", "a..b", "*", ">", "%", "é.ü", "#", "q.dlq"]
PATTERNS = ["order.created", "order.*", "order.#", "#", "*.x", "", "a b.c", "a.#.b", "%.>"]


@pytest.mark.parametrize("name", NAMES)
def test_names_agree(name: str) -> None:
    assert nats_subjects.exchange_prefix(name) == _mapping.exchange_prefix(name)
    assert nats_subjects.stream_name(name) == _mapping.stream_name(name)
    assert nats_subjects.direct_subject(name) == _mapping.direct_subject(name)
    assert nats_subjects.retry_subject(name) == _mapping.retry_subject(name)
    assert nats_subjects.home_stream(name) == _mapping.home_stream(name)
    assert nats_subjects.kv_key(name) == _mapping.kv_key(name)
    for role in ("home", "retry", "orders_topic orders.topic.a"):
        assert nats_subjects.consumer_name(name, role) == _mapping.consumer_name(name, role)
    for key in NAMES:
        assert nats_subjects.subject_for(name, key) == _mapping.subject_for(name, key)


@pytest.mark.parametrize("pattern", PATTERNS)
@pytest.mark.parametrize("kind", ["topic", "direct", "fanout"])
def test_filters_agree(pattern: str, kind: str) -> None:
    try:
        expected = _mapping.filters_for("orders.topic", kind, pattern)
    except TopologyError:
        with pytest.raises(TopologyError):
            nats_subjects.filters_for("orders.topic", kind, pattern)
        return
    assert nats_subjects.filters_for("orders.topic", kind, pattern) == expected


def test_the_constants_agree() -> None:
    assert (nats_subjects.DIRECT_STREAM, nats_subjects.DLQ_STREAM) == (
        _mapping.DIRECT_STREAM,
        _mapping.DLQ_STREAM,
    )
