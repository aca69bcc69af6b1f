"""Draw a system of services as a Mermaid flowchart or a Graphviz DOT graph.

The picture is the one a team draws by hand for choreography and orchestration: services
publish to exchanges, exchanges route by routing key to queues, queues feed services. Events
are solid arrows; commands and replies are dashed. Each arrow carries one routing key::

    order -->|"order.created.v2"| orders.topic -->|"order.created.v2"| inventory.queue --> inventory

Only the services' declarations are read (handlers, ``declare_publishes``, queues and
exchanges); nothing touches a broker.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

from ..app import Service
from ..brokers import DEFAULT_EXCHANGE
from ._model import SystemDescription, describe_system

__all__ = (
    "GraphFormat",
    "graph_data",
    "render_dot",
    "render_graph",
    "render_mermaid",
    "saga_steps",
    "step_label",
    "system_graph",
)

GraphFormat = Literal["mermaid", "dot"]

NodeKind = Literal["service", "exchange", "queue"]

_UNSAFE = re.compile(r"[^A-Za-z0-9_]")


@dataclass(frozen=True, slots=True)
class Node:
    """A box in the picture: a service, an exchange or a queue."""

    kind: NodeKind
    name: str
    label: str

    @property
    def id(self) -> str:
        """An identifier safe in Mermaid and DOT (``q_inventory_queue``)."""
        prefix = {"service": "svc", "exchange": "ex", "queue": "q"}[self.kind]
        return f"{prefix}_{_UNSAFE.sub('_', self.name) or 'default'}"


@dataclass(frozen=True, slots=True)
class Edge:
    """An arrow: ``source`` to ``target``, labelled with a routing key (or nothing)."""

    source: Node
    target: Node
    label: str
    dashed: bool


@dataclass(frozen=True, slots=True)
class Graph:
    """The nodes and edges of a system, in a stable order."""

    nodes: tuple[Node, ...]
    edges: tuple[Edge, ...]
    #: Each saga: (its service, its name, one label per step, in order).
    sagas: tuple[tuple[str, str, tuple[str, ...]], ...] = ()


def step_label(index: int, step: dict[str, Any]) -> str:
    """Return ``"1. reserve: inventory.reserve-stock → …; undo: …"`` for a saga step."""
    text = f"{index}. {step['step']}:"
    if step["sends"]:
        text += f" send {step['sends']}"
    if step["awaits"]:
        kind = "event" if step["awaitsEvent"] else "reply"
        text += f" → await {kind} {' | '.join(step['awaits'])}"
    if step["compensate"]:
        text += f"; compensate: {step['compensate']}"
        if step["compensationAwaits"]:
            text += f" → {' | '.join(step['compensationAwaits'])}"
    return text


def saga_id(service: str, saga: str) -> str:
    """Return an id of a saga safe in Mermaid, DOT and the console (``saga_orchestrator_order``)."""
    return f"saga_{_UNSAFE.sub('_', service)}_{_UNSAFE.sub('_', saga)}"


def saga_steps(services: Iterable[Service]) -> tuple[tuple[str, str, tuple[str, ...]], ...]:
    """Return (service, saga, step labels) for every saga the services run."""
    return tuple(
        (
            service.name,
            saga.name,
            tuple(step_label(i, step) for i, step in enumerate(saga.describe(), 1)),
        )
        for service in services
        for saga in service.sagas
    )


def system_graph(services: Iterable[Service] | SystemDescription) -> Graph:
    """Return the nodes and edges that draw ``services``.

    Edges: a service to the exchange it publishes a message to (events to its topic
    exchange, commands to its command exchange); an exchange to each queue bound to it, one
    edge per routing key; a queue to its service; a replying service straight to the queue
    of each service that awaits the reply (through the default exchange). Commands and
    replies are dashed. Exchanges with no edge are left out.
    """
    system = services if isinstance(services, SystemDescription) else describe_system(services)
    nodes: dict[tuple[NodeKind, str], Node] = {}
    edges: dict[tuple[str, str, str], Edge] = {}

    def node(kind: NodeKind, name: str) -> Node:
        found = nodes.get((kind, name))
        if found is None:
            label = name
            if kind == "exchange":
                spec = system.exchanges.get(name)
                label = f"{name} ({spec.type})" if spec is not None else name
            found = nodes[(kind, name)] = Node(kind, name, label)
        return found

    def edge(source: Node, target: Node, label: str, dashed: bool) -> None:
        edges.setdefault((source.id, target.id, label), Edge(source, target, label, dashed))

    for service in system.services:
        node("service", service.name)
    for service in system.services:
        node("queue", service.queue.name)
    for pub in system.publications:
        source = node("service", pub.service.name)
        dashed = pub.message.kind != "event"
        if pub.exchange == DEFAULT_EXCHANGE:
            for consumer in system.consumers.get(pub.message.key, []):
                edge(source, node("queue", consumer.queue.name), pub.message.wire_name, True)
        else:
            edge(source, node("exchange", pub.exchange), pub.message.wire_name, dashed)
    for binding in system.bindings:
        versions = system.versions(binding.routing_key)
        dashed = bool(versions) and all(m.kind != "event" for m in versions)
        edge(
            node("exchange", binding.exchange),
            node("queue", binding.queue),
            binding.routing_key,
            dashed,
        )
    for service in system.services:
        edge(node("queue", service.queue.name), node("service", service.name), "", False)
    ordered = sorted(nodes.values(), key=lambda n: ("service", "exchange", "queue").index(n.kind))
    return Graph(tuple(ordered), tuple(edges.values()), saga_steps(system.services))


def graph_data(services: Iterable[Service] | SystemDescription) -> dict[str, Any]:
    """Return the graph of ``services`` as the console's JSON (``GET /ui/api/model``).

    ``nodes`` are ``{id, kind, name, label}`` (kind ``service``, ``exchange``, ``queue``),
    then one ``saga`` node per saga, which also carries its ``service`` and its ``steps`` (in
    order: ``{step, sends, awaits, awaitsEvent, compensate, compensationAwaits, timeout,
    attempts, label}``, ``label`` as in the Mermaid picture). ``edges`` are ``{source,
    target, label, dashed}``; a saga's edge runs from the service that runs it to the saga
    node, dashed and unlabelled (the commands it sends are the service's own edges).
    """
    system = services if isinstance(services, SystemDescription) else describe_system(services)
    graph = system_graph(system)
    nodes: list[dict[str, Any]] = [
        {"id": n.id, "kind": n.kind, "name": n.name, "label": n.label} for n in graph.nodes
    ]
    edges: list[dict[str, Any]] = [
        {"source": e.source.id, "target": e.target.id, "label": e.label, "dashed": e.dashed}
        for e in graph.edges
    ]
    for service in system.services:
        for saga in service.sagas:
            sid = saga_id(service.name, saga.name)
            steps = [
                {**step, "label": step_label(i, step)} for i, step in enumerate(saga.describe(), 1)
            ]
            nodes.append(
                {
                    "id": sid,
                    "kind": "saga",
                    "name": saga.name,
                    "label": f"saga {saga.name} ({service.name})",
                    "service": service.name,
                    "steps": steps,
                }
            )
            edges.append(
                {
                    "source": Node("service", service.name, service.name).id,
                    "target": sid,
                    "label": "",
                    "dashed": True,
                }
            )
    return {"nodes": nodes, "edges": edges}


_MERMAID_SHAPES: dict[NodeKind, tuple[str, str]] = {
    "service": ("([", "])"),
    "exchange": ("{{", "}}"),
    "queue": ("[(", ")]"),
}


def _mermaid_text(text: str) -> str:
    # Mermaid strings are double-quoted; a quote inside is written as an entity.
    return '"' + text.replace('"', "#quot;") + '"'


def render_mermaid(graph: Graph) -> str:
    """Return ``graph`` as a Mermaid flowchart (left to right), ending with a newline."""
    lines = ["flowchart LR"]
    for n in graph.nodes:
        opening, closing = _MERMAID_SHAPES[n.kind]
        lines.append(f"    {n.id}{opening}{_mermaid_text(n.label)}{closing}")
    for e in graph.edges:
        arrow = "-.->" if e.dashed else "-->"
        label = f"|{_mermaid_text(e.label)}|" if e.label else ""
        lines.append(f"    {e.source.id} {arrow}{label} {e.target.id}")
    for service, saga, steps in graph.sagas:
        sid = saga_id(service, saga)
        lines.append(f"    subgraph {sid}[{_mermaid_text(f'saga {saga} ({service})')}]")
        lines.append("        direction TB")
        for i, label in enumerate(steps, 1):
            lines.append(f"        {sid}_{i}[{_mermaid_text(label)}]")
        for i in range(1, len(steps)):
            lines.append(f"        {sid}_{i} --> {sid}_{i + 1}")
        lines.append("    end")
        lines.append(f"    svc_{_UNSAFE.sub('_', service)} -.- {sid}")
    lines.append("    classDef service fill:#e8f0fe,stroke:#4a6fa5")
    lines.append("    classDef exchange fill:#fff4e0,stroke:#c08a2e")
    lines.append("    classDef queue fill:#eaf6ea,stroke:#4c8c4c")
    for kind in ("service", "exchange", "queue"):
        ids = [n.id for n in graph.nodes if n.kind == kind]
        if ids:
            lines.append(f"    class {','.join(ids)} {kind}")
    return "\n".join(lines) + "\n"


_DOT_SHAPES: dict[NodeKind, str] = {
    "service": 'shape=box, style="rounded,filled", fillcolor="#e8f0fe"',
    "exchange": 'shape=hexagon, style=filled, fillcolor="#fff4e0"',
    "queue": 'shape=cylinder, style=filled, fillcolor="#eaf6ea"',
}


def _dot_text(text: str) -> str:
    # A JSON string is a valid DOT quoted string for the characters names can hold.
    return json.dumps(text)


def render_dot(graph: Graph) -> str:
    """Return ``graph`` as a Graphviz DOT digraph (left to right), ending with a newline."""
    lines = [
        "digraph actorbus {",
        "    rankdir=LR;",
        '    node [fontname="Helvetica"];',
        '    edge [fontname="Helvetica", fontsize=10];',
    ]
    for n in graph.nodes:
        lines.append(f"    {n.id} [label={_dot_text(n.label)}, {_DOT_SHAPES[n.kind]}];")
    for e in graph.edges:
        attrs = []
        if e.label:
            attrs.append(f"label={_dot_text(e.label)}")
        if e.dashed:
            attrs.append("style=dashed")
        suffix = f" [{', '.join(attrs)}]" if attrs else ""
        lines.append(f"    {e.source.id} -> {e.target.id}{suffix};")
    for service, saga, steps in graph.sagas:
        sid = saga_id(service, saga)
        lines.append(f"    subgraph cluster_{sid} {{")
        lines.append(f"        label={_dot_text(f'saga {saga} ({service})')};")
        for i, label in enumerate(steps, 1):
            lines.append(f"        {sid}_{i} [label={_dot_text(label)}, shape=note];")
        for i in range(1, len(steps)):
            lines.append(f"        {sid}_{i} -> {sid}_{i + 1};")
        lines.append("    }")
    lines.append("}")
    return "\n".join(lines) + "\n"


def render_graph(services: Iterable[Service], fmt: GraphFormat = "mermaid") -> str:
    """Return the picture of ``services`` in format ``fmt`` (``mermaid`` or ``dot``)."""
    graph = system_graph(services)
    return render_dot(graph) if fmt == "dot" else render_mermaid(graph)
