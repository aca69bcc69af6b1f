"""Topic-pattern matching and exchange routing tables."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from actorbus.brokers import nearest_tier
from actorbus.brokers._routing import (
    Router,
    compile_topic,
    is_wildcard,
    split_routing_key,
    topic_matches,
)

MATCHES = [
    # exact words
    ("order.created", "order.created", True),
    ("order.created", "order.created.v2", False),
    ("order.created", "Order.created", False),
    ("a*b", "a*b", True),  # wildcards only count as whole words
    ("a*b", "axb", False),
    ("a#", "a", False),
    # * is exactly one word
    ("order.*", "order.created", True),
    ("order.*", "order", False),
    ("order.*", "order.created.v2", False),
    ("*.created", "order.created", True),
    ("*", "order", True),
    ("*", "", False),  # the empty key has zero words
    ("*.*", "a", False),
    ("order.*.created", "order.uk.created", True),
    ("order.*.created", "order.created", False),
    # # is zero or more words
    ("#", "", True),
    ("#", "a", True),
    ("#", "a.b.c", True),
    ("#.#", "", True),
    ("#.#", "a.b", True),
    ("a.#", "a", True),
    ("a.#", "a.b.c", True),
    ("a.#", "b.a", False),
    ("#.a", "a", True),
    ("#.a", "x.y.a", True),
    ("#.a", "a.x", False),
    ("a.#.b", "a.b", True),
    ("a.#.b", "a.x.y.b", True),
    ("a.#.b", "a.x.y", False),
    ("a.#.#.b", "a.b", True),
    ("#.b.#", "b", True),
    ("#.b.#", "a.b.c", True),
    ("#.b.#", "a.c", False),
    # * and # together
    ("a.*.#", "a", False),
    ("a.*.#", "a.b", True),
    ("a.*.#", "a.b.c.d", True),
    ("#.*", "", False),
    ("#.*", "a", True),
    ("*.#.*", "a", False),
    ("*.#.*", "a.b", True),
    ("*.created.#", "order.created", True),
    ("*.created.#", "order.created.v2", True),
    # the empty key and empty words (RabbitMQ: "" is zero words, "a..b" has an empty word)
    ("", "", True),
    ("a", "", False),
    ("", "a", False),
    ("a.*.b", "a..b", True),
    ("a..b", "a..b", True),
    ("a.b", "a..b", False),
    ("a.#.b", "a..b", True),
    ("*", ".", False),
    ("*.*", ".", True),
    ("a.*", "a.", True),
    # regex metacharacters are literal
    ("a+b.(c)", "a+b.(c)", True),
    ("a+b.*", "aab.x", False),
]


@pytest.mark.parametrize(("pattern", "key", "expected"), MATCHES)
def test_topic_matches(pattern: str, key: str, expected: bool) -> None:
    assert topic_matches(pattern, key) is expected
    assert compile_topic(pattern).matches(key) is expected


@pytest.mark.parametrize(
    ("key", "words"),
    [("", ()), ("a", ("a",)), ("a.b", ("a", "b")), (".", ("", "")), ("a.", ("a", ""))],
)
def test_split_routing_key(key: str, words: tuple[str, ...]) -> None:
    assert split_routing_key(key) == words


def test_hash_runs_collapse() -> None:
    assert compile_topic("a.#.#.#.b").words == ("a", "#", "b")


@pytest.mark.parametrize(
    ("pattern", "wildcard"), [("a.b", False), ("a.*", True), ("#", True), ("a*", False)]
)
def test_is_wildcard(pattern: str, wildcard: bool) -> None:
    assert is_wildcard(pattern) is wildcard


_word = st.sampled_from(["a", "b", "", "order"])


def _reference(pattern: tuple[str, ...], key: tuple[str, ...]) -> bool:
    """Straightforward recursive definition of AMQP topic matching."""
    if not pattern:
        return not key
    head, rest = pattern[0], pattern[1:]
    if head == "#":
        return any(_reference(rest, key[i:]) for i in range(len(key) + 1))
    if not key:
        return False
    return (head == "*" or head == key[0]) and _reference(rest, key[1:])


@given(
    st.lists(st.one_of(_word, st.sampled_from(["*", "#"])), max_size=5),
    st.lists(_word, max_size=5),
)
def test_matches_reference_definition(pattern: list[str], key: list[str]) -> None:
    pattern_text, key_text = ".".join(pattern), ".".join(key)
    expected = _reference(split_routing_key(pattern_text), split_routing_key(key_text))
    assert topic_matches(pattern_text, key_text) is expected


def test_router_exact_then_patterns_in_binding_order() -> None:
    router: Router[str] = Router("topic")
    router.bind("order.#", "audit")
    router.bind("order.created", "inventory")
    router.bind("order.*", "notification")
    router.bind("stock.reserved", "notification")
    assert router.route("order.created") == ("audit", "inventory", "notification")
    assert router.route("order.created.v2") == ("audit",)
    assert router.route("stock.reserved") == ("notification",)
    assert router.route("nothing") == ()


def test_router_returns_each_destination_once() -> None:
    router: Router[str] = Router("topic")
    router.bind("#", "q")
    router.bind("a.*", "q")
    router.bind("a.b", "q")
    assert router.route("a.b") == ("q",)


def test_router_bind_is_idempotent_and_invalidates_cache() -> None:
    router: Router[str] = Router("topic")
    assert router.bind("a.*", "q1")
    assert not router.bind("a.*", "q1")
    assert router.route("a.b") == ("q1",)
    router.bind("a.b", "q2")
    assert router.route("a.b") == ("q1", "q2")
    assert router.unbind("a.*", "q1")
    assert not router.unbind("a.*", "q1")
    assert router.route("a.b") == ("q2",)
    assert router.unbind_destination("q2") == 1
    assert router.route("a.b") == ()
    assert router.bindings == ()


def test_router_cache_is_bounded() -> None:
    router: Router[str] = Router("topic", cache_size=4)
    router.bind("k.*", "q")
    for i in range(10):
        assert router.route(f"k.{i}") == ("q",)
    assert len(router._cache) <= 4


def test_direct_router_matches_literally() -> None:
    router: Router[str] = Router("direct")
    router.bind("a.*", "q")
    assert router.route("a.b") == ()
    assert router.route("a.*") == ("q",)


def test_fanout_router_ignores_the_key() -> None:
    router: Router[str] = Router("fanout")
    router.bind("", "q1")
    router.bind("x", "q2")
    router.bind("y", "q1")
    assert router.route("anything.at.all") == ("q1", "q2")
    assert router.route("") == ("q1", "q2")


def test_pattern_repr() -> None:
    assert re.search(r"order\.\*", repr(compile_topic("order.*")))


@pytest.mark.parametrize(
    ("delay", "tier"),
    [(0.0, 0.5), (0.45, 0.5), (0.55, 0.5), (0.9, 0.5), (1.2, 2.0), (2.2, 2.0), (6.0, 10.0),
     (600.0, 30.0)],
)  # fmt: skip
def test_nearest_retry_tier_keeps_jittered_delays_in_their_tier(delay: float, tier: float) -> None:
    assert nearest_tier((0.5, 2.0, 10.0, 30.0), delay) == tier
