"""The operator console: ``GET /ui``, a live page over a small JSON API, as one ASGI app.

A plain ASGI app (no Starlette), so that the front door and the standalone metrics port can
both serve it: requests whose path starts with ``/ui`` go to :class:`Console`, the rest to
the app it wraps (:meth:`Console.wrap`). It knows no App: it reads a :class:`ConsoleHost`
(queues, supervisors, subscriptions, metrics, readiness) and a :class:`SystemModel` (the
static description: graph, AsyncAPI document, schema snapshot check), both narrow views.

Live data goes to the page as server-sent events, one ``state`` event a second per open
page. Nothing is computed between requests: the rates are the difference of the counters
between two samples, taken when a page asks, so a process nobody watches pays nothing.

State-changing actions (replaying and purging dead letters) need the admin token
(``Authorization: Bearer <token>``, compared in constant time), are off without one, and are
refused unless the request's ``Host`` (and ``Origin``, when sent) is the address the server
listens on, or a name the operator allowed (``allowed_hosts``: the public name of a reverse
proxy in front of it): a page from another origin, or a DNS name rebound to this host, cannot
use them.
"""

from __future__ import annotations

import hmac
import importlib.resources
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import parse_qs, unquote

import anyio
import msgspec

from .._log import get_logger
from ..brokers import (
    dead_letter_count,
    dead_letter_queue,
    peek_dead_letters,
    purge_dead_letters,
    redact,
    replay_dead_letters,
)
from ..exceptions import ConfigurationError, QueueNotFoundError
from ._logbuffer import LogBuffer

if TYPE_CHECKING:
    from ..brokers import Broker, Subscription
    from ..runtime import ChildStatus, SupervisorRef
    from ._metrics import AppMetrics

__all__ = ("Console", "ConsoleHost", "SystemModel")

_log = get_logger("actorbus.console")

ASGIApp = Callable[[Any, Any, Any], Awaitable[None]]

_ASSETS = {
    "console.js": "text/javascript; charset=utf-8",
    "console.css": "text/css; charset=utf-8",
}
_SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
    (
        b"content-security-policy",
        b"default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
        b"connect-src 'self'; frame-ancestors 'none'",
    ),
]
_TOKEN_HINT = "start the process with --admin-token TOKEN (or ACTORBUS_ADMIN_TOKEN)"
_PROXY_HINT = (
    "behind a reverse proxy, allow the name it is reached by with --console-allowed-host "
    "NAME (or ACTORBUS_CONSOLE_ALLOWED_HOSTS=NAME,...)"
)
_MAX_BODY = 4096
_PEEK_LIMIT = 200


class SystemModel(Protocol):
    """The static description of the system the console shows (built by ``describe``)."""

    def graph(self) -> Mapping[str, Any]:
        """Return ``{"nodes": [{id, kind, name, label}], "edges": [{source, target, ...}]}``."""
        ...

    def asyncapi(self) -> Mapping[str, Any]:
        """Return the AsyncAPI document."""
        ...

    def schema(self) -> Mapping[str, Any]:
        """Return the schema snapshot check: ``{snapshot, status, detail, changes}``."""
        ...


class ConsoleHost(Protocol):
    """What the console reads of the process it shows (an App gives a view of itself)."""

    @property
    def broker(self) -> Broker:
        """The broker: queue depths and dead letters."""
        ...

    @property
    def is_ready(self) -> bool:
        """Whether the process is ready (``/readyz``)."""
        ...

    @property
    def queues(self) -> Mapping[str, str]:
        """Per service name, the queue it consumes."""
        ...

    @property
    def supervisors(self) -> Mapping[str, SupervisorRef]:
        """Per service name, the supervisor of its consumer actors (while running)."""
        ...

    @property
    def subscriptions(self) -> Sequence[Subscription]:
        """The broker subscriptions of the consumers (while running)."""
        ...

    @property
    def metrics(self) -> AppMetrics | None:
        """The counters (``None``: metrics are off; the console then shows no rates)."""
        ...


