"""The static description of a system of services, and its renderings.

Built from :class:`~actorbus.Service` declarations alone (nothing is started): which
services consume and publish which messages on which exchanges and queues
(:func:`describe_system`), drawn as a graph (:func:`render_graph`: Mermaid or DOT),
written as an AsyncAPI 3.0 document (:func:`build_asyncapi`), and the messages' JSON
Schemas with the breaking-change check behind ``schema --check`` (:func:`build_snapshot`,
:func:`compare_snapshots`). The CLI's ``graph``, ``asyncapi`` and ``schema`` commands call
these; so can a user's own tooling.
"""

from __future__ import annotations

from ._asyncapi import AMQP_BINDING_VERSION as AMQP_BINDING_VERSION
from ._asyncapi import ASYNCAPI_VERSION as ASYNCAPI_VERSION
from ._asyncapi import NATS_BINDING_VERSION as NATS_BINDING_VERSION
from ._asyncapi import build_asyncapi as build_asyncapi
from ._console import ConsoleModel as ConsoleModel
from ._graph import GraphFormat as GraphFormat
from ._graph import graph_data as graph_data
from ._graph import render_dot as render_dot
from ._graph import render_graph as render_graph
from ._graph import render_mermaid as render_mermaid
from ._graph import system_graph as system_graph
from ._model import MessageInfo as MessageInfo
from ._model import MessageKind as MessageKind
from ._model import Publication as Publication
from ._model import SystemDescription as SystemDescription
from ._model import describe_system as describe_system
from ._schema import SNAPSHOT_FORMAT as SNAPSHOT_FORMAT
from ._schema import SchemaChange as SchemaChange
from ._schema import SnapshotError as SnapshotError
from ._schema import build_snapshot as build_snapshot
from ._schema import compare_schemas as compare_schemas
from ._schema import compare_snapshots as compare_snapshots
from ._schema import dump_snapshot as dump_snapshot
from ._schema import load_snapshot as load_snapshot
from ._schema import message_schema as message_schema
from ._schema import message_types as message_types

__all__ = (
    "AMQP_BINDING_VERSION",
    "ASYNCAPI_VERSION",
    "NATS_BINDING_VERSION",
    "SNAPSHOT_FORMAT",
    "ConsoleModel",
    "GraphFormat",
    "MessageInfo",
    "MessageKind",
    "Publication",
    "SchemaChange",
    "SnapshotError",
    "SystemDescription",
    "build_asyncapi",
    "build_snapshot",
    "compare_schemas",
    "compare_snapshots",
    "describe_system",
    "dump_snapshot",
    "graph_data",
    "load_snapshot",
    "message_schema",
    "message_types",
    "render_dot",
    "render_graph",
    "render_mermaid",
    "system_graph",
)
