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

AMQP bindings follow version 0.3.0 of the AsyncAPI AMQP bindings. Identifiers are
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
from ..brokers import DEFAULT_EXCHANGE, ExchangeSpec, QueueSpec
from ..messages import JsonCodec
from ._model import (
    MessageInfo,
    SystemDescription,
    camel_id,
    describe_system,
    summary_of,
    unique_ids,
)

__all__ = ("AMQP_BINDING_VERSION", "ASYNCAPI_VERSION", "build_asyncapi", "message_id")

#: The AsyncAPI specification version of the documents built here.
ASYNCAPI_VERSION = "3.0.0"

#: The version of the AsyncAPI AMQP bindings used.
AMQP_BINDING_VERSION = "0.3.0"

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
    system: SystemDescription,
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
            "bindings": {
                "amqp": {"messageType": info.wire_name, "bindingVersion": AMQP_BINDING_VERSION}
            },
        }
        summary = summary_of(info.type)
        if summary:
            message["summary"] = summary
        messages[mid] = message
    return schemas, messages, ids


def build_asyncapi(
    services: Iterable[Service],
    *,
    title: str = "actorbus services",
    version: str = "1.0.0",
    description: str | None = None,
    server: str | None = "amqp://127.0.0.1:5672/",
) -> dict[str, Any]:
    """Return the AsyncAPI 3.0 document of ``services`` as a JSON-ready dict.

    Args:
        services: The services to describe.
        title: ``info.title``.
        version: ``info.version``: the version of the described API (not of AsyncAPI).
        description: ``info.description``; by default, a list of the services.
        server: The broker the services run on, as a URL (credentials are dropped), written
            as the document's one server ``broker``; ``None`` writes no ``servers``.
    """
    system = describe_system(services)
    schemas, messages, message_ids = _components(system)

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

    def channel_messages(infos: Iterable[MessageInfo]) -> dict[str, Any]:
        return {
            message_ids[i.key]: _ref("components", "messages", message_ids[i.key]) for i in infos
        }

    channels: dict[str, Any] = {}
    for (exchange, wire), cid in routed_ids.items():
        versions = system.versions(wire)
        kind = "commands" if versions and versions[0].kind == "command" else "events"
        spec = system.exchanges.get(exchange)
        exchange_type = f"{spec.type} " if spec is not None else ""
        channels[cid] = {
            "address": wire,
            "title": f"{wire} on {exchange}",
            "description": f"{kind.capitalize()} published to the {exchange_type}exchange "
            f"`{exchange}` with routing key `{wire}`.",
            "messages": channel_messages(versions),
            "bindings": _exchange_binding(spec, exchange),
        }
    for wire, cid in reply_ids.items():
        channels[cid] = {
            "address": None,
            "title": f"{wire} replies",
            "description": f"Replies `{wire}`, published to the default exchange with the "
            "asking service's queue (the command's reply_to) as routing key.",
            "messages": channel_messages(system.versions(wire)),
            "bindings": _exchange_binding(None, DEFAULT_EXCHANGE),
        }
    for service in system.services:
        queue = service.queue
        received = [system.info(sub.message_type) for sub in service.subscriptions.values()]
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

    def reply_of(command: MessageInfo) -> dict[str, Any] | None:
        answers = system.replies_to(command)
        if not answers:
            return None
        cid = reply_ids[answers[0].wire_name]
        return {
            "address": dict(_REPLY_ADDRESS),
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
            "bindings": _EVENT_SEND_BINDING if infos[0].kind == "event" else _SEND_BINDING,
        }
        reply = reply_of(infos[0])
        if reply is not None:
            operation["reply"] = reply
        op_names.append(camel_id(service_name, "send", cid))
        op_bodies.append(operation)
    for service in system.services:
        qid = queue_ids[service.name]
        for sub in service.subscriptions.values():
            info = system.info(sub.message_type)
            mid = message_ids[info.key]
            operation = {
                "action": "receive",
                "channel": _ref("channels", qid),
                "title": f"{service.name} handles {info.wire_name} v{info.version}",
                "summary": f"Handled by {sub.handler.__qualname__}.",
                "messages": [_ref("channels", qid, "messages", mid)],
                "bindings": _RECEIVE_BINDING,
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
        description = "\n\n".join(lines)
    document: dict[str, Any] = {
        "asyncapi": ASYNCAPI_VERSION,
        "info": {"title": title, "version": version, "description": description},
        "defaultContentType": _CONTENT_TYPE,
        **({"servers": {"broker": _server(server)}} if server else {}),
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