class _Sampler:
    """Rates from counters: the difference between this sample and the previous one."""

    def __init__(self) -> None:
        self._last: dict[str, float] = {}
        self._at = 0.0
        self._rates: dict[str, float] = {}

    def rates(self, totals: dict[str, float]) -> dict[str, float]:
        now = time.monotonic()
        elapsed = now - self._at
        if elapsed >= 0.5:  # several pages share one sampler: keep a meaningful interval
            if self._at:
                self._rates = {
                    k: max(0.0, (v - self._last.get(k, v)) / elapsed) for k, v in totals.items()
                }
            self._last, self._at = totals, now
        return self._rates


class _Request:
    __slots__ = ("headers", "method", "path", "query", "scope")

    def __init__(self, scope: Any) -> None:
        self.scope = scope
        self.method: str = scope["method"]
        self.path: str = scope["path"]
        self.query = {
            k: v[-1] for k, v in parse_qs(scope.get("query_string", b"").decode()).items()
        }
        self.headers = {
            k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]
        }


class _HttpError(Exception):
    def __init__(self, status: int, error: str, detail: Any = None) -> None:
        super().__init__(error)
        self.status = status
        self.error = error
        self.detail = detail


class Console:
    """The console's ASGI app: the page, its assets, the JSON API and the event stream.

    Args:
        host: What to show of the running process.
        model: The static description; ``None`` shows the live parts only.
        admin_token: The token that enables replay and purge; ``None`` or ``""``: they are off.
        logs: Where recent log lines are kept (one is made if ``None``).
        interval: Seconds between two ``state`` events of the stream.
        allowed_hosts: More names the console may be reached by besides the address the
            server listens on, for a console behind a reverse proxy: ``"ops.example.com"``
            (any port) or ``"ops.example.com:8443"`` (that port only); one string is a
            comma-separated list. A request's ``Host``, and its ``Origin`` when sent, must be
            the server's address or one of these.

    Raises:
        ConfigurationError: An allowed host is empty or is not a bare ``name[:port]`` (a
            scheme, a path or a wildcard).
    """

    def __init__(
        self,
        host: ConsoleHost,
        model: SystemModel | None = None,
        *,
        admin_token: str | None = None,
        logs: LogBuffer | None = None,
        interval: float = 1.0,
        allowed_hosts: Iterable[str] = (),
    ) -> None:
        self._allowed = _allowed_hosts(allowed_hosts)
        self._host = host
        self._model = model
        self._token = admin_token.encode() if admin_token else None
        self.logs = logs if logs is not None else LogBuffer()
        self._interval = interval
        self._sampler = _Sampler()
        self._closing: anyio.Event | None = None
        self._started = time.time()
        self._files = importlib.resources.files(__package__).joinpath("console")
        self._routes: dict[tuple[str, str], Callable[[_Request, list[str]], Awaitable[Any]]] = {
            ("GET", "state"): self._state_route,
            ("GET", "model"): self._model_route,
            ("GET", "schema"): self._schema_route,
            ("GET", "logs"): self._logs_route,
            ("GET", "dead-letters"): self._dead_letters_route,
            ("POST", "dead-letters"): self._dead_letter_action,
        }

    # ------------------------------------------------------------------ mounting

    def wrap(self, app: ASGIApp) -> ASGIApp:
        """Return an ASGI app that serves ``/ui`` here and everything else with ``app``."""

        async def dispatch(scope: Any, receive: Any, send: Any) -> None:
            path = scope.get("path", "") if scope["type"] == "http" else ""
            if path == "/ui" or path.startswith("/ui/"):
                await self(scope, receive, send)
            else:
                await app(scope, receive, send)

        return dispatch

    def open(self) -> None:
        """Get ready to stream (call in the event loop, when the server starts)."""
        self._closing = anyio.Event()

    def close(self) -> None:
        """End the open event streams (call on shutdown: the server waits for them)."""
        if self._closing is not None:
            self._closing.set()
        self.logs.uninstall()  # idempotent: also leaves the stdlib formatters' chains

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        """Serve one request under ``/ui``."""
        if scope["type"] != "http":
            return
        request = _Request(scope)
        try:
            await self._serve(request, receive, send)
        except _HttpError as exc:
            await _json(send, {"error": exc.error, "detail": exc.detail}, exc.status)
        except QueueNotFoundError as exc:
            await _json(send, {"error": "queue_not_found", "detail": str(exc)}, 404)
        except Exception as exc:  # the console must never take the process down
            _log.warning("console_request_failed", path=request.path, error=repr(exc))
            await _json(send, {"error": "internal_error", "detail": type(exc).__name__}, 500)

    async def _serve(self, request: _Request, receive: Any, send: Any) -> None:
        parts = [unquote(p) for p in request.path.split("/")[2:] if p]
        if not parts:
            self._check_method(request, "GET")
            await _send(send, 200, self._asset("index.html"), "text/html; charset=utf-8")
            return
        head, rest = parts[0], parts[1:]
        if head == "static" and len(rest) == 1 and rest[0] in _ASSETS:
            self._check_method(request, "GET")
            await _send(send, 200, self._asset(rest[0]), _ASSETS[rest[0]])
            return
        if head != "api" or not rest:
            raise _HttpError(404, "not_found", f"no console page at {request.path!r}; try /ui")
        # Every API call must name this server: no DNS rebinding, no foreign page.
        self._check_origin(request)
        name, args = rest[0], rest[1:]
        if name == "events":
            self._check_method(request, "GET")
            await self._events(request, receive, send)
            return
        if name == "asyncapi.json":
            self._check_method(request, "GET")
            await self._asyncapi(request, send)
            return
        route = self._routes.get((request.method, name))
        if route is None:
            if any(key[1] == name for key in self._routes):
                allowed = sorted(m for m, n in self._routes if n == name)
                raise _HttpError(405, "method_not_allowed", {"allowed": allowed})
            raise _HttpError(404, "not_found", f"no console API at {request.path!r}")
        body = await _read_body(receive) if request.method == "POST" else b""
        request.scope["actorbus.body"] = body
        await _json(send, await route(request, args))

    def _asset(self, name: str) -> bytes:
        return self._files.joinpath(name).read_bytes()

    @staticmethod
    def _check_method(request: _Request, method: str) -> None:
        if request.method != method:
            raise _HttpError(405, "method_not_allowed", {"allowed": [method]})

    # ------------------------------------------------------------------ guards

    def _check_origin(self, request: _Request) -> None:
        """Refuse a request whose ``Host`` or ``Origin`` is neither this server's own address
        nor an allowed host."""
        own = _own_hosts(request.scope)
        host = request.headers.get("host", "")
        if not self._names_us(host, own):
            where = sorted(own)[0] if own else "unknown"
            raise _HttpError(
                403,
                "foreign_host",
                f"Host {host!r} is not this server's address ({where}) nor an allowed host; "
                f"open the console at the address the server listens on, or, {_PROXY_HINT}",
            )
        origin = request.headers.get("origin")
        if origin is not None:
            scheme, _, rest = origin.partition("://")
            if scheme not in ("http", "https") or not self._names_us(rest, own):
                raise _HttpError(
                    403,
                    "foreign_origin",
                    f"requests from {origin!r} may not use the console; {_PROXY_HINT}",
                )

    def _names_us(self, host: str, own: set[str]) -> bool:
        """Whether ``host`` (a ``Host`` value, or an ``Origin`` without its scheme) is ours."""
        host = host.lower()
        if host in own:
            return True
        allowed = self._allowed
        if not allowed:
            return False
        if host in allowed:  # an entry with a port, or a name sent without one
            return True
        name, sep, port = host.rpartition(":")
        return bool(sep) and port.isdigit() and name in allowed  # "name:port", entry "name"

    def _check_token(self, request: _Request) -> None:
        if self._token is None:
            raise _HttpError(403, "actions_disabled", f"replay and purge are off: {_TOKEN_HINT}")
        given = request.headers.get("authorization", "")
        scheme, _, token = given.partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise _HttpError(
                401, "token_required", "send the admin token as 'Authorization: Bearer TOKEN'"
            )
        if not hmac.compare_digest(token.strip().encode(), self._token):
            raise _HttpError(403, "wrong_token", "the admin token does not match")

    # ------------------------------------------------------------------ data

    def _queue_name(self, given: str) -> str:
        """Return the work queue ``given`` names (``x.queue`` or ``x.queue.dlq``), if known."""
        queue = given.removesuffix(".dlq")
        if queue not in self._host.queues.values():
            raise _HttpError(
                404,
                "queue_not_found",
                {"queue": given, "known": sorted(self._host.queues.values())},
            )
        return queue

    async def state(self) -> dict[str, Any]:
        """Return the live state the page shows (also sent by the event stream)."""
        host = self._host
        broker = host.broker
        metrics = host.metrics
        consumers: dict[str, list[bool]] = {}
        for sub in host.subscriptions:
            consumers.setdefault(sub.queue, []).append(sub.active)
        depth_by_actor: dict[str, int] = {}
        if metrics is not None:
            for service, refs in list(metrics.consumers.items()):
                total = 0
                for ref in refs:
                    try:
                        total += ref.statistics().depth
                    except Exception:  # an actor torn down while we read
                        continue
                depth_by_actor[service] = total
        totals: dict[str, float] = {}
        queues: list[dict[str, Any]] = []
        for service, queue in host.queues.items():
            entry: dict[str, Any] = {
                "service": service,
                "queue": queue,
                "dlq": dead_letter_queue(queue),
                "depth": None,
                "deadLetters": None,
                "error": None,
            }
            try:
                entry["depth"] = await broker.queue_depth(queue)
                entry["deadLetters"] = await dead_letter_count(broker, queue)
            except Exception as exc:  # a broker down, or the queue gone: show it, go on
                entry["error"] = f"{type(exc).__name__}: {exc}"
            subs = consumers.get(queue, [])
            entry["consumers"] = sum(subs)
            entry["ready"] = bool(subs) and all(subs) and broker.is_ready
            counts = {"consumed": 0, "acked": 0, "retried": 0, "deadLettered": 0}
            by_type: dict[str, int] = {}
            q = None if metrics is None else metrics.queues.get(service)
            if q is not None:
                for t in (*q.by_type.values(), q.unknown):
                    counts["consumed"] += t.consumed
                    counts["acked"] += t.acked
                    counts["retried"] += t.retried
                    counts["deadLettered"] += sum(t.dead_lettered.values())
                    by_type[t.type] = t.consumed
                settled = counts["acked"] + counts["retried"] + counts["deadLettered"]
                entry["inFlight"] = depth_by_actor.get(service, 0) + counts["consumed"] - settled
            else:
                entry["inFlight"] = None
            entry["totals"] = counts
            for key, value in counts.items():
                totals[f"q|{queue}|{key}"] = value
            for type_, value in by_type.items():
                totals[f"t|{queue}|{type_}"] = value
            queues.append(entry)
        if metrics is not None:
            for p in metrics.publishers.values():
                for type_, value in list(p.published.items()):
                    totals[f"p|{p.service}|{type_}"] = value
        rates = self._sampler.rates(totals)
        for entry in queues:
            prefix = f"q|{entry['queue']}|"
            entry["rates"] = {k: round(rates.get(prefix + k, 0.0), 2) for k in entry["totals"]}
            tprefix = f"t|{entry['queue']}|"
            entry["typeRates"] = {
                k[len(tprefix) :]: round(v, 2) for k, v in rates.items() if k.startswith(tprefix)
            }
        published: dict[str, dict[str, float]] = {}
        for key, per_second in rates.items():
            if key.startswith("p|"):
                _, service, type_ = key.split("|", 2)
                published.setdefault(service, {})[type_] = round(per_second, 2)
        now = time.time()
        supervisors = [
            {
                "service": service,
                "supervisor": sup.name,
                "children": [_child(c, now) for c in sup.status()],
            }
            for service, sup in list(host.supervisors.items())
        ]
        return {
            "time": now,
            "uptime": round(now - self._started, 1),
            "ready": host.is_ready,
            "broker": {"url": redact(broker.url), "ready": broker.is_ready},
            "metrics": metrics is not None,
            "queues": queues,
            "publishRates": published,
            "supervisors": supervisors,
            "actions": {
                "enabled": self._token is not None,
                "detail": None
                if self._token is not None
                else f"replay and purge are off: {_TOKEN_HINT}",
            },
        }

    async def _state_route(self, request: _Request, args: list[str]) -> Any:
        if args:
            raise _HttpError(404, "not_found", f"no console API at {request.path!r}")
        return await self.state()

    async def _model_route(self, request: _Request, args: list[str]) -> Any:
        if self._model is None:
            return {"graph": None, "detail": "no system model was given to the console"}
        return {"graph": self._model.graph(), "detail": None}

    async def _schema_route(self, request: _Request, args: list[str]) -> Any:
        if self._model is None:
            return {
                "snapshot": None,
                "status": "unknown",
                "detail": "no system model",
                "changes": [],
            }
        return self._model.schema()

    async def _asyncapi(self, request: _Request, send: Any) -> None:
        if self._model is None:
            raise _HttpError(404, "no_model", "no system model was given to the console")
        body = msgspec.json.encode(self._model.asyncapi())
        extra = []
        if request.query.get("download"):
            extra.append((b"content-disposition", b'attachment; filename="asyncapi.json"'))
        await _send(send, 200, body, "application/json", extra)

    async def _logs_route(self, request: _Request, args: list[str]) -> Any:
        self.logs.install()
        after = _int(request.query.get("after", "0"), "after")
        limit = _int(request.query.get("limit", "200"), "limit")
        correlation = request.query.get("correlationId") or None
        return {
            "capturing": True,
            "size": self.logs.size,
            "lines": self.logs.lines(after=after, correlation_id=correlation, limit=limit),
        }

    async def _dead_letters_route(self, request: _Request, args: list[str]) -> Any:
        broker = self._host.broker
        if not args:
            out = []
            for service, queue in self._host.queues.items():
                try:
                    count: int | None = await dead_letter_count(broker, queue)
                except QueueNotFoundError:
                    count = None
                out.append(
                    {
                        "service": service,
                        "queue": queue,
                        "dlq": dead_letter_queue(queue),
                        "count": count,
                    }
                )
            return {"queues": out}
        queue = self._queue_name(args[0])
        if len(args) == 1:
            limit = min(_int(request.query.get("limit", "50"), "limit"), _PEEK_LIMIT)
            letters = await peek_dead_letters(broker, queue, limit)
            return {
                "queue": queue,
                "dlq": dead_letter_queue(queue),
                "count": await dead_letter_count(broker, queue),
                "deadLetters": letters,
            }
        if len(args) == 2:
            for letter in await peek_dead_letters(broker, queue, _PEEK_LIMIT):
                if letter.message_id == args[1]:
                    return letter
            raise _HttpError(
                404,
                "dead_letter_not_found",
                f"no dead letter with message id {args[1]!r} among the first {_PEEK_LIMIT} of "
                f"{dead_letter_queue(queue)!r}",
            )
        raise _HttpError(404, "not_found", f"no console API at {request.path!r}")

    async def _dead_letter_action(self, request: _Request, args: list[str]) -> Any:
        self._check_token(request)
        if len(args) != 2 or args[1] not in ("replay", "purge"):
            raise _HttpError(
                404,
                "not_found",
                'POST /ui/api/dead-letters/QUEUE/replay (body {"messageId"?}) or .../purge',
            )
        queue = self._queue_name(args[0])
        broker = self._host.broker
        if args[1] == "purge":
            purged = await purge_dead_letters(broker, queue)
            _log.info("dead_letters_purged", queue=queue, count=purged, by="console")
            return {"queue": queue, "purged": purged}
        options = _action_body(request.scope["actorbus.body"])
        message_id = options.get("messageId")
        replayed = await replay_dead_letters(broker, queue, message_id=message_id)
        if message_id is not None and not replayed:
            raise _HttpError(
                404,
                "dead_letter_not_found",
                f"no dead letter with message id {message_id!r} in {dead_letter_queue(queue)!r}",
            )
        _log.info("dead_letters_replayed", queue=queue, count=len(replayed), by="console")
        return {"queue": queue, "replayed": replayed}

    # ------------------------------------------------------------------ stream

    async def _events(self, request: _Request, receive: Any, send: Any) -> None:
        """Stream a ``state`` event every interval until the page goes or the server stops."""
        self.logs.install()
        correlation = request.query.get("correlationId") or None
        last = _int(request.query.get("after", "0"), "after")
        headers = [
            (b"content-type", b"text/event-stream; charset=utf-8"),
            (b"cache-control", b"no-cache"),
            (b"x-accel-buffering", b"no"),
            *_SECURITY_HEADERS,
        ]
        await send({"type": "http.response.start", "status": 200, "headers": headers})

        async def watch_disconnect(scope: anyio.CancelScope) -> None:
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    scope.cancel()
                    return

        if self._closing is None:
            self._closing = anyio.Event()
        closing = self._closing

        async def watch_closing(scope: anyio.CancelScope) -> None:
            await closing.wait()
            scope.cancel()

        async with anyio.create_task_group() as tg:
            tg.start_soon(watch_disconnect, tg.cancel_scope)
            tg.start_soon(watch_closing, tg.cancel_scope)
            while True:
                payload = await self.state()
                lines = self.logs.lines(after=last, correlation_id=correlation, limit=200)
                if lines:
                    last = lines[-1]["seq"]
                payload["logs"] = lines
                data = msgspec.json.encode(payload)
                await send(
                    {
                        "type": "http.response.body",
                        "body": b"event: state\ndata: " + data + b"\n\n",
                        "more_body": True,
                    }
                )
                await anyio.sleep(self._interval)
        if not closing.is_set():
            return
        with anyio.CancelScope(shield=True), anyio.move_on_after(1):
            await send({"type": "http.response.body", "body": b"", "more_body": False})


