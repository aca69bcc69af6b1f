"""Routing-key matching and per-exchange routing tables, built once per binding.

AMQP topic semantics, as RabbitMQ implements them:

* A routing key is a list of words separated by ``.``; the empty key has *zero* words, and an
  empty string between two dots is a real (empty) word (``"a..b"`` has three words).
* In a binding pattern, ``*`` matches exactly one word (which may be empty, but never a
  missing one), ``#`` matches zero or more words. Wildcards are only special as whole words:
  ``"a*"`` is a literal word.
* ``#`` alone matches every key, including the empty key; ``a.#`` matches ``a``.

Each pattern is compiled once when bound. An exchange routes a key by looking it up in a dict
of exact bindings first, then testing the wildcard patterns; the result is cached per routing
key, and the cache is dropped whenever a binding changes.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

from ._protocol import ExchangeType

__all__ = (
    "Router",
    "TopicPattern",
    "compile_topic",
    "is_wildcard",
    "split_routing_key",
    "topic_matches",
)

T = TypeVar("T", bound=Hashable)

_WORD = r"\.[^.]*"


def split_routing_key(key: str) -> tuple[str, ...]:
    """Split a routing key (or pattern) into its words.

    Args:
        key: A dotted routing key, e.g. ``"order.created.v2"``.

    Returns:
        The words; ``()`` for the empty key, ``("", "")`` for ``"."``.
    """
    if not key:
        return ()
    return tuple(key.split("."))


def is_wildcard(pattern: str) -> bool:
    """Return whether a binding pattern contains a ``*`` or ``#`` word."""
    return any(word in ("*", "#") for word in split_routing_key(pattern))


class TopicPattern:
    """A topic binding pattern compiled for repeated matching.

    Attributes:
        pattern: The pattern as bound, e.g. ``"order.*.#"``.
        words: Its words, with runs of ``#`` collapsed to one.
    """

    __slots__ = ("_match", "pattern", "words")

    def __init__(self, pattern: str) -> None:
        self.pattern = pattern
        words: list[str] = []
        for word in split_routing_key(pattern):
            if word == "#" and words and words[-1] == "#":
                continue  # "#.#" matches exactly what "#" matches
            words.append(word)
        self.words = tuple(words)
        self._match = self._build()

    def _build(self) -> Callable[[str], bool]:
        words = self.words
        if "*" not in words and "#" not in words:
            return _equals(self.pattern)
        if words == ("#",):
            return _match_everything
        # The key is matched as a sequence of ".word" tokens ("" for zero words), so that
        # "#" can consume zero tokens without leaving a stray dot behind.
        parts: list[str] = []
        for word in words:
            if word == "#":
                parts.append(f"(?:{_WORD})*")
            elif word == "*":
                parts.append(_WORD)
            else:
                parts.append(r"\." + re.escape(word))
        fullmatch = re.compile("".join(parts)).fullmatch

        def match(key: str) -> bool:
            return fullmatch("." + key if key else "") is not None

        return match

    def matches(self, key: str) -> bool:
        """Return whether routing key ``key`` matches this pattern."""
        return self._match(key)

    def __repr__(self) -> str:
        return f"TopicPattern({self.pattern!r})"


def _equals(pattern: str) -> Callable[[str], bool]:
    """Return a matcher for a pattern without wildcards: plain string equality."""
    return pattern.__eq__


def _match_everything(key: str) -> bool:
    return True


def compile_topic(pattern: str) -> TopicPattern:
    """Compile a topic binding pattern once, for many :meth:`TopicPattern.matches` calls."""
    return TopicPattern(pattern)


def topic_matches(pattern: str, key: str) -> bool:
    """Return whether ``key`` matches the topic ``pattern`` (compiles it on every call).

    Args:
        pattern: A binding pattern with ``*`` (one word) and ``#`` (zero or more words).
        key: A routing key.

    Returns:
        ``True`` if a topic exchange would route ``key`` through a binding with ``pattern``.
    """
    return TopicPattern(pattern).matches(key)


