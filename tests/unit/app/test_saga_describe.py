"""The graph and AsyncAPI show a saga's steps from its declaration."""

from __future__ import annotations

from actorbus.describe import build_asyncapi, render_graph

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