def _child(status: ChildStatus, now: float) -> dict[str, Any]:
    return {
        "name": status.name,
        "kind": status.kind,
        "state": status.state,
        "restarts": status.restarts,
        "lastError": status.last_error,
        "upFor": None if status.started_at is None else round(now - status.started_at, 1),
        "children": [_child(c, now) for c in status.children],
    }


def _allowed_hosts(hosts: Iterable[str]) -> frozenset[str]:
    """Check and normalise the allowed hosts (lower case, no surrounding blanks).

    One string is a comma-separated list (as in ``ACTORBUS_CONSOLE_ALLOWED_HOSTS``), not an
    iterable of one-letter names.
    """
    if isinstance(hosts, str):
        hosts = hosts.split(",")
    allowed = set()
    for given in hosts:
        host = given.strip().lower()
        name, sep, port = host.rpartition(":") if not host.endswith("]") else ("", "", "")
        if (
            not host
            or any(c in host for c in "/*@?# ,")
            or (sep and (not port.isdigit() or not name))
        ):
            raise ConfigurationError(
                f"invalid console allowed host {given!r}: give the name the console is reached "
                "by, as NAME or NAME:PORT (e.g. 'ops.example.com' or 'ops.example.com:8443'), "
                "without a scheme, path or wildcard"
            )
        allowed.add(host)
    return frozenset(allowed)


