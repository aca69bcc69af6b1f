"""An AsyncAPI 3.0 document describing a system of services.

The document (see :func:`build_asyncapi`) has:

* **channels** — one per routing key on an exchange (events on the topic exchange, commands
  on the command exchange; AMQP binding ``is: routingKey`` with the exchange's type and
  durability), one per service queue (``is: queue``, with the queue's name), and one per
  reply (sent through the default exchange to the asking service's ``reply_to`` queue, so
  its address is dynamic: ``null``);
* **operations** — ``send`` for every message a service declares it publishes
  (:meth:`Service.declare_publishes`), ``receive`` for every message it handles; a command's
  operations carry the AsyncAPI ``reply`` of its ``<command>.result`` reply;
* **components** — one message per wire name and version (``order.created`` v1 and
  ``order.created.v2`` v2 are two messages) and the JSON Schemas of their payloads, generated
  by :func:`msgspec.json.schema_components` (camelCase property names, as on the wire).

AMQP bindings follow version 0.3.0 of the AsyncAPI AMQP bindings. For a NATS broker
(``server="nats://…"`` or ``tls://…``) the document describes JetStream instead, with the
mapping of :mod:`actorbus.brokers.nats_subjects` (the one the NATS broker declares): routed
channels are subjects (``orders.topic.order.created``, in stream ``orders_topic``), a queue's
channel is its default-exchange subject (``actorbus.direct.<queue>``), a receive operation
reads the channel its message arrives on, and its NATS binding (version 0.1.0) names the
durable consumer that competing processes share as ``queue``. Identifiers are
camelCase: channel ``orderCreatedV2``, message ``orderCreatedV2``, operation
``inventoryReceiveOrderCreatedV2``.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

import msgspec

from ..app import Service
from ..brokers import DEFAULT_EXCHANGE, ExchangeSpec, QueueSpec, nats_subjects
from ..exceptions import ConfigurationError, TopologyError
from ..messages import JsonCodec
from ._model import (
    MessageInfo,
    SystemDescription,
    camel_id,
    describe_system,
    summary_of,
    unique_ids,
)

__all__ = (
    "AMQP_BINDING_VERSION",
    "ASYNCAPI_VERSION",
    "NATS_BINDING_VERSION",
    "build_asyncapi",
    "message_id",
)

#: The AsyncAPI specification version of the documents built here.
ASYNCAPI_VERSION = "3.0.0"

#: The version of the AsyncAPI AMQP bindings used.
AMQP_BINDING_VERSION = "0.3.0"

#: The version of the AsyncAPI NATS bindings used.
NATS_BINDING_VERSION = "0.1.0"

#: Broker URL schemes described as NATS JetStream (the others as AMQP 0-9-1).
NATS_SCHEMES = frozenset({"nats", "tls"})

_CONTENT_TYPE = JsonCodec().content_type
_SCHEMAS = "#/components/schemas/{name}"
_REPLY_ADDRESS = {
    "location": "$message.header#/reply_to",
    "description": "The AMQP reply_to property: the queue of the service that sent the "
    "command. The reply is published to the default exchange with that queue's name.",
}


def message_id(info: MessageInfo) -> str:
    """Return the component id of a message: ``orderCreatedV1``, ``orderCreatedV2``."""
    base = camel_id(info.wire_name)
    suffix = f"V{info.version}"
    return base if base.endswith(suffix) else base + suffix


def _ref(*parts: str) -> dict[str, str]:
    # JSON pointer escaping: "~" then "/" (names here never hold either, but stay correct).
    escaped = [p.replace("~", "~0").replace("/", "~1") for p in parts]
    return {"$ref": "#/" + "/".join(escaped)}


def _exchange_binding(spec: ExchangeSpec | None, name: str) -> dict[str, Any]:
    if name == DEFAULT_EXCHANGE:
        exchange: dict[str, Any] = {"type": "default", "durable": True, "vhost": "/"}
    else:
        exchange = {
            "name": name,
            "type": spec.type if spec is not None else "topic",
            "durable": spec.durable if spec is not None else True,
            "autoDelete": False,
            "vhost": "/",
        }
    return {
        "amqp": {"is": "routingKey", "exchange": exchange, "bindingVersion": AMQP_BINDING_VERSION}
    }


def _queue_binding(spec: QueueSpec) -> dict[str, Any]:
    return {
        "amqp": {
            "is": "queue",
            "queue": {
                "name": spec.name,
                "durable": spec.durable,
                "exclusive": False,
                "autoDelete": False,
                "vhost": "/",
            },
            "bindingVersion": AMQP_BINDING_VERSION,
        }
    }


# Commands and replies are published ``mandatory`` (one that reaches no queue is an error);
# events are not: the publisher does not know who listens (app/_outgoing.py).
_SEND_BINDING = {
    "amqp": {
        "deliveryMode": 2,
        "mandatory": True,
        "timestamp": True,
        "bindingVersion": AMQP_BINDING_VERSION,
    }
}
_EVENT_SEND_BINDING = {
    "amqp": {
        "deliveryMode": 2,
        "mandatory": False,
        "timestamp": True,
        "bindingVersion": AMQP_BINDING_VERSION,
    }
}
_RECEIVE_BINDING = {"amqp": {"ack": True, "bindingVersion": AMQP_BINDING_VERSION}}


def _scheme(url: str | None) -> str:
    return (url or "").partition("://")[0].lower() if "://" in (url or "") else ""


def _servers(url: str) -> dict[str, Any]:
    """The AsyncAPI servers of a broker URL (one per host of a NATS URL), without credentials."""
    scheme = _scheme(url)
    if scheme not in NATS_SCHEMES:
        return {"broker": _server(url)}
    netloc = url.partition("://")[2].partition("?")[0].partition("/")[0].rpartition("@")[2]
    hosts = [h.strip().split("://")[-1] for h in netloc.split(",") if h.strip()] or ["localhost"]
    servers: dict[str, Any] = {}
    for i, host in enumerate(hosts, start=1):
        servers["broker" if len(hosts) == 1 else f"broker{i}"] = {
            "host": host if ":" in host else f"{host}:4222",
            "protocol": "nats",
            "description": "A NATS server with JetStream"
            + (", over TLS" if scheme == "tls" else "")
            + ": the streams and durable consumers of the services' exchanges and queues."
            + (" The client fails over between the servers." if len(hosts) > 1 else ""),
        }
    return servers


def _server(url: str) -> dict[str, Any]:
    """The AsyncAPI server object of a broker URL, without its credentials."""
    parts = urlsplit(url)
    host = parts.hostname or "localhost"
    shown = f"[{host}]" if ":" in host else host
    server: dict[str, Any] = {
        "host": f"{shown}:{parts.port}" if parts.port else shown,
        "protocol": parts.scheme or "amqp",
        "description": "The broker the services declare their exchanges and queues on.",
    }
    if parts.scheme in ("amqp", "amqps"):
        server["protocolVersion"] = "0.9.1"
        server["pathname"] = parts.path or "/"  # the virtual host
    return server


def _components(
    system: SystemDescription, *, nats: bool = False
) -> tuple[dict[str, Any], dict[str, Any], dict[tuple[str, int], str]]:
    """Return (schemas, messages, message id by key) for the components section."""
    infos = list(system.messages.values())
    refs, schemas = msgspec.json.schema_components(
        [info.type for info in infos], ref_template=_SCHEMAS
    )
    for schema in schemas.values():
        if isinstance(schema.get("description"), str):
            schema["description"] = inspect.cleandoc(schema["description"])
    messages: dict[str, Any] = {}
    ids: dict[tuple[str, int], str] = {}
    for info, ref, mid in zip(infos, refs, unique_ids([message_id(i) for i in infos]), strict=True):
        ids[info.key] = mid
        component = schemas.get(str(ref["$ref"]).rpartition("/")[2])
        if component is not None:
            component["x-routing-key"] = info.wire_name
            component["x-schema-version"] = info.version
        message: dict[str, Any] = {
            "name": info.wire_name,
            "title": f"{info.type.__qualname__} ({info.wire_name} v{info.version})",
            "contentType": _CONTENT_TYPE,
            "headers": {
                "type": "object",
                "properties": {
                    "x-schema-version": {
                        "type": "integer",
                        "const": info.version,
                        "description": "The payload's schemaVersion, also sent as a header.",
                    }
                },
            },
            "payload": ref,
            "tags": [{"name": info.kind}],
        }
        if not nats:  # NATS's message binding object is reserved: it has no fields
            message["bindings"] = {
                "amqp": {"messageType": info.wire_name, "bindingVersion": AMQP_BINDING_VERSION}
            }
        summary = summary_of(info.type)
        if summary:
            message["summary"] = summary
        messages[mid] = message
    return schemas, messages, ids


def _nats_filters(system: SystemDescription, exchange: str, key: str) -> list[str]:
    """The filter subjects the NATS broker gives a binding of ``exchange`` with ``key``."""
    spec = system.exchanges.get(exchange)
    try:
        return nats_subjects.filters_for(exchange, spec.type if spec else "topic", key)
    except TopologyError as exc:
        raise ConfigurationError(f"cannot describe the services on NATS: {exc}") from None


def _topic_match(pattern: str, key: str) -> bool:
    """Whether an AMQP topic ``pattern`` (``*`` one word, ``#`` any) matches ``key``."""

    def match(p: list[str], k: list[str]) -> bool:
        if not p:
            return not k
        if p[0] == "#":
            return any(match(p[1:], k[i:]) for i in range(len(k) + 1))
        return bool(k) and p[0] in ("*", k[0]) and match(p[1:], k[1:])

    return match(pattern.split("."), key.split("."))


_NATS_SEND_BINDING = {"nats": {"bindingVersion": NATS_BINDING_VERSION}}
_NATS_REPLY_ADDRESS = {
    "location": "$message.header#/Actorbus-Reply-To",
    "description": "The Actorbus-Reply-To header: the queue of the service that sent the "
    "command. The reply is published to that queue's subject actorbus.direct.<queue> "
    "(stream ACTORBUS).",
}


def build_asyncapi(
    services: Iterable[Service],
    *,
    title: str = "actorbus services",
    version: str = "1.0.0",
    description: str | None = None,
    server: str | None = "amqp://127.0.0.1:5672/",
    protocol: str | None = None,
) -> dict[str, Any]:
    """Return the AsyncAPI 3.0 document of ``services`` as a JSON-ready dict.

    Args:
        services: The services to describe.
        title: ``info.title``.
        version: ``info.version``: the version of the described API (not of AsyncAPI).
        description: ``info.description``; by default, a list of the services.
        server: The broker the services run on, as a URL (credentials are dropped), written
            as the document's server ``broker`` (``broker1``, ``broker2``… for a NATS URL
            with several hosts); ``None`` writes no ``servers``. A ``nats://`` or ``tls://``
            URL describes the NATS JetStream mapping (subjects, durable consumers, NATS
            bindings); any other, AMQP exchanges and queues (AMQP bindings).
        protocol: ``"amqp"`` or ``"nats"``: which mapping to describe; by default the one of
            ``server``'s scheme.

    Raises:
        ConfigurationError: Two services have the same name, or (NATS) a binding pattern
            cannot be expressed as NATS subjects.
    """
    if protocol is None:
        protocol = "nats" if _scheme(server) in NATS_SCHEMES else "amqp"
    if protocol not in ("amqp", "nats"):
        raise ConfigurationError(f"protocol must be 'amqp' or 'nats', not {protocol!r}")
    nats = protocol == "nats"
    system = describe_system(services)
    schemas, messages, message_ids = _components(system, nats=nats)

    # Routing-key channels: (exchange, wire name) in first-seen order.
    routed: dict[tuple[str, str], None] = {}
    for pub in system.publications:
        if pub.exchange != DEFAULT_EXCHANGE:
            routed.setdefault((pub.exchange, pub.message.wire_name))
    for binding in system.bindings:
        routed.setdefault((binding.exchange, binding.routing_key))
    exchanges_of: dict[str, set[str]] = {}
    for exchange, wire in routed:
        exchanges_of.setdefault(wire, set()).add(exchange)
    replies = [m.wire_name for m in system.messages.values() if m.kind == "reply"]
    reply_names = list(dict.fromkeys(replies))

    names: list[str] = []
    for exchange, wire in routed:
        shared = len(exchanges_of[wire]) > 1
        names.append(camel_id(exchange, wire) if shared else camel_id(wire))
    names += [camel_id(wire) for wire in reply_names]
    names += [camel_id(s.queue.name) for s in system.services]
    ids = unique_ids(names)
    routed_ids = dict(zip(routed, ids, strict=False))
    reply_ids = dict(zip(reply_names, ids[len(routed) :], strict=False))
    queue_ids = dict(
        zip([s.name for s in system.services], ids[len(routed) + len(reply_names) :], strict=True)
    )

    def _nats_receive(
        system: SystemDescription, service: Service, wire: str, *, bound: bool
    ) -> tuple[str, str]:
        """(channel id, durable consumer) where ``service`` receives ``wire`` on NATS."""
        queue = service.queue.name
        if bound:
            mine = [b for b in system.bindings if b.queue == queue]
            found = [b for b in mine if b.routing_key == wire] or [
                b for b in mine if _topic_match(b.routing_key, wire)
            ]
            if found:
                binding = found[0]
                subject = _nats_filters(system, binding.exchange, binding.routing_key)[0]
                return routed_ids[(binding.exchange, binding.routing_key)], (
                    nats_subjects.binding_consumer_name(queue, binding.exchange, subject)
                )
        return queue_ids[service.name], nats_subjects.consumer_name(queue, "home")

    def channel_messages(infos: Iterable[MessageInfo]) -> dict[str, Any]:
        return {
            message_ids[i.key]: _ref("components", "messages", message_ids[i.key]) for i in infos
        }

    published = {
        (pub.exchange, pub.message.wire_name)
        for pub in system.publications
        if pub.exchange != DEFAULT_EXCHANGE
    }
    channels: dict[str, Any] = {}
    for (exchange, wire), cid in routed_ids.items():
        versions = system.versions(wire)
        kind = "commands" if versions and versions[0].kind == "command" else "events"
        spec = system.exchanges.get(exchange)
        exchange_type = f"{spec.type} " if spec is not None else ""
        channel: dict[str, Any] = {
            "address": wire,
            "title": f"{wire} on {exchange}",
            "description": f"{kind.capitalize()} published to the {exchange_type}exchange "
            f"`{exchange}` with routing key `{wire}`.",
            "messages": channel_messages(versions),
            "bindings": _exchange_binding(spec, exchange),
        }
        if nats:
            filters = _nats_filters(system, exchange, wire)
            words = wire.split(".")
            literal = "*" not in words and "#" not in words
            not_fanout = spec is None or spec.type != "fanout"
            if (not_fanout and literal) or (exchange, wire) in published:
                address = nats_subjects.subject_for(exchange, wire)
            else:
                address = filters[-1]
            stream = nats_subjects.stream_name(exchange)
            also = [f for f in filters if f != address]
            channel["address"] = address
            channel["description"] = (
                f"{kind.capitalize()} published to the {exchange_type}exchange `{exchange}` "
                f"with routing key `{wire}`: the subject `{address}` of the JetStream stream "
                f"`{stream}`" + (f" (bindings also filter `{'`, `'.join(also)}`)" if also else "")
                + "."
            )  # fmt: skip
            channel["x-nats-stream"] = stream
            del channel["bindings"]  # NATS's channel binding object is reserved: no fields
        channels[cid] = channel
    for wire, cid in reply_ids.items():
        channels[cid] = {
            "address": None,
            "title": f"{wire} replies",
            "description": f"Replies `{wire}`, published to the default exchange with the "
            "asking service's queue (the command's reply_to) as routing key.",
            "messages": channel_messages(system.versions(wire)),
            "bindings": _exchange_binding(None, DEFAULT_EXCHANGE),
        }
        if nats:
            channels[cid]["description"] = (
                f"Replies `{wire}`, published to the subject `actorbus.direct.<queue>` "
                "(stream `ACTORBUS`) of the asking service's queue (the command's reply_to)."
            )
            del channels[cid]["bindings"]
    for service in system.services:
        queue = service.queue
        received = [
            system.info(sub.message_type)
            for sub in service.subscriptions.values()
            if not nats or not sub.bind  # on NATS bound messages arrive on their subjects
        ]
        channels[queue_ids[service.name]] = {
            "address": queue.name,
            "title": queue.name,
            "description": f"The queue of service `{service.name}` ({queue.queue_type}); "
            f"messages that fail for good go to `{queue.dlq_name}`."
            if queue.dead_letter
            else f"The queue of service `{service.name}` ({queue.queue_type}).",
            "messages": channel_messages(received),
            "bindings": _queue_binding(queue),
        }
        if nats:
            home = nats_subjects.direct_subject(queue.name)
            channel = channels[queue_ids[service.name]]
            channel["address"] = home
            channel["description"] = (
                f"The queue `{queue.name}` of service `{service.name}`: durable JetStream "
                f"consumers, one per filter subject of its bindings and `"
                f"{nats_subjects.consumer_name(queue.name, 'home')}` on this subject, where "
                "messages sent to the queue itself (replies, the default exchange) arrive "
                f"(stream `{nats_subjects.home_stream(queue.name)}`)"
                + (
                    f"; messages that fail for good go to "
                    f"`{nats_subjects.direct_subject(queue.dlq_name)}` "
                    f"(stream `{nats_subjects.DLQ_STREAM}`)."
                    if queue.dead_letter
                    else "."
                )
            )
            del channel["bindings"]

    def reply_of(command: MessageInfo) -> dict[str, Any] | None:
        answers = system.replies_to(command)
        if not answers:
            return None
        cid = reply_ids[answers[0].wire_name]
        return {
            "address": dict(_NATS_REPLY_ADDRESS if nats else _REPLY_ADDRESS),
            "channel": _ref("channels", cid),
            "messages": [_ref("channels", cid, "messages", message_ids[a.key]) for a in answers],
        }

    operations: dict[str, Any] = {}
    op_names: list[str] = []
    op_bodies: list[dict[str, Any]] = []
    # Replies to a command the same service receives are described by that receive
    # operation's `reply`; other declared publications get a `send` operation.
    answered = {
        (service.name, reply.key)
        for service in system.services
        for sub in service.subscriptions.values()
        for reply in system.replies_to(system.info(sub.message_type))
    }
    sends: dict[tuple[str, str], list[MessageInfo]] = {}
    for pub in system.publications:
        if pub.exchange == DEFAULT_EXCHANGE:
            if (pub.service.name, pub.message.key) in answered:
                continue
            cid = reply_ids[pub.message.wire_name]
        else:
            cid = routed_ids[(pub.exchange, pub.message.wire_name)]
        sends.setdefault((pub.service.name, cid), []).append(pub.message)
    for (service_name, cid), infos in sends.items():
        wire = infos[0].wire_name
        operation: dict[str, Any] = {
            "action": "send",
            "channel": _ref("channels", cid),
            "title": f"{service_name} sends {wire}",
            "messages": [_ref("channels", cid, "messages", message_ids[i.key]) for i in infos],
            "bindings": _NATS_SEND_BINDING
            if nats
            else _EVENT_SEND_BINDING
            if infos[0].kind == "event"
            else _SEND_BINDING,
        }
        reply = reply_of(infos[0])
        if reply is not None:
            operation["reply"] = reply
        op_names.append(camel_id(service_name, "send", cid))
        op_bodies.append(operation)
    for service in system.services:
        for sub in service.subscriptions.values():
            info = system.info(sub.message_type)
            mid = message_ids[info.key]
            qid = queue_ids[service.name]
            bindings: dict[str, Any] = _RECEIVE_BINDING
            if nats:
                qid, consumer = _nats_receive(system, service, info.wire_name, bound=sub.bind)
                bindings = {"nats": {"queue": consumer, "bindingVersion": NATS_BINDING_VERSION}}
            operation = {
                "action": "receive",
                "channel": _ref("channels", qid),
                "title": f"{service.name} handles {info.wire_name} v{info.version}",
                "summary": f"Handled by {sub.handler.__qualname__}.",
                "messages": [_ref("channels", qid, "messages", mid)],
                "bindings": bindings,
            }
            reply = reply_of(info)
            if reply is not None:
                operation["reply"] = reply
            op_names.append(camel_id(service.name, "receive", mid))
            op_bodies.append(operation)
    for name, body in zip(unique_ids(op_names), op_bodies, strict=True):
        operations[name] = body

    if description is None:
        lines = [f"Services: {', '.join(s.name for s in system.services) or 'none'}."]
        lines.append(
            "Events go to topic exchanges under their routing key; commands go through a "
            "direct exchange to one service's queue, and their replies come back to the "
            "asking service's queue. Payloads are JSON with camelCase keys; every message "
            "carries eventId, occurredAt and schemaVersion."
        )
        if nats:
            lines.append(
                "On NATS JetStream an exchange is a stream (`orders.topic`: stream "
                "`orders_topic`, subjects `orders.topic.>`), a message is stored under the "
                "subject `<exchange>.<routing key>`, and a queue is a set of durable pull "
                "consumers (one per binding filter, plus one on `actorbus.direct.<queue>`) "
                "that every process of the service shares. Dead letters go to the stream "
                "`ACTORBUS_DLQ`."
            )
        description = "\n\n".join(lines)
    document: dict[str, Any] = {
        "asyncapi": ASYNCAPI_VERSION,
        "info": {"title": title, "version": version, "description": description},
        "defaultContentType": _CONTENT_TYPE,
        **({"servers": _servers(server)} if server else {}),
        "channels": channels,
        "operations": operations,
        "components": {"schemas": schemas, "messages": messages},
    }
    sagas = [
        {"service": service.name, "saga": saga.name, "steps": saga.describe()}
        for service in system.services
        for saga in service.sagas
    ]
    if sagas:
        # A specification extension (AsyncAPI allows x-* on the root): the orchestrations,
        # step by step, as declared.
        document["x-sagas"] = sagas
    return document
