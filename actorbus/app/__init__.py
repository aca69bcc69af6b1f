"""Service / App: handlers, topology, lifecycle, embedding, HTTP mounting."""

from __future__ import annotations

from ._app import App as App
from ._app import ServiceContext as ServiceContext
from ._context import HandlerContext as HandlerContext
from ._inbox import Inbox as Inbox
from ._inbox import MemoryInbox as MemoryInbox
from ._service import Endpoint as Endpoint
from ._service import RetryPolicy as RetryPolicy
from ._service import Service as Service

__all__ = (
    "App",
    "Endpoint",
    "HandlerContext",
    "Inbox",
    "MemoryInbox",
    "RetryPolicy",
    "Service",
    "ServiceContext",
)