def _own_hosts(scope: Any) -> set[str]:
    """The ``Host`` values that name this server: its address (and ``localhost`` on loopback)."""
    server = scope.get("server")
    if not server:
        return set()
    host, port = str(server[0]), server[1]
    names = {host}
    if host in ("127.0.0.1", "::1"):
        names.add("localhost")
    out = set()
    for name in names:
        shown = f"[{name}]" if ":" in name else name
        out.add(f"{shown}:{port}".lower())
        if port in (80, 443, None):
            out.add(shown.lower())
    return out


def _int(value: str, name: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise _HttpError(
            400, "invalid_query", f"{name} must be an integer, not {value!r}"
        ) from None


def _action_body(body: bytes) -> dict[str, Any]:
    if not body.strip():
        return {}
    try:
        data = msgspec.json.decode(body)
    except msgspec.DecodeError as exc:
        raise _HttpError(400, "invalid_json", str(exc)) from None
    if not isinstance(data, dict) or set(data) - {"messageId"}:
        raise _HttpError(400, "invalid_body", 'expected {} or {"messageId": "..."}')
    message_id = data.get("messageId")
    if message_id is not None and not isinstance(message_id, str):
        raise _HttpError(400, "invalid_body", "messageId must be a string")
    return data


async def _read_body(receive: Any) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > _MAX_BODY:
            raise _HttpError(413, "body_too_large", f"at most {_MAX_BODY} bytes")
        chunks.append(chunk)
        if not message.get("more_body"):
            break
    return b"".join(chunks)


async def _send(
    send: Any,
    status: int,
    body: bytes,
    content_type: str,
    extra: Sequence[tuple[bytes, bytes]] = (),
) -> None:
    headers = [
        (b"content-type", content_type.encode()),
        (b"content-length", b"%d" % len(body)),
        (b"cache-control", b"no-store"),
        *_SECURITY_HEADERS,
        *extra,
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _json(send: Any, data: Any, status: int = 200) -> None:
    await _send(send, status, msgspec.json.encode(data), "application/json")
