"""A static description of a set of services: who publishes and who consumes what, and how.

The documentation builders (:mod:`._asyncapi`, :mod:`._graph`, :mod:`._schema`) read services
through :func:`describe_system`, so they agree on one picture of the system:

* an **event** is published to its service's topic exchange under its wire name, and reaches
  every queue bound to that name;
* a **command** is sent through the publishing service's command exchange (direct) under its
  wire name, and reaches the queue bound to it;
* a **reply** is an event that its consumers subscribe to with ``bind=False``, or whose wire
  name is ``<command>.result`` for a command of the system: the answering service sends it
  through the default exchange straight to the ``reply_to`` queue. A reply whose wire name
  is ``<command>.result`` answers that command.

Nothing here touches a broker; only the services' declarations are read.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal

from ..app import Service
from ..brokers import DEFAULT_EXCHANGE, Binding, ExchangeSpec
from ..exceptions import ConfigurationError
from ..messages import Command, Message

__all__ = (
    "MessageKind",
    "MessageInfo",
    "Publication",
    "SystemDescription",
    "camel_id",
    "describe_system",
    "summary_of",
    "unique_ids",
)

MessageKind = Literal["event", "command", "reply"]

#: The suffix that links a reply's wire name to its command's (``payment.charge.result``).
REPLY_SUFFIX = ".result"

_WORD = re.compile(r"[A-Za-z0-9]+")


def camel_id(*parts: str) -> str:
    """Return a camelCase identifier made of the words of ``parts``.

    ``camel_id("order.created.v2")`` is ``"orderCreatedV2"``;
    ``camel_id("inventory", "reserve-stock")`` is ``"inventoryReserveStock"``.
    """
    words = [w for part in parts for w in _WORD.findall(part)]
    if not words:
        return "x"
    first, rest = words[0], words[1:]
    ident = first[:1].lower() + first[1:] + "".join(w[:1].upper() + w[1:] for w in rest)
    return ident if not ident[0].isdigit() else f"x{ident}"


def summary_of(type_: type[object]) -> str:
    """Return the first line of ``type_``'s own docstring, or ``""``."""
    doc = type_.__dict__.get("__doc__")
    if not isinstance(doc, str):
        return ""
    return inspect.cleandoc(doc).partition("\n")[0].strip()


@dataclass(frozen=True, slots=True)
class MessageInfo:
    """One message type of the system.

    Attributes:
        type: The message class.
        wire_name: Its routing key / AMQP ``type``.
        version: Its schema version.
        kind: ``event``, ``command`` or ``reply`` (see the module docstring).
    """

    type: type[Message]
    wire_name: str
    version: int
    kind: MessageKind

    @property
    def key(self) -> tuple[str, int]:
        """``(wire name, version)``: what identifies the message on the wire."""
        return (self.wire_name, self.version)


@dataclass(frozen=True, slots=True)
class Publication:
    """A service publishing one message type, and where it goes.

    Attributes:
        service: The publishing service.
        message: The message published.
        exchange: The exchange it is published to (``""`` for the default exchange, which
            routes a reply to the ``reply_to`` queue).
    """

    service: Service
    message: MessageInfo
    exchange: str


@dataclass(slots=True)
class SystemDescription:
    """What a set of services declares, resolved once for the documentation builders.

    Attributes:
        services: The services, in the order given.
        messages: Every message type published or consumed, by ``(wire name, version)``,
            sorted.
        exchanges: Every exchange the services declare, by name, in declaration order.
        bindings: Every queue binding, in declaration order.
        publications: Every declared publication, in service order.
        consumers: For each ``(wire name, version)``, the services that consume it.
    """

    services: list[Service]
    messages: dict[tuple[str, int], MessageInfo] = field(default_factory=dict)
    exchanges: dict[str, ExchangeSpec] = field(default_factory=dict)
    bindings: list[Binding] = field(default_factory=list)
    publications: list[Publication] = field(default_factory=list)
    consumers: dict[tuple[str, int], list[Service]] = field(default_factory=dict)

    def versions(self, wire_name: str) -> list[MessageInfo]:
        """Return the messages published or consumed under ``wire_name``, by version."""
        return [m for (name, _), m in self.messages.items() if name == wire_name]

    def info(self, type_: type[Message]) -> MessageInfo:
        """Return the description of message type ``type_``."""
        return self.messages[(type_.__routing_key__, type_.__version__)]

    def replies_to(self, command: MessageInfo) -> list[MessageInfo]:
        """Return the replies that answer ``command`` (wire name ``<command>.result``)."""
        return self.versions(command.wire_name + REPLY_SUFFIX) if command.kind == "command" else []

    def queue_service(self, queue: str) -> Service | None:
        """Return the service that consumes from ``queue``, if any."""
        for service in self.services:
            if service.queue.name == queue:
                return service
        return None


def _kind(type_: type[Message], reply_names: set[str], command_names: set[str]) -> MessageKind:
    if issubclass(type_, Command):
        return "command"
    name = type_.__routing_key__
    if name in reply_names:
        return "reply"
    if name.endswith(REPLY_SUFFIX) and name.removesuffix(REPLY_SUFFIX) in command_names:
        return "reply"
    return "event"


def describe_system(services: Iterable[Service]) -> SystemDescription:
    """Return the static description of ``services`` (see the module docstring).

    Args:
        services: The services, e.g. from ``resolve_services("services")``.

    Raises:
        ConfigurationError: Two services have the same name.
    """
    listed = list(services)
    names = [s.name for s in listed]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:  # the App refuses them too; a description of them would merge two services
        raise ConfigurationError(f"service names must be unique; repeated: {repeated}")
    system = SystemDescription(listed)
    types: dict[type[Message], None] = {}
    bound: set[str] = set()
    unbound: set[str] = set()
    for service in system.services:
        for wire_name, sub in service.subscriptions.items():
            types.setdefault(sub.message_type)
            (bound if sub.bind else unbound).add(wire_name)
        for type_ in service.publishes:
            types.setdefault(type_)
        topology = service.topology()
        for exchange in topology.exchanges:
            system.exchanges.setdefault(exchange.name, exchange)
        for binding in topology.bindings:
            if binding not in system.bindings:
                system.bindings.append(binding)
    reply_names = unbound - bound
    command_names = {t.__routing_key__ for t in types if issubclass(t, Command)}
    infos = {
        t: MessageInfo(t, t.__routing_key__, t.__version__, _kind(t, reply_names, command_names))
        for t in types
    }
    system.messages = {info.key: info for info in sorted(infos.values(), key=lambda i: i.key)}
    for service in system.services:
        for sub in service.subscriptions.values():
            system.consumers.setdefault(infos[sub.message_type].key, []).append(service)
        for type_ in service.publishes:
            info = infos[type_]
            if info.kind == "command":
                target = service.command_exchange
            elif info.kind == "reply":
                target = DEFAULT_EXCHANGE
            else:
                target = service.exchange
            system.publications.append(Publication(service, info, target))
    return system


def unique_ids(names: Sequence[str]) -> list[str]:
    """Return ``names`` with a numeric suffix added to repeats, so that each is unique."""
    seen: dict[str, int] = {}
    result: list[str] = []
    for name in names:
        count = seen.get(name, 0)
        seen[name] = count + 1
        result.append(name if count == 0 else f"{name}{count + 1}")
    return result
