"""The HTTP front door: one ASGI app for every service of a process (routes, probes, metrics).

Needs the ``http`` extra (``pip install 'actorbus[http]'``): Starlette for routing; it is
served by :class:`~actorbus.observe.HttpServer`. The core library does not import this
module; the App imports it when it serves a front door or is asked for :meth:`App.asgi`.
"""

from __future__ import annotations

import re
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from http import HTTPStatus
from typing import TYPE_CHECKING, Any, Protocol

from .._log import get_logger
from ..brokers import redact
from ..exceptions import (
    BrokerConnectionError,
    PublishNackedError,
    RequestTimeoutError,
    StoreConflictError,
    StoreUnavailableError,
)
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
    from ..observe import AppMetrics, HttpMetrics

__all__ = (
    "RETRY_AFTER",
    "UNMATCHED_ROUTE",
    "AccessLogMiddleware",
    "FrontDoorHost",
    "TraceMiddleware",
    "build_asgi",
    "error_code",
    "error_response",
    "failure_response",
)

_log = get_logger("actorbus.http")

#: Seconds a client is asked to wait (``Retry-After``) when the store or the broker is down.
RETRY_AFTER = 5

#: The ``route`` label (and log field) of a request that matched no route: the raw path comes
#: from the client and would let it create any number of metric series.
UNMATCHED_ROUTE = "<unmatched>"


def error_response(
    status: int, error: str, detail: Any = None, headers: Mapping[str, str] | None = None
) -> JSONResponse:
    """Return the JSON error body every 4xx/5xx uses: ``{"error": ..., "detail": ...}``.

    Args:
        status: The HTTP status.
        error: A snake_case code (``not_found``, ``store_unavailable``).
        detail: What was wrong, as text or a JSON-able value.
        headers: Extra response headers (``Allow``, ``Retry-After``).
    """
    return JSONResponse({"error": error, "detail": detail}, status_code=status, headers=headers)


def error_code(status: int) -> str:
    """Return the snake_case error code of an HTTP status: ``404`` → ``"not_found"``."""
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        return f"http_{status}"
    return re.sub(r"[^a-z0-9]+", "_", phrase.lower()).strip("_")


def failure_response(exc: Exception) -> JSONResponse | None:
    """Answer an endpoint's failure that is not a bug: a store or broker that is down.

    Returns ``503 {"error": "store_unavailable" | "store_busy" | "broker_unavailable" |
    "publish_refused", "detail": <the error's message, credentials redacted>}``, or ``504
    request_timeout`` (a request to another service got no reply in time), with
    ``Retry-After``; ``None`` when ``exc`` is something else (a 500).
    """
    status, retry_after = 503, RETRY_AFTER
    if isinstance(exc, StoreUnavailableError):
        error = "store_unavailable"
    elif isinstance(exc, StoreConflictError):
        error, retry_after = "store_busy", 1  # a serialization failure: try again at once
    elif isinstance(exc, BrokerConnectionError):
        error = "broker_unavailable"
    elif isinstance(exc, PublishNackedError):
        error = "publish_refused"
    elif isinstance(exc, RequestTimeoutError):
        error, status = "request_timeout", 504  # the service behind us did not answer
    else:
        return None
    return error_response(status, error, redact(str(exc)), {"Retry-After": str(retry_after)})


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
    """Build the ASGI app: every service's routes plus ``/healthz``, ``/readyz``, ``/metrics``.

    Every error is ``{"error": <snake_case code>, "detail": ...}``: ``404 not_found`` (no
    route), ``405 method_not_allowed`` (with ``Allow`` and ``{"allowed": [...]}``), ``503
    store_unavailable`` / ``broker_unavailable`` (with ``Retry-After``), ``500
    internal_error`` (an endpoint's bug, logged once with its traceback). Each request is
    logged once (``http_request``) and, with metrics on, counted and timed.
    """

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
                "metrics_disabled",
                "metrics are not available: pip install 'actorbus[metrics]', and do not pass "
                "metrics=False to the App",
            )
        from ..observe import render  # prometheus-client: present whenever metrics are on

        body, content_type = render(app.metrics.registry, request.headers.get("accept"))
        return Response(body, headers={"Content-Type": content_type})

    tracer = app.tracer
    routes = [
        Route(path, _guard(probe, path, None), methods=["GET"])
        for path, probe in (("/healthz", healthz), ("/readyz", readyz), ("/metrics", metrics))
    ]
    for service in app.services:
        ctx = app.contexts[service.name]
        for path, endpoint, methods in service.routes:
            routes.append(
                Route(path, _guard(_bind(endpoint, ctx), path, tracer), methods=list(methods))
            )

    async def http_error(request: Request, exc: Exception) -> Response:
        if not isinstance(exc, HTTPException):  # pragma: no cover - registered for it only
            raise exc
        return _http_exception_response(request, exc)

    async def server_error(request: Request, exc: Exception) -> Response:
        # Only what escapes the endpoints' guard (a middleware's bug) gets here. Starlette
        # raises it again after this answer and the ASGI server logs it with its traceback:
        # logging it here too would log it twice.
        return error_response(500, "internal_error", type(exc).__name__)

    middleware = [
        Middleware(AccessLogMiddleware, metrics=None if app.metrics is None else app.metrics.http)
    ]
    if tracer is not None:
        middleware.append(Middleware(TraceMiddleware, tracer=tracer))
    return Starlette(
        routes=routes,
        exception_handlers={HTTPException: http_error, Exception: server_error},
        middleware=middleware,
    )


