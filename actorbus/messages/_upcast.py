"""Upcasters: plain functions that turn a message of one version into the next version.

An upcaster is registered per source type: ``OrderCreated`` (v1) → ``OrderCreatedV2`` (v2).
Each type has at most one upcaster, and it always goes to a higher version, so the steps
from any type form a single chain without cycles; :meth:`Upcasters.chain` composes the steps
from a type to a target once, at start-up, into one function.

The two types may share a wire name (an additive change that still bumped the version) or
not (``order.created`` → ``order.created.v2``); either way the function receives an
instance of the source type and returns an instance of the target type.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec

from ..exceptions import ConfigurationError, DecodeError
from ._base import Message, describe, is_concrete

__all__ = ("Upcaster", "Upcasters")

#: An upcaster: receives a message of the older type, returns one of the newer type.
Upcaster = Callable[[Any], Message]

_Step = tuple[type[Message], type[Message], Upcaster]


class Upcasters:
    """The upcasters of one registry, one per source type.

    Attributes are read-only after start-up; nothing here runs per message except the
    functions returned by :meth:`chain`.
    """

    __slots__ = ("_steps",)

    def __init__(self) -> None:
        self._steps: dict[type[Message], _Step] = {}

    def add(self, from_type: type[Message], to_type: type[Message], fn: Upcaster) -> None:
        """Register ``fn`` to turn a ``from_type`` message into a ``to_type`` message.

        Args:
            from_type: The older type (a concrete message type).
            to_type: The newer type; its version must be higher than ``from_type``'s.
            fn: A plain function ``from_type -> to_type``. It runs per upcast message, so
                keep it cheap; if it raises, the message counts as undecodable. The result
                keeps the older message's ``event_id`` and ``occurred_at`` (an upcast is the
                same fact in a newer shape), whether or not ``fn`` passed them on.

        Raises:
            ConfigurationError: A type is abstract or not a message type, the versions do not
                increase, ``fn`` is not callable, or ``from_type`` already has an upcaster.
        """
        for candidate in (from_type, to_type):
            if not is_concrete(candidate):
                raise ConfigurationError(
                    f"cannot add an upcaster for {candidate!r}: upcasters connect concrete message "
                    "types (declared with routing_key= and version=)"
                )
        if to_type.__version__ <= from_type.__version__:
            raise ConfigurationError(
                f"upcaster {describe(from_type)} -> {describe(to_type)} does not raise the "
                "version: an upcaster goes from an older version to a newer one"
            )
        if not callable(fn):
            raise ConfigurationError(f"upcaster for {describe(from_type)} is not callable: {fn!r}")
        existing = self._steps.get(from_type)
        if existing is not None:
            raise ConfigurationError(
                f"{describe(from_type)} already has an upcaster to {describe(existing[1])}; "
                "each type upcasts to exactly one next version"
            )
        self._steps[from_type] = (from_type, to_type, fn)

    def next_of(self, type_: type[Message]) -> type[Message] | None:
        """Return the type that ``type_`` upcasts to, or ``None`` if it has no upcaster."""
        step = self._steps.get(type_)
        return None if step is None else step[1]

    def path(self, from_type: type[Message], target: type[Message]) -> list[type[Message]] | None:
        """Return the types from ``from_type`` to ``target`` (both included), or ``None``.

        ``[from_type]`` when they are the same type; ``None`` when no chain of upcasters
        leads from one to the other.
        """
        types = [from_type]
        current: type[Message] | None = from_type
        while current is not target:
            current = self.next_of(current)  # type: ignore[arg-type]
            if current is None:
                return None
            types.append(current)
        return types

    def chain(
        self, from_type: type[Message], target: type[Message]
    ) -> Callable[[Message], Message] | None:
        """Compose the upcasters from ``from_type`` to ``target`` into one function.

        Returns:
            ``None`` when ``from_type`` is ``target`` (nothing to do); otherwise a function
            that applies each step in turn.

        Raises:
            ConfigurationError: No chain of upcasters leads from ``from_type`` to ``target``.
        """
        types = self.path(from_type, target)
        if types is None:
            raise ConfigurationError(
                f"no upcaster chain from {describe(from_type)} to {describe(target)}; add one "
                "with registry.add_upcaster(from_type, to_type, fn) for each version step"
            )
        if len(types) == 1:
            return None
        steps = tuple(self._steps[type_] for type_ in types[:-1])

        def upcast(message: Message) -> Message:
            for source, dest, fn in steps:
                older = message
                try:
                    message = fn(message)
                except Exception as exc:
                    raise DecodeError(
                        describe(dest),
                        f"upcaster {_name(fn)} from {describe(source)} failed: "
                        f"{type(exc).__name__}: {exc}",
                        routing_key=dest.__routing_key__,
                        version=dest.__version__,
                    ) from exc
                if not isinstance(message, dest):
                    raise DecodeError(
                        describe(dest),
                        f"upcaster {_name(fn)} from {describe(source)} returned "
                        f"{type(message).__qualname__}, expected {dest.__qualname__}",
                        routing_key=dest.__routing_key__,
                        version=dest.__version__,
                    )
                if message.event_id != older.event_id or message.occurred_at != older.occurred_at:
                    # The same fact in a newer shape: an upcaster that built the new version
                    # without passing them on must not give it a new identity.
                    message = msgspec.structs.replace(
                        message, event_id=older.event_id, occurred_at=older.occurred_at
                    )
            return message

        return upcast


def _name(fn: Upcaster) -> str:
    return getattr(fn, "__qualname__", None) or repr(fn)
