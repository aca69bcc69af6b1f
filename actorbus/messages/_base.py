"""Message base types: :class:`Message`, :class:`Event` and :class:`Command`.

A concrete message type names its wire name (routing key) and schema version as class
keywords::

    class OrderCreated(Event, routing_key="order.created", version=1):
        order_id: str
        sku: str
        qty: int

Every message carries the envelope fields ``eventId`` (UUID), ``occurredAt`` (RFC 3339, UTC)
and ``schemaVersion`` (int). Constructing a message fills ``eventId`` (a new uuid4) and
``occurredAt`` (now) when they are not given; decoding never does: identity is never
invented, so a payload without ``eventId`` or ``occurredAt`` does not decode (a
:class:`~actorbus.exceptions.DecodeError` at ``$.eventId`` / ``$.occurredAt``). A concrete
type's ``schemaVersion`` is its class's version, typed ``Literal[version]``: a payload that
omits it is taken as that version, and one that states another is not of that type (msgspec
rejects it at ``$.schemaVersion``). Field names are snake_case in Python and camelCase on
the wire. Messages are frozen msgspec Structs: freezing costs nothing when encoding or
decoding (it only guards ``__setattr__``), and a message that cannot change after it was
published is one less thing to reason about.
"""

from __future__ import annotations

import functools
import re
import uuid
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Final, Literal, dataclass_transform

import msgspec

from ..exceptions import ConfigurationError

__all__ = (
    "Command",
    "Event",
    "FILLED_ON_CONSTRUCTION",
    "Message",
    "MessageMeta",
    "ROUTING_KEY_PATTERN",
    "describe",
    "is_concrete",
)

#: What a routing key may look like: lower-case dotted words of letters, digits and inner
#: hyphens, the first starting with a letter (``order.created``, ``order.created.v2``,
#: ``inventory.reserve-stock``). ``*`` and ``#`` are binding wildcards, never part of a name.
ROUTING_KEY_PATTERN = re.compile(r"[a-z][a-z0-9]*(?:-[a-z0-9]+)*(?:\.[a-z0-9]+(?:-[a-z0-9]+)*)*")

#: The envelope fields that constructing a message fills when they are omitted (a new uuid4,
#: now) and that decoding requires. msgspec reports them as required
#: (``msgspec.structs.fields(T)[i].required``); code that asks which fields a constructor
#: needs leaves these out.
FILLED_ON_CONSTRUCTION: Final = frozenset({"event_id", "occurred_at"})

# AMQP short strings (routing keys, the `type` property) hold at most 255 bytes.
_MAX_ROUTING_KEY = 255

# Class keywords passed through to msgspec. The others would change the wire format that the
# contract fixes (rename, tag, array_like), break tolerant reading (forbid_unknown_fields) or
# unfreeze messages, so they are refused with a clear error instead.
_STRUCT_OPTIONS = frozenset({"omit_defaults", "gc", "cache_hash", "weakref", "repr_omit_defaults"})

_utcnow = functools.partial(datetime.now, UTC)
_uuid4 = uuid.uuid4
_to_builtins = msgspec.to_builtins
# msgspec's own constructor: MessageMeta.__call__ adds the envelope defaults, then calls it.
_struct_call = msgspec.StructMeta.__call__


def _check_routing_key(cls_name: str, routing_key: object) -> str:
    if (
        not isinstance(routing_key, str)
        or len(routing_key) > _MAX_ROUTING_KEY
        or ROUTING_KEY_PATTERN.fullmatch(routing_key) is None
    ):
        raise ConfigurationError(
            f"invalid routing key {routing_key!r} on message type {cls_name}: use lower-case "
            "dotted words of letters, digits and hyphens, at most 255 characters, e.g. "
            "'order.created', 'order.created.v2' or 'inventory.reserve-stock'"
        )
    return routing_key


def _check_version(cls_name: str, version: object) -> int:
    # bool is an int subclass; `version=True` is a mistake, not version 1.
    if type(version) is not int or version < 1:
        raise ConfigurationError(
            f"invalid version {version!r} on message type {cls_name}: the schema version is "
            "an int >= 1, e.g. class OrderCreated(Event, routing_key='order.created', version=1)"
        )
    return version