def _http_exception_response(request: Request, exc: HTTPException) -> Response:
    status = exc.status_code
    headers = exc.headers
    detail: Any = exc.detail
    if detail == _phrase(status):  # Starlette's default detail: the status line's text
        detail = None
    if status == 404 and "route" not in request.scope:  # the router found no route
        detail = f"no route for {request.method} {_shown(request.scope['path'])}"
    elif status == 405:  # Starlette lists the route's methods from a set: any order
        allowed = sorted({m.strip() for m in (headers or {}).get("Allow", "").split(",")} - {""})
        headers = {**(headers or {}), "Allow": ", ".join(allowed)}
        detail = {"allowed": allowed}
    return error_response(status, error_code(status), detail, headers)


def _phrase(status: int) -> str | None:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return None


def _shown(path: str, limit: int = 200) -> str:
    """``path`` as put in an answer or a log line: bounded, the client chooses its length."""
    return path if len(path) <= limit else f"{path[:limit]}…"


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


def _bind(endpoint: Endpoint, ctx: ServiceContext) -> Callable[[Request], Awaitable[Response]]:
    async def bound(request: Request) -> Response:
        response = await endpoint(request, ctx)
        if not isinstance(response, Response):
            name = getattr(endpoint, "__qualname__", endpoint)
            raise TypeError(f"endpoint {name} returned {response!r}, not a Starlette Response")
        return response

    bound.__name__ = getattr(endpoint, "__name__", "endpoint")
    return bound


# Scope keys the guard leaves for the access log: the route template (Starlette before 0.46
# does not put the matched route in the scope) and why the answer is a 5xx.
_ROUTE = "actorbus.route"
_ERROR = "actorbus.error"


def _guard(
    handle: Callable[[Request], Awaitable[Response]], path: str, tracer: Tracer | None
) -> Callable[[Request], Awaitable[Response]]:
    """Turn what ``handle`` raises (but ``HTTPException``) into its JSON answer.

    A store or broker that is down is a 503 (:func:`failure_response`); anything else is the
    endpoint's bug: ``500 internal_error`` naming the exception's type, logged here once with
    its traceback. Answering here, not in Starlette's server-error handler, keeps the
    connection open (that handler raises the exception again, and the server then closes it).
    """
    records = tracer is not None and tracer.records
    name_span = tracer.name_current_span if tracer is not None and records else None
    record_error = tracer.record_error if tracer is not None and records else None

    async def guarded(request: Request) -> Response:
        request.scope[_ROUTE] = path
        if name_span is not None:  # the route template: a low-cardinality span name
            name_span(f"{request.method} {path}")
        try:
            return await handle(request)
        except HTTPException:
            raise
        except Exception as exc:
            if record_error is not None:
                record_error(exc)
            error = redact(f"{type(exc).__name__}: {exc}")
            request.scope[_ERROR] = error
            response = failure_response(exc)
            if response is not None:
                return response
            _log.error(
                "http_handler_failed",
                method=request.method,
                route=path,
                path=_shown(request.scope["path"]),
                error=error,
                exc_info=exc,
            )
            return error_response(500, "internal_error", type(exc).__name__)

    guarded.__name__ = getattr(handle, "__name__", "endpoint")
    return guarded


_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class AccessLogMiddleware:
    """Log each HTTP request once (``http_request``) and count it in the App's metrics.

    The line carries ``method``, ``route`` (the template, ``/orders/{order_id}``, or
    ``<unmatched>``), ``path`` (the raw one, bounded), ``status``, ``duration_ms`` and
    ``client``, plus ``error`` for a 5xx an endpoint raised. Levels: 5xx ``error``, the rest
    ``info``; probes and scrapes (``/healthz``, ``/readyz``, ``/metrics``) ``debug``, but for
    a 500. With metrics on, ``actorbus_http_requests_total{method,route,status}`` and
    ``actorbus_http_request_duration_seconds{method,route}``; a method outside the standard
    ones is counted as ``OTHER``.

    The logger is bound once, when the middleware is built (Starlette builds it on the first
    request): a line per request through structlog's lazy proxy would cost ~5 µs more, even
    when its level is filtered out. Configure logging before serving requests (the CLI does).

    Args:
        app: The ASGI app to wrap (the Starlette app, inside its server-error handler).
        metrics: Where to count (``None``: metrics are off).
    """

    def __init__(self, app: Any, metrics: HttpMetrics | None = None) -> None:
        self.app = app
        self._metrics = metrics
        log = _log.bind()
        self._info = log.info
        self._debug = log.debug
        self._error = log.error

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 0

        async def send_with_status(message: Any) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_with_status)
        except Exception as exc:
            # Starlette's server-error handler answers 500 above this middleware.
            scope.setdefault(_ERROR, redact(f"{type(exc).__name__}: {exc}"))
            self._done(scope, status or 500, time.perf_counter() - start)
            raise
        # No answer at all: the server answers 500 for the app.
        self._done(scope, status or 500, time.perf_counter() - start)

    def _done(self, scope: Any, status: int, seconds: float) -> None:
        matched = scope.get("route")
        route: str = getattr(matched, "path", None) or scope.get(_ROUTE) or UNMATCHED_ROUTE
        method: str = scope["method"]
        if self._metrics is not None:
            self._metrics.observe(method if method in _METHODS else "OTHER", route, status, seconds)
        if status >= 500 and (status == 500 or route not in _UNTRACED):
            log = self._error
        elif route in _UNTRACED:
            log = self._debug
        else:
            log = self._info
        client = scope.get("client")
        fields: dict[str, Any] = {
            "method": method,
            "route": route,
            "path": _shown(scope["path"]),
            "status": status,
            "duration_ms": round(seconds * 1000, 3),
            "client": f"{client[0]}:{client[1]}" if client else None,
        }
        error = scope.get(_ERROR)
        if error is not None:
            fields["error"] = error
        log("http_request", **fields)
