"""The graph and AsyncAPI show a saga's steps from its declaration."""

from __future__ import annotations

from actorbus.describe import ConsoleModel, build_asyncapi, graph_data, render_graph

from ._saga_cases import Ledger, hotel, orchestrator, payment, trip_saga


def test_graph_and_asyncapi_show_the_steps() -> None:
    ledger = Ledger()
    svcs = [orchestrator(trip_saga(ledger)), hotel(ledger), payment(ledger)]
    mermaid = render_graph(svcs)
    assert 'subgraph saga_trips_trip["saga trip (trips)"]' in mermaid
    assert (
        '"1. hotel: send trips.book-hotel → await reply trips.book-hotel.result; '
        'compensate: trips.cancel-hotel → trips.cancel-hotel.result"' in mermaid
    )
    assert "saga_trips_trip_2 --> saga_trips_trip_3" in mermaid
    # The commands the saga sends are publications of its service.
    assert '-.->|"trips.charge"|' in mermaid
    dot = render_graph(svcs, "dot")
    assert "subgraph cluster_saga_trips_trip {" in dot
    doc = build_asyncapi(svcs)
    (saga,) = doc["x-sagas"]
    assert saga["service"] == "trips"
    assert [s["step"] for s in saga["steps"]] == ["hotel", "charge", "notify"]
    assert saga["steps"][1]["compensate"] == "trips.refund"
    assert saga["steps"][1]["awaits"] == ["trips.charge.result"]


def test_the_console_graph_has_a_node_per_saga_with_its_steps() -> None:
    ledger = Ledger()
    svcs = [orchestrator(trip_saga(ledger)), hotel(ledger), payment(ledger)]
    graph = graph_data(svcs)
    assert ConsoleModel(svcs, snapshot=False).graph() == graph
    (saga,) = [n for n in graph["nodes"] if n["kind"] == "saga"]
    assert saga["id"] == "saga_trips_trip"
    assert (saga["name"], saga["service"], saga["label"]) == ("trip", "trips", "saga trip (trips)")
    assert [s["step"] for s in saga["steps"]] == ["hotel", "charge", "notify"]
    assert saga["steps"][1]["sends"] == "trips.charge"
    assert saga["steps"][1]["compensate"] == "trips.refund"
    assert saga["steps"][0]["label"] == (
        "1. hotel: send trips.book-hotel → await reply trips.book-hotel.result; "
        "compensate: trips.cancel-hotel → trips.cancel-hotel.result"
    )
    # The service that runs the saga points at it; every edge ends at a node.
    assert {"source": "svc_trips", "target": "saga_trips_trip", "label": "", "dashed": True} in (
        graph["edges"]
    )
    ids = {n["id"] for n in graph["nodes"]}
    assert all(e["source"] in ids and e["target"] in ids for e in graph["edges"])
