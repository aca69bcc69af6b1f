"""The registry of trusted message types and the per-name decoders built from it.

Only registered types are ever decoded: a wire name is looked up in the registry, never
imported. A *wire name* (routing key, AMQP ``type``) may have several registered schema
versions; the registry maps ``(wire name, schemaVersion)`` to a type.

Versions and names:

* Different wire names are different names: ``order.created`` and ``order.created.v2`` are
  looked up separately, even if their types are versions of one business event.
* An upcaster turns a type into the next version, within one name or across names. A
  consumer that handles only ``OrderCreatedV2`` can still take ``order.created`` v1 payloads
  with ``registry.decoder("order.created", target=OrderCreatedV2)`` once
  ``OrderCreated -> OrderCreatedV2`` is registered with :meth:`MessageRegistry.add_upcaster`.

Typical start-up, then the hot path::

    registry = MessageRegistry()
    registry.register(OrderCreated, OrderCreatedV2)
    registry.add_upcaster(OrderCreated, OrderCreatedV2, order_created_v1_to_v2)
    decode = registry.decoder("order.created", target=OrderCreatedV2).decode
    ...
    message = decode(delivery.body, delivery.envelope.headers.get(SCHEMA_VERSION_HEADER))
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Final, Generic, Protocol, TypeVar, overload

import msgspec

from ..exceptions import (
    ConfigurationError,
    DecodeError,
    UnknownMessageTypeError,
    UnsupportedVersionError,
)
from ._base import Message, MessageMeta, describe, is_concrete
from ._codec import Codec, JsonCodec
from ._upcast import Upcaster, Upcasters

__all__ = ("DecodeFunction", "MessageDecoder", "MessageRegistry", "SCHEMA_VERSION_HEADER")

#: The header that carries the schema version beside the body (AMQP ``x-schema-version``).
SCHEMA_VERSION_HEADER: Final = "x-schema-version"

#: What a payload without ``schemaVersion`` is taken to be when it does not fit the
#: expected version: payloads from before versioning are version 1.
_DEFAULT_VERSION: Final = 1

M = TypeVar("M", bound=Message)

# Entry per supported version: the type to decode as, and the composed upcaster to the
# decoder's target (None when the type is the target).
_Entry = tuple[type[Message], Callable[[Any], Any] | None]


class _VersionPeek(msgspec.Struct, rename="camel"):
    """Reads only ``schemaVersion`` (msgspec skips the rest without building it)."""

    schema_version: int | None = None


M_co = TypeVar("M_co", bound=Message, covariant=True)


class DecodeFunction(Protocol[M_co]):
    """The type of :attr:`MessageDecoder.decode`: ``decode(body, version=None) -> message``."""

    def __call__(self, body: bytes, version: int | None = None) -> M_co:
        """Decode ``body`` and upcast it to the decoder's :attr:`~MessageDecoder.target`.

        The version is the ``x-schema-version`` header when the caller has it; otherwise
        it is read from the payload's ``schemaVersion``: the body is decoded as the newest
        supported version and, if its ``schemaVersion`` says otherwise, decoded again as that
        version. A payload without ``schemaVersion`` is the version it was decoded as, or
        version 1 if it does not fit the newest one. A payload is only ever returned as the
        version it states: each message type's ``schemaVersion`` is ``Literal[version]``,
        which the codec enforces.

        Args:
            body: The message body.
            version: The schema version from the transport's headers, if any (AMQP header
                tables may carry it as a string of digits). A header that disagrees with
                the payload's ``schemaVersion`` is a decode error, reported as such whatever
                else is wrong with the payload.

        Returns:
            The message, as an instance of the decoder's target.

        Raises:
            MessageTooLargeError: ``body`` exceeds the codec's size limit (checked before
                parsing).
            DecodeError: ``body`` is malformed, does not fit its version's type, contradicts
                the header (at ``$.schemaVersion``), or an upcaster failed.
            UnsupportedVersionError: The version is not registered under the decoder's
                name, or has no upcaster chain to its target.
        """
        ...


class MessageDecoder(Generic[M]):
    """Decodes the payloads that arrive under one wire name into one target type.

    Built by :meth:`MessageRegistry.decoder` at start-up; holds everything decided once (the
    type per version, the composed upcasters, the codec's unchecked typed decoder), so that
    :attr:`decode` costs one size check, one version comparison and one typed decode in the
    common case. Everything unusual (an older version, an error) takes a slower, fully
    checked path.

    Attributes:
        name: The wire name it decodes.
        target: The type every decoded message is returned as.
        versions: The supported schema versions, ascending.
        decode: ``decode(body, version=None) -> message``: decode ``body`` and upcast it to
            :attr:`target` (see :meth:`DecodeFunction.__call__` for the version rules and
            errors). A function built once per decoder, stored on the instance rather than a
            method, so that a message costs one Python call around msgspec's typed decode:
            no attribute lookups, and no check after decoding, since the message types'
            ``Literal`` ``schemaVersion`` makes msgspec reject a payload of another version.
    """

    __slots__ = (
        "_decode",
        "_entries",
        "_fast_type",
        "_fast_upcast",
        "_fast_version",
        "_hint",
        "decode",
        "name",
        "target",
        "versions",
    )

    decode: DecodeFunction[M]

    def __init__(
        self,
        name: str,
        target: type[M],
        entries: Mapping[int, _Entry],
        codec: Codec,
        hint: str = "",
    ) -> None:
        """Create a decoder; use :meth:`MessageRegistry.decoder` instead.

        Args:
            name: The wire name.
            target: The type to return.
            entries: Per supported version: the type to decode as and the upcaster to
                ``target`` (``None`` for ``target`` itself). Must not be empty.
            codec: The codec; its types must be prepared.
            hint: Appended to :class:`UnsupportedVersionError` messages.

        Raises:
            ConfigurationError: ``entries`` is empty.
        """
        if not entries:
            raise ConfigurationError(f"a decoder for {name!r} needs at least one version")
        self.name = name
        self.target = target
        self.versions = tuple(sorted(entries))
        self._entries = dict(entries)
        self._decode: Callable[[bytes, type[Any]], Any] = codec.decode
        self._hint = hint
        # The newest supported version is tried first: it is what producers publish now.
        self._fast_version = self.versions[-1]
        self._fast_type, self._fast_upcast = self._entries[self._fast_version]
        self.decode = self._build_decode(codec.unchecked_decoder(self._fast_type), codec.max_size)

    def __repr__(self) -> str:
        return (
            f"MessageDecoder(name={self.name!r}, target={self.target.__qualname__}, "
            f"versions={self.versions})"
        )

    def _build_decode(self, fast: Callable[[bytes], Any], max_size: int) -> DecodeFunction[M]:
        # The hot path, as a closure over what was decided at start-up: no attribute lookups
        # per message. `fast` is msgspec's typed decoder of the newest version; the type's
        # Literal schemaVersion makes it raise on a payload of another version, so what it
        # returns is that version. Anything else (a header naming another version, a body
        # that is too large or does not decode) goes to the checked path, which raises the
        # codec's errors or finds an older version; it runs after the `except` block, so its
        # errors do not chain msgspec's. Errors are rare: decoding twice then is fine.
        fast_version = self._fast_version
        upcast = self._fast_upcast
        checked = self._decode_checked

        if upcast is None:

            def decode(body: bytes, version: int | None = None) -> M:
                if (version == fast_version or version is None) and len(body) <= max_size:
                    try:
                        return fast(body)  # type: ignore[no-any-return]
                    except Exception:  # redone below, where it raises the checked error
                        pass
                return checked(body, version)

        else:
            upcast_fast = upcast  # not Optional: what the closure sees

            def decode(body: bytes, version: int | None = None) -> M:
                if (version == fast_version or version is None) and len(body) <= max_size:
                    try:
                        message = fast(body)
                    except Exception:  # redone below, where it raises the checked error
                        pass
                    else:
                        return upcast_fast(message)  # type: ignore[no-any-return]
                return checked(body, version)

        decode.__doc__ = DecodeFunction.__call__.__doc__
        decode.__qualname__ = f"{type(self).__qualname__}.decode"
        return decode

    def _decode_checked(self, body: bytes, version: object) -> M:
        if version is not None:
            return self._decode_as(body, version)
        try:
            message: M = self._decode(body, self._fast_type)
        except DecodeError as exc:
            return self._retry_other_version(body, exc)
        upcast = self._fast_upcast
        return message if upcast is None else upcast(message)

    def _decode_as(self, body: bytes, version: object) -> M:
        entry = self._entries.get(version) if isinstance(version, int) else None
        if entry is None:
            # AMQP header tables may carry the version as a string.
            if isinstance(version, str | bytes) and version.isdigit():
                return self._decode_as(body, int(version))
            raise UnsupportedVersionError(self.name, version, self.versions, hint=self._hint)
        type_, upcast = entry
        try:
            message = self._decode(body, type_)
        except DecodeError:
            # The type's Literal schemaVersion rejects a payload of another version; say
            # that the header and the payload disagree, whatever else is wrong with it.
            peek = self._peek(body)
            stated = None if peek is None else peek.schema_version
            if stated is None or stated == version:
                raise
            raise DecodeError(
                describe(type_),
                f"the {SCHEMA_VERSION_HEADER} header says {version!r} but the payload's "
                f"schemaVersion is {stated!r}",
                payload=body,
                routing_key=type_.__routing_key__,
                version=type_.__version__,
                path="$.schemaVersion",
            ) from None
        return message if upcast is None else upcast(message)  # type: ignore[no-any-return]

    def _peek(self, body: bytes) -> _VersionPeek | None:
        # The payload's schemaVersion alone; None if the body is not even an object whose
        # schemaVersion (if any) is an int.
        try:
            return self._decode(body, _VersionPeek)  # type: ignore[no-any-return]
        except DecodeError:
            return None

    def _retry_other_version(self, body: bytes, error: DecodeError) -> M:
        # The body does not fit the newest version; it may be an older one.
        peek = self._peek(body)
        if peek is None:
            raise error
        version = peek.schema_version
        if version is None:
            if self._fast_version == _DEFAULT_VERSION or _DEFAULT_VERSION not in self._entries:
                raise error
            version = _DEFAULT_VERSION
        elif version == self._fast_version:
            raise error
        return self._decode_as(body, version)


class MessageRegistry:
    """The trusted message types of an app, by wire name and schema version.

    Register every type the app decodes at start-up, add upcasters, then build one
    :class:`MessageDecoder` per subscribed wire name with :meth:`decoder`.

    Args:
        codec: The codec used to decode (and :meth:`encode`); a :class:`JsonCodec` with the
            default size limit if omitted.
    """

    __slots__ = ("_by_name", "_codec", "_decoders", "_target_decoders", "_types", "_upcasters")

    def __init__(self, codec: Codec | None = None) -> None:
        self._codec: Codec = JsonCodec() if codec is None else codec
        self._by_name: dict[str, dict[int, type[Message]]] = {}
        self._types: dict[type[Message], None] = {}  # insertion-ordered set
        self._upcasters = Upcasters()
        self._decoders: dict[str, MessageDecoder[Message]] = {}
        self._target_decoders: dict[tuple[str, type[Message]], MessageDecoder[Any]] = {}

    def __repr__(self) -> str:
        return f"MessageRegistry(types={[describe(t) for t in self._types]})"

    @property
    def codec(self) -> Codec:
        """The codec this registry decodes with."""
        return self._codec

    @property
    def types(self) -> tuple[type[Message], ...]:
        """All registered types, in registration order."""
        return tuple(self._types)

    @property
    def names(self) -> frozenset[str]:
        """All registered wire names."""
        return frozenset(self._by_name)

    def __contains__(self, type_: object) -> bool:
        return type_ in self._types

    def register(self, *types: type[Message]) -> None:
        """Trust ``types``: make them decodable by their wire name and version.

        Registering a type again is a no-op. Either all ``types`` are registered or, on
        error, none.

        Raises:
            ConfigurationError: A type is not a message type, is abstract (declares no
                routing key), or another type already holds its wire name and version.
        """
        pending: dict[tuple[str, int], type[Message]] = {}
        for type_ in types:
            if not isinstance(type_, MessageMeta):
                raise ConfigurationError(
                    f"cannot register {type_!r}: only subclasses of Event or Command "
                    "(actorbus.messages.Message) are message types"
                )
            if not is_concrete(type_):
                raise ConfigurationError(
                    f"cannot register {type_.__qualname__}: it declares no routing key, so it "
                    f"is abstract; declare it as class {type_.__qualname__}(Event, "
                    "routing_key='...', version=1)"
                )
            key = (type_.__routing_key__, type_.__version__)
            holder = self._by_name.get(key[0], {}).get(key[1]) or pending.get(key)
            if holder is not None and holder is not type_:
                raise ConfigurationError(
                    f"cannot register {type_.__module__}.{type_.__qualname__} as {key[0]!r} "
                    f"version {key[1]}: {holder.__module__}.{holder.__qualname__} is already "
                    "registered under that name and version; give the new type another "
                    "version or routing key"
                )
            pending[key] = type_
        for (name, version), type_ in pending.items():
            if type_ in self._types:
                continue
            self._codec.prepare(type_)
            self._by_name.setdefault(name, {})[version] = type_
            self._types[type_] = None
        self._forget_decoders()

    def add_upcaster(self, from_type: type[Message], to_type: type[Message], fn: Upcaster) -> None:
        """Register ``fn`` to turn ``from_type`` messages into ``to_type`` messages.

        Both types are registered if they are not yet. Chains compose: with
        ``V1 -> V2`` and ``V2 -> V3``, a decoder targeting ``V3`` upcasts V1 payloads in two
        steps. Decoders built before this call do not see the new upcaster.

        Args:
            from_type: The older type.
            to_type: The newer type (a higher version).
            fn: ``from_type`` instance -> ``to_type`` instance. If it raises, decoding
                raises :class:`~actorbus.exceptions.DecodeError`.

        Raises:
            ConfigurationError: See :meth:`register` and :meth:`Upcasters.add`.
        """
        self._upcasters.add(from_type, to_type, fn)
        self.register(from_type, to_type)

    def versions(self, name: str) -> dict[int, type[Message]]:
        """Return the registered types of wire name ``name``, by schema version.

        Raises:
            UnknownMessageTypeError: ``name`` is not registered.
        """
        by_version = self._by_name.get(name)
        if by_version is None:
            raise UnknownMessageTypeError(name, self._by_name)
        return dict(sorted(by_version.items()))

    def get(self, name: str, version: int) -> type[Message]:
        """Return the type registered as ``name`` version ``version``.

        Raises:
            UnknownMessageTypeError: ``name`` is not registered.
            UnsupportedVersionError: ``name`` has no type of that version.
        """
        by_version = self.versions(name)
        type_ = by_version.get(version)
        if type_ is None:
            raise UnsupportedVersionError(name, version, by_version)
        return type_

    @overload
    def decoder(self, name: str) -> MessageDecoder[Message]: ...
    @overload
    def decoder(self, name: str, target: type[M]) -> MessageDecoder[M]: ...

    def decoder(self, name: str, target: type[Message] | None = None) -> MessageDecoder[Any]:
        """Return the decoder for wire name ``name``, built once and cached.

        Args:
            name: The wire name (routing key / AMQP ``type``) the payloads arrive under.
            target: The type to return; the newest registered version of ``name`` if
                omitted. Each registered version of ``name`` that is ``target`` or has an
                upcaster chain to it is supported; other versions raise
                :class:`~actorbus.exceptions.UnsupportedVersionError` when they arrive.

        Raises:
            UnknownMessageTypeError: ``name`` is not registered.
            ConfigurationError: ``target`` is not registered, or no registered version of
                ``name`` is ``target`` or upcasts to it.
        """
        if target is None:
            found = self._decoders.get(name)
            if found is None:
                by_version = self.versions(name)
                found = self._build(name, by_version[max(by_version)])
                self._decoders[name] = found
            return found
        key = (name, target)
        cached = self._target_decoders.get(key)
        if cached is None:
            cached = self._target_decoders[key] = self._build(name, target)
        return cached

    def decode(self, name: str, body: bytes, version: int | None = None) -> Message:
        """Decode ``body`` that arrived under wire name ``name`` (as its newest version).

        A convenience for ``registry.decoder(name).decode(body, version)``.

        Raises:
            UnknownMessageTypeError: ``name`` is not registered.
            MessageTooLargeError, DecodeError, UnsupportedVersionError: See
                :meth:`MessageDecoder.decode`.
        """
        return self.decoder(name).decode(body, version)

    def encode(self, message: Message) -> bytes:
        """Return the body of ``message``, encoded by the registry's codec.

        Raises:
            MessageTooLargeError: The body exceeds the codec's size limit.
        """
        return self._codec.encode(message)

    def _build(self, name: str, target: type[Message]) -> MessageDecoder[Any]:
        by_version = self.versions(name)
        if target not in self._types:
            raise ConfigurationError(
                f"cannot decode {name!r} into {target.__qualname__}: it is not registered; "
                f"call registry.register({target.__qualname__}) first"
            )
        entries: dict[int, _Entry] = {}
        unreachable: list[str] = []
        for version, type_ in by_version.items():
            if self._upcasters.path(type_, target) is None:
                unreachable.append(f"version {version} ({type_.__qualname__})")
            else:
                entries[version] = (type_, self._upcasters.chain(type_, target))
        hint = ""
        if unreachable:
            hint = (
                f"{', '.join(unreachable)} is registered but has no upcaster chain to "
                f"{describe(target)}; add one with registry.add_upcaster()"
            )
        if not entries:
            raise ConfigurationError(
                f"cannot decode {name!r} into {describe(target)}: no registered version of "
                f"{name!r} is that type or upcasts to it ({hint})"
            )
        return MessageDecoder(name, target, entries, self._codec, hint)

    def _forget_decoders(self) -> None:
        # Decoders snapshot the registry; a change builds fresh ones on next use.
        self._decoders.clear()
        self._target_decoders.clear()
