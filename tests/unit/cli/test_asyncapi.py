"""``python -m actorbus asyncapi``: the AsyncAPI 3.0 document, checked in process and by the
standard AsyncAPI parser (``@asyncapi/parser``, installed with ``npm ci --prefix tests/tools``).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog

from actorbus.cli import main
from actorbus.describe import build_asyncapi

from ._shop import TARGET, reference_target
from ._shop import services as shop_services

TOOLS = Path(__file__).resolve().parents[2] / "tools"
VALIDATOR = TOOLS / "validate-asyncapi.cjs"
PARSER = TOOLS / "node_modules" / "@asyncapi" / "parser" / "package.json"
NATS = "nats://app:s3cret@127.0.0.1:4222"


@pytest.fixture(autouse=True)
def _reset_structlog() -> Iterator[None]:
    yield
    structlog.reset_defaults()


@pytest.fixture(params=["shop", "choreography", "orchestration"])
def target(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """The self-made system, and the reference system in both of its flows."""
    if request.param == "shop":
        return TARGET
    monkeypatch.setenv("ORDER_FLOW", request.param)
    return reference_target()


def _document(capsys: pytest.CaptureFixture[str], target: str, *extra: str) -> dict[str, Any]:
    assert main(["asyncapi", target, *extra]) == 0
    document: dict[str, Any] = json.loads(capsys.readouterr().out)
    return document


def _resolve(document: dict[str, Any], ref: str) -> Any:
    assert ref.startswith("#/"), ref
    node: Any = document
    for part in ref[2:].split("/"):
        part = part.replace("~1", "/").replace("~0", "~")
        assert isinstance(node, dict), f"{ref}: {part!r} is under a non-object"
        assert part in node, f"{ref} does not resolve: no {part!r}"
        node = node[part]
    return node


def _refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                yield value
            else:
                yield from _refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from _refs(item)


# --------------------------------------------------------------- the document, in Python


BROKERS = pytest.mark.parametrize(
    "broker", [(), ("--broker", "nats://127.0.0.1:4222")], ids=["amqp", "nats"]
)


@BROKERS
def test_every_reference_resolves(
    target: str, broker: tuple[str, ...], capsys: pytest.CaptureFixture[str]
) -> None:
    document = _document(capsys, target, *broker)
    assert document["asyncapi"] == "3.0.0"
    refs = list(_refs(document))
    assert refs
    for ref in refs:
        _resolve(document, ref)


@BROKERS
def test_operation_messages_belong_to_their_channel(
    target: str, broker: tuple[str, ...], capsys: pytest.CaptureFixture[str]
) -> None:
    document = _document(capsys, target, *broker)
    for name, operation in document["operations"].items():
        channel = operation["channel"]["$ref"]
        assert operation["action"] in ("send", "receive"), name
        for message in operation["messages"]:
            assert message["$ref"].startswith(channel + "/messages/"), name
        reply = operation.get("reply")
        if reply is not None:
            for message in reply["messages"]:
                assert message["$ref"].startswith(reply["channel"]["$ref"] + "/messages/")


def test_both_versions_of_order_created(target: str, capsys: pytest.CaptureFixture[str]) -> None:
    document = _document(capsys, target)
    messages = document["components"]["messages"]
    v1, v2 = messages["orderCreatedV1"], messages["orderCreatedV2"]
    assert v1["name"] == "order.created"
    assert v2["name"] == "order.created.v2"
    assert v1["headers"]["properties"]["x-schema-version"]["const"] == 1
    assert v2["headers"]["properties"]["x-schema-version"]["const"] == 2
    assert v1["bindings"]["amqp"] == {"messageType": "order.created", "bindingVersion": "0.3.0"}
    schemas = document["components"]["schemas"]
    v1_schema = _resolve(document, v1["payload"]["$ref"])
    v2_schema = _resolve(document, v2["payload"]["$ref"])
    assert v1_schema["x-routing-key"] == "order.created"
    assert v2_schema["x-schema-version"] == 2
    # camelCase on the wire, exactly as docs/contract.md says.
    assert set(v1_schema["properties"]) == {
        "eventId",
        "orderId",
        "sku",
        "qty",
        "occurredAt",
        "schemaVersion",
    }
    assert set(v2_schema["properties"]) == {
        "eventId",
        "orderId",
        "customerId",
        "items",
        "occurredAt",
        "schemaVersion",
    }
    line = _resolve(document, v2_schema["properties"]["items"]["items"]["$ref"])
    assert set(line["properties"]) == {"sku", "qty"}
    assert all("$defs" not in schema for schema in schemas.values())


def test_channels_carry_amqp_bindings(capsys: pytest.CaptureFixture[str]) -> None:
    document = _document(capsys, TARGET)
    channels = document["channels"]
    assert channels["orderCreatedV2"]["address"] == "order.created.v2"
    assert channels["orderCreatedV2"]["bindings"]["amqp"] == {
        "is": "routingKey",
        "exchange": {
            "name": "orders.topic",
            "type": "topic",
            "durable": True,
            "autoDelete": False,
            "vhost": "/",
        },
        "bindingVersion": "0.3.0",
    }
    command = channels["inventoryReserveStock"]["bindings"]["amqp"]
    assert command["exchange"]["name"] == "actorbus.commands"
    assert command["exchange"]["type"] == "direct"
    queue = channels["inventoryQueue"]
    assert queue["address"] == "inventory.queue"
    assert queue["bindings"]["amqp"]["is"] == "queue"
    assert queue["bindings"]["amqp"]["queue"]["name"] == "inventory.queue"
    assert set(queue["messages"]) == {"orderCreatedV2", "inventoryReserveStockV1"}
    assert set(channels["notificationQueue"]["messages"]) == {"orderCreatedV1", "stockReservedV1"}
    reply = channels["inventoryReserveStockResult"]
    assert reply["address"] is None
    assert reply["bindings"]["amqp"]["exchange"]["type"] == "default"


def test_operations_per_service(capsys: pytest.CaptureFixture[str]) -> None:
    operations = _document(capsys, TARGET)["operations"]
    send = operations["orderSendOrderCreatedV2"]
    assert send["action"] == "send"
    assert send["channel"] == {"$ref": "#/channels/orderCreatedV2"}
    assert send["bindings"]["amqp"]["deliveryMode"] == 2
    receive = operations["inventoryReceiveOrderCreatedV2"]
    assert receive["action"] == "receive"
    assert receive["channel"] == {"$ref": "#/channels/inventoryQueue"}
    assert receive["messages"] == [{"$ref": "#/channels/inventoryQueue/messages/orderCreatedV2"}]
    assert receive["bindings"]["amqp"]["ack"] is True
    # A command and its reply: the sender's send and the handler's receive carry the reply.
    command = operations["orchestratorSendInventoryReserveStock"]
    expected_reply = {
        "$ref": "#/channels/inventoryReserveStockResult/messages/inventoryReserveStockResultV1"
    }
    assert command["reply"]["messages"] == [expected_reply]
    assert command["reply"]["address"]["location"] == "$message.header#/reply_to"
    handled = operations["inventoryReceiveInventoryReserveStockV1"]
    assert handled["reply"]["channel"] == {"$ref": "#/channels/inventoryReserveStockResult"}
    assert "orchestratorReceiveInventoryReserveStockResultV1" in operations
    # The reply is described by the receive operation's reply, not by a separate send.
    assert not any(
        name.startswith("inventorySendInventoryReserveStockResult") for name in operations
    )


def test_one_wire_name_with_two_versions() -> None:
    from actorbus import Event, Service

    class Shipped(Event, routing_key="parcel.shipped", version=1):
        parcel_id: str

    class ShippedV2(Event, routing_key="parcel.shipped", version=2):
        parcel_id: str
        carrier: str = ""

    sender = Service("sender", exchange="parcels.topic")
    sender.declare_publishes(Shipped, ShippedV2)
    document = build_asyncapi([sender], title="t", version="0")
    channel = document["channels"]["parcelShipped"]
    assert set(channel["messages"]) == {"parcelShippedV1", "parcelShippedV2"}
    assert len(document["operations"]["senderSendParcelShipped"]["messages"]) == 2


# -------------------------------------------------------------------------- the command


def test_output_file_title_and_version(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ACTORBUS_ASYNCAPI_VERSION", "2.3.4")
    path = tmp_path / "asyncapi.json"
    code = main(
        ["--log-format", "json", "asyncapi", TARGET, "--output", str(path), "--title", "Shop"]
    )
    assert code == 0
    assert capsys.readouterr().out == ""
    document = json.loads(path.read_text())
    assert document["info"]["title"] == "Shop"
    assert document["info"]["version"] == "2.3.4"
    assert document == build_asyncapi(shop_services(), title="Shop", version="2.3.4")


def test_unwritable_output_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "missing-dir" / "asyncapi.json"
    assert main(["--log-format", "json", "asyncapi", TARGET, "-o", str(path)]) == 2
    assert f"cannot write {str(path)!r}" in capsys.readouterr().err


def test_bad_target_exits_2_with_the_resolver_message(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["--log-format", "json", "asyncapi", "tests.unit.cli._shop:servces"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "has no attribute 'servces'; did you mean 'services'?" in captured.err


def test_help_documents_every_option(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["asyncapi", "--help"])
    out = capsys.readouterr().out
    for flag, env in [
        ("--output", "ACTORBUS_ASYNCAPI_OUTPUT"),
        ("--title", "ACTORBUS_ASYNCAPI_TITLE"),
        ("--api-version", "ACTORBUS_ASYNCAPI_VERSION"),
    ]:
        assert flag in out
        assert env in out


# ------------------------------------------------- validation by the standard AsyncAPI parser


@pytest.fixture(scope="module")
def node() -> str:
    """The node executable, with @asyncapi/parser installed under tests/tools."""
    executable = shutil.which("node")
    problem = None
    if executable is None:
        problem = "node is not installed"
    elif not PARSER.exists():
        problem = f"@asyncapi/parser is not installed in {TOOLS}"
    if problem is None:
        assert executable is not None
        return executable
    remedy = f"{problem}: install node (>= 18) and run `npm ci --prefix tests/tools`"
    if os.environ.get("CI"):
        pytest.fail(f"CI must validate AsyncAPI documents, but {remedy}")
    pytest.skip(f"SKIPPED AsyncAPI parser validation: {remedy}")


def _validate(node: str, documents: dict[str, dict[str, Any]], directory: Path) -> str:
    """Run the parser on each document (one node process); return its stdout."""
    paths = []
    for name, document in documents.items():
        path = directory / f"{name}.json"
        path.write_text(json.dumps(document))
        paths.append(str(path))
    result = subprocess.run(
        [node, str(VALIDATOR), *paths],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode in (0, 1), result.stderr
    return result.stdout


def _system_documents(monkeypatch: pytest.MonkeyPatch) -> dict[str, dict[str, Any]]:
    """The documents of the self-made system and of both reference flows (when importable)."""
    from actorbus.cli._imports import resolve_services

    documents = {
        "shop": build_asyncapi(shop_services()),
        "shop-nats": build_asyncapi(shop_services(), server=NATS),
    }
    for flow in ("choreography", "orchestration"):
        monkeypatch.setenv("ORDER_FLOW", flow)
        try:
            services = resolve_services("services")
        except Exception as exc:  # the reference system is written concurrently
            print(f"reference system not validated: {exc!r}")
            continue
        documents[flow] = build_asyncapi(services, title="services")
        documents[f"{flow}-nats"] = build_asyncapi(services, title="services", server=NATS)
    return documents


def test_the_asyncapi_parser_accepts_the_documents(
    node: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    documents = _system_documents(monkeypatch)
    out = _validate(node, documents, tmp_path)
    for name in documents:
        assert f"{tmp_path / name}.json: valid AsyncAPI 3.0.0 document" in out, out


def test_the_parser_rejects_broken_documents(node: str, tmp_path: Path) -> None:
    bad_binding = build_asyncapi(shop_services())
    bad_binding["channels"]["orderCreated"]["bindings"]["amqp"]["exchange"]["type"] = "weird"
    foreign_message = build_asyncapi(shop_services())
    foreign_message["operations"]["orderSendOrderCreatedV2"]["messages"] = [
        {"$ref": "#/channels/orderCreated/messages/orderCreatedV1"}
    ]
    dangling = build_asyncapi(shop_services())
    dangling["operations"]["orderSendOrderCreatedV2"]["channel"] = {"$ref": "#/channels/x"}
    bad_nats = build_asyncapi(shop_services(), server=NATS)
    bad_nats["operations"]["inventoryReceiveOrderCreatedV2"]["bindings"]["nats"]["queue"] = 7
    out = _validate(
        node,
        {
            "binding": bad_binding,
            "foreign": foreign_message,
            "dangling": dangling,
            "nats": bad_nats,
        },
        tmp_path,
    )
    for name, expected in [
        ("binding", "channels.orderCreated.bindings.amqp.exchange.type"),
        ("nats", "operations.inventoryReceiveOrderCreatedV2.bindings.nats.queue"),
        ("foreign", "asyncapi3-operation-messages-from-referred-channel"),
        ("dangling", "invalid-ref"),
    ]:
        prefix = f"{tmp_path / name}.json: "
        assert f"{prefix}invalid AsyncAPI document" in out, out
        assert any(
            line.startswith(prefix + "error: ") and expected in line for line in out.splitlines()
        ), out


EVENTS = ("order.created", "order.created.v2", "stock.reserved", "stock.rejected")


@pytest.mark.parametrize("flow", ["choreography", "orchestration"])
def test_events_are_sent_without_mandatory_commands_with_it(flow: str) -> None:
    from services import services as reference

    document = build_asyncapi(reference(flow))
    mandatory: dict[str, bool] = {}
    for op in document["operations"].values():
        if op["action"] == "send":
            wire = op["title"].split(" sends ", 1)[1]
            mandatory[wire] = op["bindings"]["amqp"]["mandatory"]
    events = {wire: m for wire, m in mandatory.items() if wire in EVENTS}
    commands = {wire: m for wire, m in mandatory.items() if wire not in EVENTS}
    assert all(m is False for m in events.values()), events
    assert all(m is True for m in commands.values()), commands
    if flow == "choreography":
        assert "order.created.v2" in events
    else:
        assert commands, "the orchestrator sends commands"


def test_the_broker_is_the_documents_server_without_credentials() -> None:
    document = build_asyncapi(shop_services(), server="amqps://app:s3cret@mq.example:5671/orders")
    assert document["servers"] == {
        "broker": {
            "host": "mq.example:5671",
            "protocol": "amqps",
            "protocolVersion": "0.9.1",
            "pathname": "/orders",
            "description": "The broker the services declare their exchanges and queues on.",
        }
    }
    assert "s3cret" not in json.dumps(document)
    assert "servers" not in build_asyncapi(shop_services(), server=None)


def test_graph_and_asyncapi_refuse_services_with_the_same_name(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from actorbus.describe import render_graph
    from actorbus.exceptions import ConfigurationError

    twice = [*shop_services(), *shop_services()]
    with pytest.raises(ConfigurationError, match="service names must be unique; repeated"):
        build_asyncapi(twice)
    with pytest.raises(ConfigurationError, match="service names must be unique; repeated"):
        render_graph(twice)


# ------------------------------------------------------------------ NATS JetStream


def test_a_nats_broker_is_described_as_its_subjects_and_consumers(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from actorbus.brokers import nats_subjects

    document = _document(capsys, TARGET, "--broker", NATS)
    assert document["servers"] == {
        "broker": {
            "host": "127.0.0.1:4222",
            "protocol": "nats",
            "description": "A NATS server with JetStream: the streams and durable consumers "
            "of the services' exchanges and queues.",
        }
    }
    assert "s3cret" not in json.dumps(document)
    channels = document["channels"]
    created = channels["orderCreated"]
    assert created["address"] == "orders.topic.order.created"
    assert created["x-nats-stream"] == "orders_topic"
    assert "bindings" not in created  # NATS channel bindings are reserved: no fields
    assert channels["inventoryQueue"]["address"] == "actorbus.direct.inventory.queue"
    assert channels["inventoryReserveStockResult"]["address"] is None
    for message in document["components"]["messages"].values():
        assert "bindings" not in message
    ops = document["operations"]
    # An event is read from its subject by the binding's durable consumer ...
    receive = ops["inventoryReceiveOrderCreatedV2"]
    assert receive["channel"] == {"$ref": "#/channels/orderCreatedV2"}
    subject = "orders.topic.order.created.v2"
    assert receive["bindings"] == {
        "nats": {
            "queue": nats_subjects.binding_consumer_name(
                "inventory.queue", "orders.topic", subject
            ),
            "bindingVersion": "0.1.0",
        }
    }
    # ... a reply (bind=False) from the queue's own subject, by its home consumer.
    reply = ops["orchestratorReceiveInventoryReserveStockResultV1"]
    assert reply["channel"] == {"$ref": "#/channels/orchestratorQueue"}
    assert reply["bindings"]["nats"]["queue"] == nats_subjects.consumer_name(
        "orchestrator.queue", "home"
    )
    assert ops["orderSendOrderCreated"]["bindings"] == {"nats": {"bindingVersion": "0.1.0"}}
    command = next(op for op in ops.values() if op.get("reply"))
    assert command["reply"]["address"]["location"] == "$message.header#/Actorbus-Reply-To"


def test_several_nats_hosts_are_several_servers_and_tls_is_said() -> None:
    document = build_asyncapi(shop_services(), server="tls://u:pw@h1:4333,h2?tls_ca=/ca.pem")
    servers = document["servers"]
    assert [(s["host"], s["protocol"]) for s in servers.values()] == [
        ("h1:4333", "nats"),
        ("h2:4222", "nats"),
    ]
    assert list(servers) == ["broker1", "broker2"]
    assert all("over TLS" in s["description"] for s in servers.values())
    assert "pw" not in json.dumps(servers)


def test_the_protocol_can_be_chosen_without_a_server(capsys: pytest.CaptureFixture[str]) -> None:
    document = _document(capsys, TARGET, "--server", "none", "--protocol", "nats")
    assert "servers" not in document
    assert document["channels"]["orderCreated"]["address"] == "orders.topic.order.created"
    amqp = _document(capsys, TARGET, "--broker", "sqlite:///x.db")
    assert amqp["channels"]["orderCreated"]["bindings"]["amqp"]["is"] == "routingKey"