class Router(Generic[T]):
    """The routing table of one exchange: binding patterns to destinations.

    ``route`` is on the hot path: a dict hit for a routing key seen before; otherwise exact
    bindings are looked up in a dict and only wildcard patterns are tested one by one. A
    destination bound through several matching bindings is returned once, in binding order.

    Args:
        kind: ``topic`` (patterns), ``direct`` (exact keys only) or ``fanout`` (every
            destination, the key is ignored).
        cache_size: How many distinct routing keys to remember; the cache is cleared when
            full, so unbounded key spaces (a key per entity) cost memory only up to this.
    """

    __slots__ = ("_all", "_cache", "_cache_size", "_exact", "_kind", "_patterns", "cached")

    def __init__(self, kind: ExchangeType = "topic", *, cache_size: int = 4096) -> None:
        self._kind = kind
        self._cache_size = cache_size
        self._exact: dict[str, list[T]] = {}
        self._patterns: list[tuple[TopicPattern, T]] = []
        self._all: list[tuple[str, T]] = []
        self._cache: dict[str, tuple[T, ...]] = {}
        #: ``cached(key)``: the destinations of ``key`` if :meth:`route` resolved it since the
        #: last change of bindings, else ``None``; a dict lookup in C, for the hot path.
        self.cached: Callable[[str], tuple[T, ...] | None] = self._cache.get

    @property
    def kind(self) -> ExchangeType:
        """How this router routes: ``topic``, ``direct`` or ``fanout``."""
        return self._kind

    @property
    def bindings(self) -> tuple[tuple[str, T], ...]:
        """Every ``(pattern, destination)`` pair, in binding order."""
        return tuple(self._all)

    def bind(self, pattern: str, destination: T) -> bool:
        """Route keys matching ``pattern`` to ``destination``.

        Returns:
            ``False`` if exactly this binding existed already (binding is idempotent).
        """
        entry = (pattern, destination)
        if entry in self._all:
            return False
        self._all.append(entry)
        if self._kind == "topic" and is_wildcard(pattern):
            self._patterns.append((TopicPattern(pattern), destination))
        else:
            self._exact.setdefault(pattern, []).append(destination)
        self._cache.clear()
        return True

    def unbind(self, pattern: str, destination: T) -> bool:
        """Remove one binding; return ``False`` if it did not exist."""
        entry = (pattern, destination)
        if entry not in self._all:
            return False
        self._all.remove(entry)
        self._patterns = [(p, d) for p, d in self._patterns if (p.pattern, d) != entry]
        dests = self._exact.get(pattern)
        if dests is not None and destination in dests:
            dests.remove(destination)
            if not dests:
                del self._exact[pattern]
        self._cache.clear()
        return True

    def unbind_destination(self, destination: T) -> int:
        """Remove every binding to ``destination`` (e.g. a deleted queue); return how many."""
        removed = [pattern for pattern, dest in self._all if dest == destination]
        for pattern in removed:
            self.unbind(pattern, destination)
        return len(removed)

    def route(self, key: str) -> tuple[T, ...]:
        """Return the destinations of routing key ``key``, each once, in binding order."""
        try:
            return self._cache[key]
        except KeyError:
            pass
        result = self._resolve(key)
        cache = self._cache
        if len(cache) >= self._cache_size:
            cache.clear()
        cache[key] = result
        return result

    def _resolve(self, key: str) -> tuple[T, ...]:
        if self._kind == "fanout":
            return tuple(dict.fromkeys(dest for _, dest in self._all))
        found: dict[T, None] = dict.fromkeys(self._exact.get(key, ()))
        for pattern, dest in self._patterns:
            if dest not in found and pattern.matches(key):
                found[dest] = None
        if len(found) > 1 and self._patterns:
            # Keep binding order across exact and wildcard bindings.
            order = {dest: i for i, (_, dest) in reversed(list(enumerate(self._all)))}
            return tuple(sorted(found, key=order.__getitem__))
        return tuple(found)
