"""The HTTP front door: one ASGI app for every service of a process, served by uvicorn.

Needs the ``http`` extra (``pip install 'actorbus[http]'``): Starlette for routing and
uvicorn as the server. The core library does not import this module.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Awaitable, Callable, Iterator
from typing import TYPE_CHECKING, Any

import anyio
from anyio.abc import TaskStatus

from .._log import get_logger
from ..exceptions import ConfigurationError
from ._app import parse_address
from ._service import Endpoint
from ._tracing import TRACEPARENT, TRACESTATE, Tracer

try:
    import uvicorn
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
    from ._app import App, ServiceContext

__all__ = (
    "Endpoint",
    "HttpServer",
    "TraceMiddleware",
    "build_asgi",
    "error_response",
    "parse_address",
)

_log = get_logger("actorbus.http")


def error_response(status: int, error: str, detail: Any = None) -> JSONResponse:
    """Return the JSON error body every 4xx/5xx uses: ``{"error": ..., "detail": ...}``."""
    return JSONResponse({"error": error, "detail": detail}, status_code=status)


def build_asgi(app: App) -> Starlette:
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
        from ._metrics import render

        body, content_type = render(app.metrics.registry, request.headers.get("accept"))
        return Response(body, headers={"Content-Type": content_type})

    routes = [
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
    ]
    tracer = app._tracer
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


class _Server(uvicorn.Server):
    """A uvicorn server that leaves signal handling to the host process."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def _listen(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ConfigurationError(
            f"cannot listen for HTTP on {host}:{port}: {exc.strerror or exc}; "
            "choose another address with --http HOST:PORT"
        ) from exc
    sock.listen(1024)
    sock.setblocking(False)
    return sock


class HttpServer:
    """The front door of one process: uvicorn serving :func:`build_asgi`, stopped gracefully.

    Args:
        asgi: The ASGI application.
        host: Address to bind; ``127.0.0.1`` unless you mean to expose it.
        port: Port to bind; 0 picks a free one (see :attr:`address`).
    """

    def __init__(self, asgi: Any, host: str, port: int) -> None:
        self._asgi = asgi
        self._host = host
        self._port = port
        self._server: _Server | None = None
        self._done = anyio.Event()
        self.address: tuple[str, int] | None = None

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Serve until :meth:`stop` (or cancellation); signal readiness once bound.

        Binding happens before ``task_status.started()``, so a port in use fails the start
        with a clear :class:`~actorbus.exceptions.ConfigurationError` instead of exiting.
        """
        sock = _listen(self._host, self._port)
        host, port = sock.getsockname()[:2]
        self.address = (str(host), int(port))
        config = uvicorn.Config(
            self._asgi, lifespan="off", log_config=None, access_log=False, server_header=False
        )
        self._server = _Server(config)
        task_status.started()
        try:
            await self._server.serve(sockets=[sock])
        finally:
            sock.close()
            self._done.set()

    async def stop(self, timeout: float = 5.0) -> None:
        """Stop accepting, let open requests finish (up to ``timeout``), then return."""
        if self._server is None:
            return
        self._server.should_exit = True
        with anyio.move_on_after(timeout, shield=True):
            await self._done.wait()
