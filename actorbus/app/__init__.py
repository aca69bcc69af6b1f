"""Service / App: handlers, topology, lifecycle, embedding, HTTP mounting."""

from __future__ import annotations

from .._backoff import Backoff as Backoff
from ..observe import TraceContext as TraceContext
from ..observe import continue_trace as continue_trace
from ..observe import current_trace as current_trace
from ..observe import parse_traceparent as parse_traceparent
from ..observe import trace_headers as trace_headers
from ._app import App as App
from ._context import HandlerContext as HandlerContext
from ._context import ServiceContext as ServiceContext
from ._context import ServiceTransaction as ServiceTransaction
from ._inbox import Inbox as Inbox
from ._inbox import MemoryInbox as MemoryInbox
from ._request import RequestStats as RequestStats
from ._saga import Saga as Saga
from ._saga import SagaEvent as SagaEvent
from ._saga import SagaInstance as SagaInstance
from ._saga import SagaStep as SagaStep
from ._service import Endpoint as Endpoint
from ._service import RetryPolicy as RetryPolicy
from ._service import Service as Service

__all__ = (
    "App",
    "Backoff",
    "Endpoint",
    "HandlerContext",
    "Inbox",
    "MemoryInbox",
    "RequestStats",
    "RetryPolicy",
    "Saga",
    "SagaEvent",
    "SagaInstance",
    "SagaStep",
    "Service",
    "ServiceContext",
    "ServiceTransaction",
    "TraceContext",
    "continue_trace",
    "current_trace",
    "parse_traceparent",
    "trace_headers",
)
