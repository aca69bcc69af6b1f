"""Codecs: turn messages into bytes and back. :class:`JsonCodec` is the default.

The codec sits on the hot path, so everything is decided once: one shared ``Encoder`` and one
typed ``Decoder`` per message type, built when the type is registered and reused for every
message (msgspec's "Reuse Encoders/Decoders" advice). Decoding is tolerant in the sense of
DESIGN §4: unknown fields are skipped and missing fields that have defaults get them; a
missing required field or a wrong type is a :class:`~actorbus.exceptions.DecodeError`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final, Protocol, TypeVar

import msgspec

from ..exceptions import ConfigurationError, DecodeError, MessageTooLargeError
from ._base import Message, MessageMeta, describe

__all__ = ("Codec", "DEFAULT_MAX_SIZE", "JsonCodec", "schema_of")

#: Default limit on the size of one message body: 1 MiB.
DEFAULT_MAX_SIZE: Final = 1024 * 1024

S = TypeVar("S", bound=msgspec.Struct)

_AT = " - at `"
_MISSING = "Object missing required field `"

# The envelope fields a message never gets by default on decode (see Message): what a
# DecodeError says when a payload lacks one.
_ENVELOPE = {
    "eventId": (
        "`$.eventId` is missing: a message's identity is never invented, so a payload "
        "without an eventId (the UUID consumers deduplicate by) is not accepted; have the "
        "producer send one"
    ),
    "occurredAt": (
        "`$.occurredAt` is missing: when a message occurred is never invented, so a payload "
        "without an occurredAt (RFC 3339, UTC) is not accepted; have the producer send it"
    ),
}


class Codec(Protocol):
    """Encodes messages to bytes and decodes bytes into a given message type.

    Both directions are synchronous and typed. Implementations build their per-type state in
    :meth:`prepare`, called once per type at registration, never per message.
    """

    @property
    def content_type(self) -> str:
        """The MIME type of encoded bodies (the AMQP ``content_type``)."""
        ...

    @property
    def max_size(self) -> int:
        """The largest body, in bytes, that :meth:`decode` accepts."""
        ...

    def prepare(self, *types: type[msgspec.Struct]) -> None:
        """Build whatever decoding ``types`` needs, so that decoding them allocates nothing more.

        Args:
            types: Message types (or other Structs) that will be decoded.
        """
        ...

    def encode(self, message: Message) -> bytes:
        """Return the body of ``message``."""
        ...

    def decode(self, body: bytes, type_: type[S]) -> S:
        """Decode ``body`` as ``type_``, validating every field against its type.

        That includes the ``Literal[version]`` type of a message's ``schemaVersion``:
        :class:`~actorbus.messages.MessageDecoder` relies on it to tell versions apart.

        Raises:
            MessageTooLargeError: ``body`` exceeds :attr:`max_size`.
            DecodeError: ``body`` is malformed or does not fit ``type_``.
        """
        ...

    def unchecked_decoder(self, type_: type[S]) -> Callable[[bytes], S]:
        """Return the prebuilt function that decodes bodies as ``type_``, for the hot path.

        It validates like :meth:`decode` (a message's ``Literal`` ``schemaVersion``
        included) but skips the size check and may raise the underlying library's errors:
        callers check :attr:`max_size` first and, when it raises, call :meth:`decode` for the
        checked error (:class:`~actorbus.messages.MessageDecoder` does both).
        """
        ...


class JsonCodec:
    """JSON on msgspec: one shared encoder, one typed decoder per type, a size limit.

    ``encode`` is the shared ``msgspec.json.Encoder``'s own ``encode`` method, so encoding
    costs exactly what msgspec costs. The size limit protects consumers: it is checked
    before decoding, so an oversized body costs nothing to reject; encoding is not limited.

    Args:
        max_size: Largest body, in bytes, that is decoded.

    Attributes:
        content_type: ``"application/json"``.
        max_size: The size limit, in bytes.
        encode: ``encode(message) -> bytes``: the JSON body of ``message``.

    Raises:
        ConfigurationError: ``max_size`` is not a positive int.
    """

    __slots__ = ("_decoders", "encode", "max_size")

    content_type: Final = "application/json"

    def __init__(self, max_size: int = DEFAULT_MAX_SIZE) -> None:
        if type(max_size) is not int or max_size < 1:
            raise ConfigurationError(
                f"invalid max_size {max_size!r}: the size limit is a positive number of bytes"
            )
        self.max_size: Final = max_size
        # The bound method itself, not a wrapper: a Python-level wrapper around it costs
        # ~50 ns, a quarter of encoding a 200-byte event.
        self.encode: Final[Callable[[Message], bytes]] = msgspec.json.Encoder().encode
        self._decoders: dict[type[Any], Callable[[bytes], Any]] = {}

    def __repr__(self) -> str:
        return f"JsonCodec(max_size={self.max_size})"

    def prepare(self, *types: type[msgspec.Struct]) -> None:
        """Build and keep one typed decoder for each of ``types`` (once; repeats are no-ops)."""
        for type_ in types:
            if type_ not in self._decoders:
                self._decoders[type_] = msgspec.json.Decoder(type_).decode

    def unchecked_decoder(self, type_: type[S]) -> Callable[[bytes], S]:
        """Return the typed msgspec decoder of ``type_`` (no size check, msgspec's errors)."""
        decode = self._decoders.get(type_)
        if decode is None:
            self.prepare(type_)
            decode = self._decoders[type_]
        return decode

    def decode(self, body: bytes, type_: type[S]) -> S:
        """Decode the JSON ``body`` as ``type_``.

        Unknown fields are ignored and missing fields with defaults get them.

        Raises:
            MessageTooLargeError: ``body`` exceeds ``max_size``; checked before parsing.
            DecodeError: ``body`` is not JSON, not an object, lacks a required field or holds
                a value of the wrong type (a ``schemaVersion`` other than the type's version
                included). The message names the type, the JSON path and shows the start of
                the payload. A message without ``eventId`` or ``occurredAt`` says so, with
                the path ``$.eventId`` / ``$.occurredAt``: they are never made up.
        """
        if len(body) > self.max_size:
            raise MessageTooLargeError(len(body), self.max_size, f"decoding {describe(type_)}")
        decode = self._decoders.get(type_)
        if decode is None:
            decode = self.unchecked_decoder(type_)
        try:
            return decode(body)  # type: ignore[no-any-return]
        except msgspec.ValidationError as exc:
            raise _decode_error(type_, str(exc), body) from exc
        except msgspec.DecodeError as exc:
            raise _decode_error(type_, f"malformed JSON: {exc}", body) from exc
        except RecursionError as exc:
            # msgspec guards its recursion; a hostile `[[[[…` ends here, not in a crash.
            raise _decode_error(type_, f"JSON nested too deeply: {exc}", body) from exc


def _decode_error(type_: type[Any], detail: str, body: bytes) -> DecodeError:
    # msgspec ends validation messages with " - at `$.path`"; keep the path separately too.
    path: str | None = None
    at = detail.rfind(_AT)
    if at >= 0 and detail.endswith("`"):
        path = detail[at + len(_AT) : -1]
    elif not detail.startswith(("malformed JSON", "JSON nested")):
        path = "$"
        # A top-level envelope field (no " - at" suffix): say which, and why it is not made up.
        if detail.startswith(_MISSING) and isinstance(type_, MessageMeta):
            field = detail[len(_MISSING) : -1]
            envelope = _ENVELOPE.get(field)
            if envelope is not None:
                detail = f"{envelope} ({detail})"
                path = f"$.{field}"
    return DecodeError(
        describe(type_),
        detail,
        payload=body,
        routing_key=getattr(type_, "__routing_key__", None) or None,
        version=getattr(type_, "__version__", None) or None,
        path=path,
    )


def schema_of(type_: type[Message]) -> dict[str, Any]:
    """Return the JSON Schema of a message type's payload (for AsyncAPI documents).

    The schema is msgspec's, with camelCase property names; the type's own definition also
    carries ``x-routing-key`` and ``x-schema-version`` when the type is concrete.

    Args:
        type_: A message type.

    Returns:
        A JSON Schema document: ``{"$ref": ..., "$defs": {...}}``.
    """
    schema: dict[str, Any] = msgspec.json.schema(type_)
    if type_.__routing_key__:
        ref = schema.get("$ref", "")
        definition = schema.get("$defs", {}).get(ref.rpartition("/")[2])
        if isinstance(definition, dict):
            definition["x-routing-key"] = type_.__routing_key__
            definition["x-schema-version"] = type_.__version__
    return schema
