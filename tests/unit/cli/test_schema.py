"""``python -m actorbus schema``: schema snapshots and the compatibility rules of ``--check``."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
import structlog

from actorbus import Event, Service
from actorbus.cli import main
from actorbus.describe import (
    SchemaChange,
    SnapshotError,
    build_snapshot,
    compare_schemas,
    compare_snapshots,
    dump_snapshot,
    load_snapshot,
    message_schema,
)

from ._shop import TARGET, reference_target
from ._shop import services as shop_services

REPO = Path(__file__).resolve().parents[3]
REFERENCE_SNAPSHOT = REPO / "services" / "schema.snapshot.json"


@pytest.fixture(autouse=True)
def _reset_structlog() -> Iterator[None]:
    yield
    structlog.reset_defaults()


# ------------------------------------------------------------- synthetic schemas, table-driven

STR: dict[str, Any] = {"type": "string"}
INT: dict[str, Any] = {"type": "integer"}
UUID: dict[str, Any] = {"type": "string", "format": "uuid"}


def obj(required: dict[str, Any], optional: dict[str, Any] | None = None) -> dict[str, Any]:
    """An object schema with ``required`` and ``optional`` properties (msgspec's layout)."""
    schema: dict[str, Any] = {"type": "object", "properties": {**required, **(optional or {})}}
    if required:
        schema["required"] = list(required)
    return schema


def doc(root: dict[str, Any], **defs: dict[str, Any]) -> dict[str, Any]:
    """A message schema as msgspec writes it: a ``$ref`` to the root in ``$defs``."""
    return {"$ref": "#/$defs/Msg", "$defs": {"Msg": root, **defs}}


def ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/$defs/{name}"}


LINE = obj({"sku": STR, "qty": INT})
BASE = doc(obj({"orderId": STR, "qty": INT}, {"note": STR}))

# (id, old, new, expected [(breaking, field, detail substring)])
CASES: list[tuple[str, dict[str, Any], dict[str, Any], list[tuple[bool, str, str]]]] = [
    ("identical", BASE, copy.deepcopy(BASE), []),
    (
        "new optional field",
        BASE,
        doc(obj({"orderId": STR, "qty": INT}, {"note": STR, "tag": STR})),
        [(False, "tag", "new optional field 'tag'")],
    ),
    (
        "new required field",
        BASE,
        doc(obj({"orderId": STR, "qty": INT, "customerId": STR}, {"note": STR})),
        [(True, "customerId", "new required field 'customerId'")],
    ),
    (
        "required field removed",
        BASE,
        doc(obj({"orderId": STR}, {"note": STR})),
        [(True, "qty", "field 'qty' was removed")],
    ),
    (
        "optional field removed",
        BASE,
        doc(obj({"orderId": STR, "qty": INT})),
        [(True, "note", "field 'note' was removed")],
    ),
    (
        "field renamed",
        BASE,
        doc(obj({"orderId": STR, "quantity": INT}, {"note": STR})),
        [(True, "qty", "field 'qty' was renamed to 'quantity'")],
    ),
    (
        "removed and added with another type is not a rename",
        BASE,
        doc(obj({"orderId": STR, "quantity": STR}, {"note": STR})),
        [
            (True, "qty", "field 'qty' was removed"),
            (True, "quantity", "new required field 'quantity'"),
        ],
    ),
    (
        "type changed",
        BASE,
        doc(obj({"orderId": STR, "qty": STR}, {"note": STR})),
        [(True, "qty", "field 'qty' changed type from integer to string")],
    ),
    (
        "format changed",
        doc(obj({"orderId": UUID})),
        doc(obj({"orderId": STR})),
        [(True, "orderId", 'changed type from string (format "uuid") to string')],
    ),
    (
        "constraint added",
        BASE,
        doc(obj({"orderId": STR, "qty": {"type": "integer", "minimum": 1}}, {"note": STR})),
        [(True, "qty", "from integer to integer (minimum 1)")],
    ),
    (
        "enum value added",
        doc(obj({"state": {"enum": ["NEW", "DONE"]}})),
        doc(obj({"state": {"enum": ["NEW", "DONE", "LOST"]}})),
        [(True, "state", 'from one of "NEW", "DONE" to one of "NEW", "DONE", "LOST"')],
    ),
    (
        "made nullable",
        BASE,
        doc(obj({"orderId": STR, "qty": {"anyOf": [INT, {"type": "null"}]}}, {"note": STR})),
        [(True, "qty", "from integer to integer | null")],
    ),
    (
        "optional became required",
        BASE,
        doc(obj({"orderId": STR, "qty": INT, "note": STR})),
        [(True, "note", "field 'note' became required")],
    ),
    (
        "the envelope's eventId and occurredAt became required: never invented on decode",
        doc(obj({"orderId": STR}, {"eventId": UUID, "occurredAt": STR})),
        doc(obj({"eventId": UUID, "occurredAt": STR, "orderId": STR})),
        [
            (False, "eventId", "field 'eventId' became required on decode"),
            (False, "occurredAt", "field 'occurredAt' became required on decode"),
        ],
    ),
    (
        "a nested eventId becoming required is breaking as any field",
        doc(obj({"ref": ref("Ref")}), Ref=obj({}, {"eventId": UUID})),
        doc(obj({"ref": ref("Ref")}), Ref=obj({"eventId": UUID})),
        [(True, "ref.eventId", "field 'ref.eventId' became required")],
    ),
    (
        "required became optional",
        BASE,
        doc(obj({"orderId": STR}, {"qty": INT, "note": STR})),
        [(True, "qty", "field 'qty' became optional")],
    ),
    (
        "documentation and defaults are no change",
        BASE,
        doc(
            {
                **obj({"orderId": STR, "qty": {**INT, "description": "how many"}}, {"note": STR}),
                "title": "Renamed",
                "description": "new words",
            }
        ),
        [],
    ),
    (
        "nested field removed",
        doc(obj({"items": {"type": "array", "items": ref("Line")}}), Line=LINE),
        doc(obj({"items": {"type": "array", "items": ref("Line")}}), Line=obj({"sku": STR})),
        [(True, "items[].qty", "field 'items[].qty' was removed")],
    ),
    (
        "nested optional field added",
        doc(obj({"items": {"type": "array", "items": ref("Line")}}), Line=LINE),
        doc(
            obj({"items": {"type": "array", "items": ref("Line")}}),
            Line=obj({"sku": STR, "qty": INT}, {"note": STR}),
        ),
        [(False, "items[].note", "new optional field 'items[].note'")],
    ),
    (
        "nested struct renamed in Python only",
        doc(obj({"items": {"type": "array", "items": ref("Line")}}), Line=LINE),
        doc(obj({"items": {"type": "array", "items": ref("OrderLine")}}), OrderLine=LINE),
        [],
    ),
    (
        "nested object field retyped",
        doc(obj({"customer": ref("Customer")}), Customer=obj({"id": INT})),
        doc(obj({"customer": ref("Customer")}), Customer=obj({"id": STR})),
        [(True, "customer.id", "field 'customer.id' changed type from integer to string")],
    ),
    (
        "array item type changed",
        doc(obj({"tags": {"type": "array", "items": STR}})),
        doc(obj({"tags": {"type": "array", "items": INT}})),
        [(True, "tags[]", "field 'tags[]' changed type from string to integer")],
    ),
    (
        "list became a single value",
        doc(obj({"tags": {"type": "array", "items": STR}})),
        doc(obj({"tags": STR})),
        [(True, "tags", "changed type from array of string to string")],
    ),
    (
        "map value type changed",
        doc(obj({"labels": {"type": "object", "additionalProperties": STR}})),
        doc(obj({"labels": {"type": "object", "additionalProperties": INT}})),
        [(True, "labels{}", "changed type from string to integer")],
    ),
    (
        "unknown fields forbidden",
        BASE,
        doc({**obj({"orderId": STR, "qty": INT}, {"note": STR}), "additionalProperties": False}),
        [(True, "", "the message changed type from object to object without unknown fields")],
    ),
    (
        "union member changed",
        doc(obj({"v": {"anyOf": [INT, STR]}})),
        doc(obj({"v": {"anyOf": [INT, {"type": "boolean"}]}})),
        [(True, "v", "changed type from string to boolean")],
    ),
    (
        "schemaVersion now states the version it defaulted to",
        doc(obj({"orderId": STR}, {"schemaVersion": {"type": "integer", "default": 2}})),
        doc(obj({"orderId": STR}, {"schemaVersion": {"enum": [2], "default": 2}})),
        [(False, "schemaVersion", "field 'schemaVersion' now states its only value, 2")],
    ),
    (
        "schemaVersion narrowed to another version",
        doc(obj({"orderId": STR}, {"schemaVersion": {"type": "integer", "default": 1}})),
        doc(obj({"orderId": STR}, {"schemaVersion": {"enum": [2], "default": 2}})),
        [(True, "schemaVersion", "changed type from integer to one of 2")],
    ),
    (
        "schemaVersion widened back",
        doc(obj({"orderId": STR}, {"schemaVersion": {"enum": [1], "default": 1}})),
        doc(obj({"orderId": STR}, {"schemaVersion": {"type": "integer", "default": 1}})),
        [(True, "schemaVersion", "changed type from one of 1 to integer")],
    ),
    (
        "a nested schemaVersion is an ordinary field",
        doc(obj({"ref": obj({}, {"schemaVersion": {"type": "integer", "default": 1}})})),
        doc(obj({"ref": obj({}, {"schemaVersion": {"enum": [1], "default": 1}})})),
        [(True, "ref.schemaVersion", "changed type from integer to one of 1")],
    ),
    (
        "recursive type unchanged",
        doc(obj({"child": {"anyOf": [ref("Msg"), {"type": "null"}]}})),
        doc(obj({"child": {"anyOf": [ref("Msg"), {"type": "null"}]}})),
        [],
    ),
]


@pytest.mark.parametrize(
    ("old", "new", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_compatibility_rules(
    old: dict[str, Any], new: dict[str, Any], expected: list[tuple[bool, str, str]]
) -> None:
    changes = compare_schemas(old, new)
    assert len(changes) == len(expected), changes
    for change, (breaking, field, detail) in zip(changes, expected, strict=True):
        assert change.breaking is breaking, change
        assert change.field == field, change
        assert detail in change.detail, change


def test_a_dangling_reference_is_reported() -> None:
    with pytest.raises(SnapshotError, match="'#/\\$defs/Nope' cannot be resolved"):
        compare_schemas(doc(obj({"a": ref("Nope")})), doc(obj({"a": ref("Nope")})))


# ----------------------------------------------------------------- message versions, table


def snapshot(**messages: dict[int, tuple[str, dict[str, Any]]]) -> dict[str, Any]:
    """``snapshot(order_created={1: ("event", schema)})`` -> a snapshot ('_' -> '.')."""
    return {
        "format": 1,
        "messages": {
            name.replace("_", "."): {
                str(version): {"kind": kind, "type": f"m.{name}V{version}", "schema": schema}
                for version, (kind, schema) in versions.items()
            }
            for name, versions in messages.items()
        },
    }


VERSION_CASES: list[tuple[str, dict[str, Any], dict[str, Any], list[tuple[bool, str]]]] = [
    ("unchanged", snapshot(a_b={1: ("event", BASE)}), snapshot(a_b={1: ("event", BASE)}), []),
    (
        "new version on a new routing key",
        snapshot(a_b={1: ("event", BASE)}),
        snapshot(a_b={1: ("event", BASE)}, a_b_v2={2: ("event", BASE)}),
        [(False, "a.b.v2 v2 (m.a_b_v2V2): new message type")],
    ),
    (
        "new version on the same routing key",
        snapshot(a_b={1: ("event", BASE)}),
        snapshot(a_b={1: ("event", BASE), 2: ("event", BASE)}),
        [(False, "a.b v2 (m.a_bV2): new version")],
    ),
    (
        "new type",
        snapshot(a_b={1: ("event", BASE)}),
        snapshot(a_b={1: ("event", BASE)}, c_d={1: ("command", BASE)}),
        [(False, "c.d v1 (m.c_dV1): new message type")],
    ),
    (
        "version removed",
        snapshot(a_b={1: ("event", BASE), 2: ("event", BASE)}),
        snapshot(a_b={2: ("event", BASE)}),
        [(True, "a.b v1 (m.a_bV1): the version was removed")],
    ),
    (
        "type removed",
        snapshot(a_b={1: ("event", BASE)}, c_d={1: ("event", BASE)}),
        snapshot(a_b={1: ("event", BASE)}),
        [(True, "c.d v1 (m.c_dV1): the message type was removed")],
    ),
    (
        "kind changed",
        snapshot(a_b={1: ("event", BASE)}),
        snapshot(a_b={1: ("command", BASE)}),
        [(True, "a.b v1 (m.a_bV1): kind changed from event to command")],
    ),
    (
        "field change names type, version and field",
        snapshot(a_b={3: ("event", BASE)}),
        snapshot(a_b={3: ("event", doc(obj({"orderId": STR}, {"note": STR})))}),
        [(True, "a.b v3 (m.a_bV3): field 'qty' was removed")],
    ),
]


@pytest.mark.parametrize(
    ("old", "new", "expected"), [c[1:] for c in VERSION_CASES], ids=[c[0] for c in VERSION_CASES]
)
def test_version_rules(
    old: dict[str, Any], new: dict[str, Any], expected: list[tuple[bool, str]]
) -> None:
    changes = compare_snapshots(old, new)
    assert [(c.breaking, str(c)) for c in changes] == expected


# ----------------------------------------------------------- with real msgspec message types


class Line(msgspec.Struct, rename="camel"):
    sku: str
    qty: int


class PlacedV1(Event, routing_key="order.placed", version=1):
    order_id: str
    lines: tuple[Line, ...]


class LineWithNote(msgspec.Struct, rename="camel"):
    sku: str
    qty: int
    gift_note: str | None = None


class PlacedAdditive(Event, routing_key="order.placed", version=1):
    order_id: str
    lines: tuple[LineWithNote, ...]
    customer_id: str = ""


class PlacedBroken(Event, routing_key="order.placed", version=1):
    order_id: int
    lines: tuple[Line, ...]
    customer_id: str


class Noted(Event, routing_key="thing.noted", version=1):
    """A docstring that must not churn the snapshot."""

    description: str


class HappenedA(Event, routing_key="x.happened", version=1):
    a: int


class HappenedB(Event, routing_key="x.happened", version=1):
    b: int


def test_msgspec_evolution_rules_on_real_types() -> None:
    old = message_schema(PlacedV1)
    additive = compare_schemas(old, message_schema(PlacedAdditive))
    assert [(c.breaking, c.field) for c in additive] == [
        (False, "customerId"),
        (False, "lines[].giftNote"),
    ]
    broken = compare_schemas(old, message_schema(PlacedBroken))
    assert [(c.breaking, c.detail) for c in broken] == [
        (True, "new required field 'customerId'"),
        (True, "field 'orderId' changed type from string to integer"),
    ]


def test_snapshot_of_a_message_before_its_schema_version_was_a_literal() -> None:
    # How snapshots written by earlier actorbus versions showed schemaVersion.
    schema = message_schema(PlacedV1)
    properties = schema["$defs"]["PlacedV1"]["properties"]
    assert properties["schemaVersion"] == {"enum": [1], "default": 1}
    before = copy.deepcopy(schema)
    before["$defs"]["PlacedV1"]["properties"]["schemaVersion"] = {"type": "integer", "default": 1}
    changes = compare_schemas(before, schema)
    assert [(c.breaking, c.field, c.detail) for c in changes] == [
        (False, "schemaVersion", "field 'schemaVersion' now states its only value, 1")
    ]


def test_snapshot_drops_descriptions_but_not_fields_called_description() -> None:
    schema = message_schema(Noted)
    definition = schema["$defs"]["Noted"]
    assert "description" not in definition
    assert "description" in definition["properties"]


def test_two_types_on_one_name_and_version_are_refused() -> None:
    service = Service("x")
    service.declare_publishes(HappenedA, HappenedB)
    with pytest.raises(
        SnapshotError, match=r"are both '[a-z.]+' version 1; give one of them another version"
    ):
        build_snapshot([service])


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{", "is not valid JSON"),
        ("[]", "is not a schema snapshot"),
        ('{"format": 9, "messages": {}}', "has snapshot format 9"),
        ('{"format": 1, "messages": {"a": {"1": {}}}}', "the entry of 'a' is malformed"),
    ],
)
def test_malformed_snapshots_are_refused(text: str, message: str) -> None:
    with pytest.raises(SnapshotError, match=message):
        load_snapshot(text, "snap.json")


def test_change_renders_type_version_and_field() -> None:
    change = SchemaChange(True, "field 'qty' was removed", "qty", "order.created", 1, "m.T")
    assert str(change) == "order.created v1 (m.T): field 'qty' was removed"


# ---------------------------------------------------------------------------- the command


def _write(tmp_path: Path, capsys: pytest.CaptureFixture[str], target: str = TARGET) -> Path:
    path = tmp_path / "schema.snapshot.json"
    assert main(["--log-format", "json", "schema", target, "--output", str(path)]) == 0
    capsys.readouterr()
    return path


def test_snapshot_covers_every_message_and_version(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = json.loads(_write(tmp_path, capsys).read_text())
    messages = data["messages"]
    assert sorted(messages) == [
        "inventory.reserve-stock",
        "inventory.reserve-stock.result",
        "order.created",
        "order.created.v2",
        "stock.rejected",
        "stock.reserved",
    ]
    assert set(messages["order.created"]) == {"1"}
    assert set(messages["order.created.v2"]) == {"2"}
    assert messages["inventory.reserve-stock"]["1"]["kind"] == "command"
    v2 = messages["order.created.v2"]["2"]
    assert v2["type"] == "tests.unit.cli._shop.OrderCreatedV2"
    root = v2["schema"]["$defs"]["OrderCreatedV2"]
    assert root["required"] == ["eventId", "occurredAt", "orderId", "customerId", "items"]


def test_stdout_by_default_and_stable(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["schema", TARGET]) == 0
    first = capsys.readouterr().out
    assert main(["schema", TARGET]) == 0
    assert capsys.readouterr().out == first
    assert first == dump_snapshot(build_snapshot(shop_services()))


def test_check_passes_on_an_unchanged_system(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _write(tmp_path, capsys)
    assert main(["schema", TARGET, "--check", str(path)]) == 0
    assert capsys.readouterr().out == f"{path}: no breaking change; the snapshot is up to date.\n"


def _edit(path: Path, name: str, version: str, edit: Any) -> None:
    data = json.loads(path.read_text())
    edit(data["messages"][name][version]["schema"])
    path.write_text(json.dumps(data))


def test_check_fails_naming_type_version_and_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _write(tmp_path, capsys)

    def had_a_warehouse(schema: dict[str, Any]) -> None:
        # As if the committed v1 had a required field that the code no longer has.
        root = schema["$defs"]["OrderCreated"]
        root["properties"]["warehouse"] = {"type": "string"}
        root["required"].append("warehouse")

    def qty_was_a_string(schema: dict[str, Any]) -> None:
        schema["$defs"]["Line"]["properties"]["qty"] = {"type": "string"}

    _edit(path, "order.created", "1", had_a_warehouse)
    _edit(path, "order.created.v2", "2", qty_was_a_string)
    assert main(["schema", TARGET, "--check", str(path), "--output", str(path)]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"{path}: 2 breaking change(s) to existing message versions:"
    assert out[1] == (
        "  order.created v1 (tests.unit.cli._shop.OrderCreated): field 'warehouse' was removed"
    )
    assert out[2] == (
        "  order.created.v2 v2 (tests.unit.cli._shop.OrderCreatedV2): "
        "field 'items[].qty' changed type from string to integer"
    )
    assert "new routing key" in out[3]
    # With --output, a failed check leaves the snapshot as it was.
    assert "warehouse" in path.read_text()


def test_check_fails_on_a_removed_version(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _write(tmp_path, capsys)
    data = json.loads(path.read_text())
    data["messages"]["order.cancelled"] = {"1": data["messages"]["order.created"]["1"]}
    path.write_text(json.dumps(data))
    assert main(["schema", TARGET, "--check", str(path)]) == 1
    out = capsys.readouterr().out
    assert (
        "order.cancelled v1 (tests.unit.cli._shop.OrderCreated): the message type was removed"
        in out
    )


def test_check_passes_additive_changes_and_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _write(tmp_path, capsys)
    data = json.loads(path.read_text())
    del data["messages"]["stock.rejected"]  # as if the type is new in the code

    reply = data["messages"]["inventory.reserve-stock.result"]["1"]["schema"]
    del reply["$defs"]["ReserveStockResult"]["properties"]["reason"]  # a new optional field
    path.write_text(json.dumps(data))
    assert main(["schema", TARGET, "--check", str(path), "--output", str(path)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"{path}: no breaking change; 2 compatible change(s) not yet in the snapshot:"
    assert out[1] == (
        "  inventory.reserve-stock.result v1 (tests.unit.cli._shop.ReserveStockResult): "
        "new optional field 'reason'"
    )
    assert out[2] == "  stock.rejected v1 (tests.unit.cli._shop.StockRejected): new message type"
    # --output with a passing check brings the snapshot up to date.
    assert path.read_text() == dump_snapshot(build_snapshot(shop_services()))


def test_missing_snapshot_exits_2_saying_how_to_create_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "none.json"
    assert main(["--log-format", "json", "schema", TARGET, "--check", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"cannot read snapshot {str(path)!r}: No such file or directory" in err
    assert f"--output {path}" in err


def test_malformed_snapshot_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "bad.json"
    path.write_text("{")
    assert main(["--log-format", "json", "schema", TARGET, "--check", str(path)]) == 2
    assert "is not valid JSON" in capsys.readouterr().err


def test_check_from_the_environment(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _write(tmp_path, capsys)
    monkeypatch.setenv("ACTORBUS_SCHEMA_CHECK", str(path))
    assert main(["schema", TARGET]) == 0
    assert capsys.readouterr().out.endswith("the snapshot is up to date.\n")


def test_bad_target_exits_2_with_the_resolver_message(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["--log-format", "json", "schema", "tests.unit.cli._shop.nothing"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "module 'tests.unit.cli._shop.nothing' not found" in captured.err


def test_help_documents_every_option(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["schema", "--help"])
    out = capsys.readouterr().out
    for flag, env in [("--output", "ACTORBUS_SCHEMA_OUTPUT"), ("--check", "ACTORBUS_SCHEMA_CHECK")]:
        assert flag in out
        assert env in out


# ------------------------------------------------------------------- the reference system


@pytest.mark.parametrize("flow", ["choreography", "orchestration"])
def test_reference_snapshot_is_the_same_in_both_flows(
    flow: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("ORDER_FLOW", flow)
    target = reference_target()
    assert main(["schema", target]) == 0
    data = json.loads(capsys.readouterr().out)
    assert {"order.created", "order.created.v2", "stock.reserved", "payment.charge"} <= set(
        data["messages"]
    )
    monkeypatch.setenv("ORDER_FLOW", "orchestration" if flow == "choreography" else "choreography")
    assert main(["schema", target]) == 0
    assert json.loads(capsys.readouterr().out) == data


def test_committed_reference_snapshot_has_no_breaking_change(
    capsys: pytest.CaptureFixture[str],
) -> None:
    target = reference_target()
    if not REFERENCE_SNAPSHOT.exists():
        pytest.skip(f"SKIPPED: {REFERENCE_SNAPSHOT} is not committed yet")
    code = main(["schema", target, "--check", str(REFERENCE_SNAPSHOT)])
    assert code == 0, capsys.readouterr().out