class MessageMeta(msgspec.StructMeta):
    """Metaclass of every message type: reads the ``routing_key`` and ``version`` keywords.

    For each class it sets ``__routing_key__`` and ``__version__`` (``""`` and ``0`` on an
    abstract type that declares no routing key; they are not inherited), makes the fields the
    class declares keyword-only (so required fields may follow the defaulted
    ``schema_version``), and sets the default of ``schema_version`` to ``version``. Calling a
    message class fills ``event_id`` and ``occurred_at`` when omitted; msgspec's decoders do
    not call the class, so they require both.

    Raises:
        ConfigurationError: A routing key or version is malformed, a version is given without
            a routing key, or a struct option that would change the wire format is passed.
    """

    __routing_key__: str
    __version__: int

    def __new__(
        mcls,
        name: str,
        bases: tuple[type, ...],
        namespace: dict[str, Any],
        /,
        **kwargs: Any,
    ) -> MessageMeta:
        """Create a message class; see the class docstring."""
        routing_key = kwargs.pop("routing_key", None)
        version = kwargs.pop("version", None)
        # The roots (Message itself) configure msgspec directly; user types may only tune
        # options that keep the wire format.
        is_root = not any(isinstance(base, MessageMeta) for base in bases)
        if not is_root:
            refused = sorted(set(kwargs) - _STRUCT_OPTIONS)
            if refused:
                raise ConfigurationError(
                    f"message type {name} passes unsupported class keyword(s) "
                    f"{', '.join(refused)}: message types accept routing_key=, version= and "
                    f"the msgspec options {', '.join(sorted(_STRUCT_OPTIONS))}"
                )
        if routing_key is None:
            if version is not None:
                raise ConfigurationError(
                    f"message type {name} declares version={version!r} but no routing key; "
                    f"declare both: class {name}(Event, routing_key='...', version={version!r})"
                )
        else:
            routing_key = _check_routing_key(name, routing_key)
            version = _check_version(name, 1 if version is None else version)
            # Redefining the inherited field keeps its position (msgspec orders fields
            # base-first). Its default makes `schemaVersion` this version both when
            # constructing and when a payload omits it; its Literal type makes msgspec itself
            # reject a payload that states another version (at `$.schemaVersion`), so the
            # decoder's hot path needs no check of its own. Type checkers still see `int`.
            annotations = namespace.setdefault("__annotations__", {})
            annotations["schema_version"] = Literal[version]
            namespace["schema_version"] = version
        kwargs.setdefault("kw_only", True)
        cls = super().__new__(mcls, name, bases, namespace, **kwargs)
        cls.__routing_key__ = routing_key or ""
        cls.__version__ = version or 0
        return cls

    if not TYPE_CHECKING:  # type checkers keep the class's own constructor signature

        def __call__(cls, /, *args, **kwargs):
            """Construct a message, filling ``event_id`` and ``occurred_at`` if not given.

            The envelope fields have no defaults in the struct itself, so that msgspec's
            decoders require them on the wire (identity is never invented on decode); the
            defaults live here, in the one place that runs when code constructs a message and
            never when a payload is decoded.
            """
            if "event_id" not in kwargs:
                kwargs["event_id"] = _uuid4()
            if "occurred_at" not in kwargs:
                kwargs["occurred_at"] = _utcnow()
            return _struct_call(cls, *args, **kwargs)


@dataclass_transform(kw_only_default=True, frozen_default=True, field_specifiers=(msgspec.field,))
class Message(msgspec.Struct, metaclass=MessageMeta, rename="camel", frozen=True, kw_only=True):
    """Base of every message: the envelope fields every event and command carries.

    Subclass :class:`Event` or :class:`Command` rather than this class. Declare the wire
    name and schema version as class keywords; a class without them is abstract (it groups
    fields and cannot be registered).

    Attributes:
        event_id: Unique id of this message (wire ``eventId``); the idempotency key. Commands
            carry it under the same name, so every message has one id shape. A new uuid4 when
            constructed without one; required on the wire: a payload without it does not
            decode (identity is never invented).
        occurred_at: When it happened (wire ``occurredAt``, RFC 3339); timezone-aware, now in
            UTC when constructed without one; required on the wire, like ``event_id``. A
            payload with a naive timestamp is rejected.
        schema_version: Version of the payload's schema (wire ``schemaVersion``): the class's
            ``version``, its default. Decoding a payload that omits it gives that version; one
            that states another version does not decode as this type (a
            :class:`~actorbus.exceptions.DecodeError` at ``$.schemaVersion``).
        __routing_key__: The wire name (routing key, AMQP ``type``); ``""`` when abstract.
        __version__: The schema version declared by the class; ``0`` when abstract.
    """

    __routing_key__: ClassVar[str]
    __version__: ClassVar[int]

    if TYPE_CHECKING:
        # What a type checker sees: both may be omitted when constructing.
        event_id: uuid.UUID = msgspec.field(default_factory=uuid.uuid4)
        occurred_at: datetime = msgspec.field(default_factory=_utcnow)
    else:
        # What msgspec sees: required, so that every decoder requires them on the wire (it
        # would call a default factory for a missing field, inventing an identity). Construction
        # fills them in MessageMeta.__call__; decoding never goes through it.
        event_id: uuid.UUID
        occurred_at: Annotated[datetime, msgspec.Meta(tz=True)]
    schema_version: int = 1

    if TYPE_CHECKING:
        # Tells type checkers which class keywords a message type accepts.
        def __init_subclass__(
            cls,
            *,
            routing_key: str = ...,
            version: int = ...,
            omit_defaults: bool = ...,
            gc: bool = ...,
            cache_hash: bool = ...,
            weakref: bool = ...,
            repr_omit_defaults: bool = ...,
        ) -> None: ...

    @property
    def message_id(self) -> str:
        """The ``eventId`` as a string (the AMQP ``message_id`` and inbox key)."""
        # msgspec formats a UUID in C: ~0.25 µs against ~0.68 µs for str(uuid).
        return _to_builtins(self.event_id)  # type: ignore[no-any-return]


class Event(Message):
    """Base of events: facts named in the past tense (``OrderCreated``), published to a topic."""


class Command(Message):
    """Base of commands: requests named in the imperative (``ReserveStock``) to one service."""


def is_concrete(type_: object) -> bool:
    """Return whether ``type_`` is a message type that declares a routing key."""
    return isinstance(type_, MessageMeta) and bool(type_.__routing_key__)


def describe(type_: type[Any]) -> str:
    """Return ``"OrderCreated (order.created v1)"`` for a message type, for error messages."""
    key = getattr(type_, "__routing_key__", "")
    name = getattr(type_, "__qualname__", repr(type_))
    if key:
        return f"{name} ({key} v{type_.__version__})"
    return name
