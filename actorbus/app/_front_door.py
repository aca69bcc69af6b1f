"""The HTTP front door: one ASGI app for every service of a process (routes, probes, metrics).

Needs the ``http`` extra (``pip install 'actorbus[http]'``): Starlette for routing; it is
served by :class:`~actorbus.observe.HttpServer`. The core library does not import this
module; the App imports it when it serves a front door or is asked for :meth:`App.asgi`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from .._log import get_logger
from ..observe import TRACEPARENT, TRACESTATE, Tracer
from ._context import ServiceContext
from ._service import Endpoint, Service

try:
    from starlette.applications import Starlette
    from starlette.exceptions import HTTPException
    from starlette.middleware import Middleware
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route
except ImportError as exc:  # pragma: no cover - depends on the installation
    raise ImportError(
        "the HTTP front door needs Starlette and uvicorn: pip install 'actorbus[http]'"
    ) from exc

if TYPE_CHECKING:
    from ..brokers import Broker
    from ..observe import AppMetrics

__all__ = ("FrontDoorHost", "TraceMiddleware", "build_asgi", "error_response")

_log = get_logger("actorbus.http")


def error_response(status: int, error: str, detail: Any = None) -> JSONResponse:
    """Return the JSON error body every 4xx/5xx uses: ``{"error": ..., "detail": ...}``."""
    return JSONResponse({"error": error, "detail": detail}, status_code=status)


class FrontDoorHost(Protocol):
    """What the front door reads of the :class:`~actorbus.App` it serves."""

    @property
    def services(self) -> Sequence[Service]:
        """The services whose routes are mounted."""
        ...

    @property
    def contexts(self) -> Mapping[str, ServiceContext]:
        """Per service name, the context its endpoints are called with."""
        ...

    @property
    def broker(self) -> Broker:
        """The broker (its redacted URL is shown by ``/readyz``)."""
        ...

    @property
    def is_ready(self) -> bool:
        """What ``/readyz`` answers."""
        ...

    @property
    def metrics(self) -> AppMetrics | None:
        """What ``/metrics`` serves (``None``: metrics are off)."""
        ...

    @property
    def tracer(self) -> Tracer | None:
        """Continues or starts each request's trace (``None``: no tracing)."""
        ...


def build_asgi(app: FrontDoorHost) -> Starlette:
    """Build the ASGI app: every service's routes plus ``/healthz``, ``/readyz``, ``/metrics``."""

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(request: Request) -> Response:
        ready = app.is_ready
        return JSONResponse(
            {"status": "ready" if ready else "not ready", "broker": app.broker.url},
            status_code=200 if ready else 503,
        )

    async def metrics(request: Request) -> Response:
        if app.metrics is None:
            return error_response(
                404,
                "metrics are not available",
                "pip install 'actorbus[metrics]', and do not pass metrics=False to the App",
            )
        from ..observe import render  # prometheus-client: present whenever metrics are on

        body, content_type = render(app.metrics.registry, request.headers.get("accept"))
        return Response(body, headers={"Content-Type": content_type})

    routes = [
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
    ]
    tracer = app.tracer
    for service in app.services:
        ctx = app.contexts[service.name]
        for path, endpoint, methods in service.routes:
            routes.append(Route(path, _bind(endpoint, ctx, path, tracer), methods=list(methods)))

    async def http_error(request: Request, exc: Exception) -> Response:
        if isinstance(exc, HTTPException):
            return error_response(exc.status_code, exc.detail or "error", None)
        return error_response(500, "internal error", type(exc).__name__)  # pragma: no cover

    async def server_error(request: Request, exc: Exception) -> Response:
        _log.error("http_handler_failed", path=request.url.path, error=repr(exc))
        return error_response(500, "internal error", type(exc).__name__)

    return Starlette(
        routes=routes,
        exception_handlers={HTTPException: http_error, Exception: server_error},
        middleware=[] if tracer is None else [Middleware(TraceMiddleware, tracer=tracer)],
    )


# Probes and scrapes come every few seconds and belong to no business flow.
_UNTRACED = frozenset({"/healthz", "/readyz", "/metrics"})
_TRACE_HEADERS = {TRACEPARENT.encode(): TRACEPARENT, TRACESTATE.encode(): TRACESTATE}


class TraceMiddleware:
    """Run each HTTP request in its trace: the one its ``traceparent`` names, or a new one.

    What the endpoint publishes (directly, or through an outbox that keeps
    :func:`~actorbus.app.trace_headers`) continues that trace.

    Args:
        app: The ASGI app to wrap.
        tracer: The App's tracer.
    """

    def __init__(self, app: Any, tracer: Tracer) -> None:
        self.app = app
        self._tracer = tracer

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"] in _UNTRACED:
            await self.app(scope, receive, send)
            return
        headers: dict[str, str] = {}
        for name, value in scope["headers"]:
            key = _TRACE_HEADERS.get(name)
            if key is not None:
                headers[key] = value.decode("latin-1")
        span = self._tracer.start_server(headers, scope["method"], scope["path"])

        async def send_with_status(message: Any) -> None:
            if message["type"] == "http.response.start":
                span.set_status_code(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_with_status)
        except BaseException as exc:
            span.end(exc)
            raise
        span.end()


def _bind(
    endpoint: Endpoint, ctx: ServiceContext, path: str, tracer: Tracer | None
) -> Callable[[Request], Awaitable[Response]]:
    name_span = tracer.name_current_span if tracer is not None and tracer.records else None

    async def bound(request: Request) -> Response:
        if name_span is not None:  # the route template: a low-cardinality span name
            name_span(f"{request.method} {path}")
        response = await endpoint(request, ctx)
        if not isinstance(response, Response):
            name = getattr(endpoint, "__qualname__", endpoint)
            raise TypeError(f"endpoint {name} returned {response!r}, not a Starlette Response")
        return response

    bound.__name__ = getattr(endpoint, "__name__", "endpoint")
    return bound
