"""Observability: W3C trace context and OpenTelemetry spans, Prometheus metrics, the HTTP server.

Below :mod:`actorbus.app`: the pipeline records metrics and carries trace context on the hot
path, so it imports these; nothing here knows an App (the metrics collector and the front
door are given narrow views of one).

Tracing needs nothing installed. :class:`AppMetrics` and its counters need the ``metrics``
extra (prometheus-client), :class:`HttpServer` and :func:`metrics_asgi` uvicorn (the ``http``
or ``metrics`` extra): those are imported lazily, on first use of their names, so that the
core library works without the optional dependencies.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ._address import metrics_address as metrics_address
from ._address import parse_address as parse_address
from ._console import Console as Console
from ._console import ConsoleHost as ConsoleHost
from ._console import SystemModel as SystemModel
from ._logbuffer import LogBuffer as LogBuffer
from ._tracing import CURRENT_TRACE as CURRENT_TRACE
from ._tracing import LOG_TRACE_ID as LOG_TRACE_ID
from ._tracing import TRACEPARENT as TRACEPARENT
from ._tracing import TRACESTATE as TRACESTATE
from ._tracing import OtelTracer as OtelTracer
from ._tracing import Span as Span
from ._tracing import TraceContext as TraceContext
from ._tracing import Tracer as Tracer
from ._tracing import build_tracer as build_tracer
from ._tracing import consumer_context as consumer_context
from ._tracing import continue_trace as continue_trace
from ._tracing import current_trace as current_trace
from ._tracing import extract as extract
from ._tracing import parse_traceparent as parse_traceparent
from ._tracing import trace_headers as trace_headers

if TYPE_CHECKING:
    from ._http import HttpServer as HttpServer
    from ._http import metrics_asgi as metrics_asgi
    from ._metrics import LATENCY_BUCKETS as LATENCY_BUCKETS
    from ._metrics import AppMetrics as AppMetrics
    from ._metrics import CollectorRegistry as CollectorRegistry
    from ._metrics import Histogram as Histogram
    from ._metrics import HttpMetrics as HttpMetrics
    from ._metrics import MeasuredPublisher as MeasuredPublisher
    from ._metrics import PublishMetrics as PublishMetrics
    from ._metrics import QueueMetrics as QueueMetrics
    from ._metrics import TypeMetrics as TypeMetrics
    from ._metrics import render as render

# Names whose modules import an optional dependency (prometheus-client, uvicorn): loaded on
# first access, so that importing actorbus never requires them.
_LAZY = {
    "HttpServer": "._http",
    "metrics_asgi": "._http",
    "LATENCY_BUCKETS": "._metrics",
    "AppMetrics": "._metrics",
    "CollectorRegistry": "._metrics",
    "Histogram": "._metrics",
    "HttpMetrics": "._metrics",
    "MeasuredPublisher": "._metrics",
    "PublishMetrics": "._metrics",
    "QueueMetrics": "._metrics",
    "TypeMetrics": "._metrics",
    "render": "._metrics",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module, __name__), name)


__all__ = (
    "CURRENT_TRACE",
    "LATENCY_BUCKETS",
    "LOG_TRACE_ID",
    "TRACEPARENT",
    "TRACESTATE",
    "AppMetrics",
    "CollectorRegistry",
    "Console",
    "ConsoleHost",
    "Histogram",
    "HttpMetrics",
    "HttpServer",
    "LogBuffer",
    "MeasuredPublisher",
    "OtelTracer",
    "PublishMetrics",
    "QueueMetrics",
    "Span",
    "SystemModel",
    "TraceContext",
    "Tracer",
    "TypeMetrics",
    "build_tracer",
    "consumer_context",
    "continue_trace",
    "current_trace",
    "extract",
    "metrics_address",
    "metrics_asgi",
    "parse_address",
    "parse_traceparent",
    "render",
    "trace_headers",
)
