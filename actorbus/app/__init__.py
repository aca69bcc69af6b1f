"""Service / App: handlers, topology, lifecycle, embedding, HTTP mounting."""

from __future__ import annotations

from ..runtime import Backoff as Backoff
from ._app import App as App
from ._app import ServiceContext as ServiceContext
from ._context import HandlerContext as HandlerContext
from ._inbox import Inbox as Inbox
from ._inbox import MemoryInbox as MemoryInbox
from ._service import Endpoint as Endpoint
from ._service import RetryPolicy as RetryPolicy
from ._service import Service as Service
from ._tracing import TraceContext as TraceContext
from ._tracing import continue_trace as continue_trace
from ._tracing import current_trace as current_trace
from ._tracing import parse_traceparent as parse_traceparent
from ._tracing import trace_headers as trace_headers

__all__ = (
    "App",
    "Backoff",
    "Endpoint",
    "HandlerContext",
    "Inbox",
    "MemoryInbox",
    "RetryPolicy",
    "Service",
    "ServiceContext",
    "TraceContext",
    "continue_trace",
    "current_trace",
    "parse_traceparent",
    "trace_headers",
)
