"""The one HTTP server of a process: uvicorn serving an ASGI app, stopped gracefully.

The front door (the services' routes, probes, ``/metrics``) and the standalone metrics port
(:func:`metrics_asgi`, for processes without the front door) are both served by
:class:`HttpServer`. Needs uvicorn (the ``http`` or ``metrics`` extra); this module is
imported only when a server is started, never by the core library.
"""

from __future__ import annotations

import contextlib
import json
import socket
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import anyio
from anyio.abc import TaskStatus

from .._log import get_logger
from ..exceptions import ConfigurationError

try:
    import uvicorn
except ImportError as exc:  # pragma: no cover - depends on the installation
    raise ImportError(
        "serving HTTP needs uvicorn: pip install 'actorbus[http]' (or 'actorbus[metrics]')"
    ) from exc

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

__all__ = ("HttpServer", "metrics_asgi")

_log = get_logger("actorbus.http")


class _Server(uvicorn.Server):
    """A uvicorn server that leaves signal handling to the host process."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def _listen(host: str, port: int, what: str, option: str) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ConfigurationError(
            f"cannot listen for {what} on {host}:{port}: {exc.strerror or exc}; "
            f"choose another address with {option} HOST:PORT"
        ) from exc
    sock.listen(1024)
    sock.setblocking(False)
    return sock


class HttpServer:
    """uvicorn serving one ASGI app on one address, in the caller's event loop.

    Args:
        asgi: The ASGI application.
        host: Address to bind; ``127.0.0.1`` unless you mean to expose it.
        port: Port to bind; 0 picks a free one (see :attr:`address`).
        what: What it serves, for the error when the address is taken (``HTTP``,
            ``metrics``).
        option: The command-line option that chooses the address, for the same error.

    Attributes:
        address: ``(host, port)`` it listens on, once :meth:`run` has bound it.
    """

    def __init__(
        self, asgi: Any, host: str, port: int, *, what: str = "HTTP", option: str = "--http"
    ) -> None:
        self._asgi = asgi
        self._host = host
        self._port = port
        self._what = what
        self._option = option
        self._server: _Server | None = None
        self._done = anyio.Event()
        self.address: tuple[str, int] | None = None

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Serve until :meth:`stop` (or cancellation); signal readiness once bound.

        Binding happens before ``task_status.started()``, so a port in use fails the start
        with a clear :class:`~actorbus.exceptions.ConfigurationError` instead of exiting.
        """
        sock = _listen(self._host, self._port, self._what, self._option)
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


def metrics_asgi(registry: CollectorRegistry) -> Any:
    """Return an ASGI app serving ``GET``/``HEAD /metrics`` (and ``/``) from ``registry``.

    prometheus-client's own ASGI app does the exposition (format chosen by ``Accept``);
    this adds what a port of its own should answer, with the front door's JSON error body
    ``{"error", "detail"}``: ``404 not_found`` for other paths, ``405 method_not_allowed``
    (``Allow: GET, HEAD``) for other methods, ``500 internal_error`` (logged) when a
    collector fails, without taking the process down.
    """
    from prometheus_client import make_asgi_app  # the ``metrics`` extra, present with metrics

    exposition = make_asgi_app(registry)

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        path = scope["path"]
        if path not in ("/metrics", "/"):
            shown = path if len(path) <= 200 else f"{path[:200]}…"
            detail = f"no route for {scope['method']} {shown}; try GET /metrics"
            await _error(send, 404, "not_found", detail)
        elif scope["method"] not in _ALLOWED:
            await _error(
                send,
                405,
                "method_not_allowed",
                {"allowed": list(_ALLOWED)},
                [(b"allow", ", ".join(_ALLOWED).encode())],
            )
        else:
            try:
                await exposition(scope, receive, send)
            except Exception as exc:  # a failing collector must not take the App down
                _log.warning("metrics_scrape_failed", error=f"{type(exc).__name__}: {exc}")
                await _error(send, 500, "internal_error", type(exc).__name__)

    return app


_ALLOWED = ("GET", "HEAD")


async def _error(
    send: Any,
    status: int,
    error: str,
    detail: Any,
    headers: list[tuple[bytes, bytes]] | None = None,
) -> None:
    body = json.dumps({"error": error, "detail": detail}).encode()
    start = [
        (b"content-type", b"application/json"),
        (b"content-length", b"%d" % len(body)),
        *(headers or ()),
    ]
    await send({"type": "http.response.start", "status": status, "headers": start})
    await send({"type": "http.response.body", "body": body})
