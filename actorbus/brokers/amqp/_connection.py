"""Connecting to RabbitMQ: URL options, failover addresses, TLS, reconnection with backoff.

:class:`ConnectionManager` owns the one aiormq connection of an :class:`AmqpBroker`. It
connects to the first reachable address, watches the connection, and when it is lost,
reconnects with exponential backoff and jitter, calling the broker back so that it can
redeclare its topology and resume its consumers. It knows nothing of publishing or
consuming.
"""

from __future__ import annotations

import asyncio
import os
import ssl
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, unquote

import aiormq
import aiormq.abc
from yarl import URL

from ..._backoff import Backoff
from ..._log import get_logger
from ...exceptions import BrokerConnectionError, ConfigurationError
from .._url import redact

__all__ = (
    "INLINE_ENV",
    "AmqpOptions",
    "ConnectionManager",
    "Endpoint",
    "parse_amqp_url",
    "reconnect_backoff",
)

_log = get_logger("actorbus.brokers.amqp")

_DEFAULT_PORTS = {"amqp": 5672, "amqps": 5671}
_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})
#: Environment switch of the inline consumer path (see :mod:`._inline`); ``?inline=`` wins.
INLINE_ENV = "ACTORBUS_AMQP_INLINE"


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One broker address to try, with its credentials.

    Attributes:
        url: The URL handed to aiormq (contains the password: never log it).
        redacted: The same URL with the password masked; safe to log.
        host: The host name, for TLS server-name checks.
    """

    url: URL = field(repr=False)
    redacted: str
    host: str


@dataclass(frozen=True, slots=True)
class AmqpOptions:
    """Options read from the URL's query string (constructor arguments override them).

    Attributes:
        heartbeat: Heartbeat interval in seconds (``?heartbeat=``).
        connect_timeout: Seconds to wait for one connection attempt (``?connect_timeout=``).
        cafile: CA bundle that verifies the server (``?cafile=``).
        certfile: Client certificate (``?certfile=``).
        keyfile: Client certificate's key (``?keyfile=``).
        verify: Verify the server's certificate and host name (``?verify=0`` turns it off).
        name: The connection name shown by the broker's management tools (``?name=``).
        inline: Hand deliveries over in aiormq's connection reader (:mod:`._inline`);
            ``?inline=0``, or else the environment's ``ACTORBUS_AMQP_INLINE=0``, takes
            aiormq's own consumer path instead.
    """

    heartbeat: int | None = None
    connect_timeout: float | None = None
    cafile: str | None = None
    certfile: str | None = None
    keyfile: str | None = None
    verify: bool = True
    name: str | None = None
    inline: bool = True


def _split_hosts(hosts: str, scheme: str, shown: str) -> list[tuple[str, int]]:
    result: list[tuple[str, int]] = []
    for item in hosts.split(","):
        item = item.strip()
        if not item:
            continue
        if item.startswith("["):  # [::1]:5672
            host, _, rest = item[1:].partition("]")
            port_text = rest[1:] if rest.startswith(":") else ""
        else:
            host, _, port_text = item.partition(":")
        try:
            port = int(port_text) if port_text else _DEFAULT_PORTS[scheme]
        except ValueError:
            raise ConfigurationError(
                f"invalid port {port_text!r} in broker URL {shown!r}; expected e.g. "
                "'amqp://user:password@host:5672/vhost'"
            ) from None
        result.append((unquote(host) or "localhost", port))
    return result or [("localhost", _DEFAULT_PORTS[scheme])]


def parse_amqp_url(urls: str | Sequence[str]) -> tuple[list[Endpoint], AmqpOptions, str]:
    """Parse one URL (possibly with several ``host:port`` separated by commas) or a list.

    ``amqp://user:pass@h1:5672,h2:5673/vhost?heartbeat=10`` yields two endpoints that share
    credentials, vhost and options; a list of URLs yields the endpoints of each URL, with
    the options of the first.

    Returns:
        The endpoints in failover order, the options, and the redacted URL to show.

    Raises:
        ConfigurationError: Not an ``amqp://`` / ``amqps://`` URL, or a bad port.
    """
    items = [urls] if isinstance(urls, str) else list(urls)
    if not items:
        raise ConfigurationError("no broker URL given; expected 'amqp://user:pass@host/vhost'")
    endpoints: list[Endpoint] = []
    options: AmqpOptions | None = None
    for raw in items:
        shown = redact(raw)
        scheme, sep, rest = raw.partition("://")
        scheme = scheme.lower()
        if not sep or scheme not in _DEFAULT_PORTS:
            raise ConfigurationError(
                f"not an AMQP URL: {shown!r}; expected 'amqp://user:password@host:5672/vhost' "
                "or 'amqps://…'"
            )
        rest, _, _fragment = rest.partition("#")
        rest, _, query_text = rest.partition("?")
        netloc, slash, path = rest.partition("/")
        userinfo, at, hosts = netloc.rpartition("@")
        if not at:
            hosts = netloc
        user_text, _, password_text = userinfo.partition(":")
        user = unquote(user_text) if user_text else "guest"
        password = unquote(password_text) if password_text else "guest"
        vhost = unquote(path) if slash and path else "/"
        query = dict(parse_qsl(query_text, keep_blank_values=True))
        if options is None:
            options = _options(query, shown)
        for host, port in _split_hosts(hosts, scheme, shown):
            url = URL.build(
                scheme=scheme,
                user=user,
                password=password,
                host=host,
                port=port,
                path="/" if vhost == "/" else "/" + vhost,
                encoded=False,
            )
            masked = f"{scheme}://{user}:***@{host}:{port}/{path if slash else ''}"
            endpoints.append(Endpoint(url=url, redacted=masked, host=host))
    if options is None:  # pragma: no cover - items is not empty
        options = AmqpOptions()
    return endpoints, options, redact(items[0]) if len(items) == 1 else redact(",".join(items))


def _options(query: dict[str, str], shown: str) -> AmqpOptions:
    def number(key: str) -> float | None:
        if key not in query:
            return None
        try:
            return float(query[key])
        except ValueError:
            raise ConfigurationError(
                f"option {key}={query[key]!r} of broker URL {shown!r} is not a number"
            ) from None

    heartbeat = number("heartbeat")
    verify_text = query.get("verify", (query.get("no_verify_ssl") and "0") or "1")
    return AmqpOptions(
        heartbeat=int(heartbeat) if heartbeat is not None else None,
        connect_timeout=number("connect_timeout") or number("connection_timeout"),
        cafile=query.get("cafile") or None,
        certfile=query.get("certfile") or None,
        keyfile=query.get("keyfile") or None,
        verify=verify_text.lower() in _TRUE,
        name=query.get("name") or None,
        inline=_inline_switch(query, shown),
    )


def _inline_switch(query: dict[str, str], shown: str) -> bool:
    """``?inline=`` if given, else ``ACTORBUS_AMQP_INLINE``, else on."""
    if "inline" in query:
        text, where = query["inline"], f"option inline= of broker URL {shown!r}"
    else:
        text, where = os.environ.get(INLINE_ENV, ""), f"environment variable {INLINE_ENV}"
        if not text:
            return True
    value = text.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ConfigurationError(
        f"{where} is {text!r}; expected 1 (deliveries in aiormq's connection reader, the "
        "default) or 0 (aiormq's own consumer path)"
    )


def make_ssl_context(
    cafile: str | None, certfile: str | None, keyfile: str | None, *, verify: bool = True
) -> ssl.SSLContext:
    """Build the TLS context for ``amqps://``: verify the server, optionally present a cert.

    Raises:
        ConfigurationError: A certificate or key file cannot be loaded.
    """
    try:
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=cafile)
        if certfile:
            context.load_cert_chain(certfile, keyfile)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigurationError(
            f"cannot load TLS files (cafile={cafile!r}, certfile={certfile!r}, "
            f"keyfile={keyfile!r}): {exc}"
        ) from exc
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def reconnect_backoff(initial: float, maximum: float) -> Backoff:
    """Return the reconnection schedule: attempt ``n`` waits a random time in ``[d/2, d]``.

    ``d = min(maximum, initial * 2 ** (n - 1))``: exponential with wide jitter, so that many
    clients losing the same broker do not reconnect in step. It is the one
    :class:`~actorbus._backoff.Backoff`, centred on ``3d/4`` with a jitter of a third.
    """
    return Backoff(
        initial=0.75 * initial, factor=2.0, maximum=0.75 * max(maximum, initial), jitter=1 / 3
    )


class ConnectionManager:
    """Keeps one aiormq connection open, failing over between endpoints.

    Args:
        endpoints: Addresses in failover order.
        shown_url: The redacted URL used in logs and errors.
        heartbeat: Heartbeat interval negotiated with the broker, in seconds.
        connect_timeout: Seconds allowed for one connection attempt.
        ssl_context: TLS context for ``amqps://`` endpoints.
        reconnect_delay: First backoff delay after a lost connection, in seconds.
        reconnect_max_delay: Upper bound of the backoff, in seconds.
        client_name: The ``connection_name`` shown in RabbitMQ's tools.
        on_connected: Called with each new connection before it counts as ready
            (redeclare topology, open channels). If it raises, the connection is dropped and
            retried.
        on_lost: Called once when a ready connection is lost.
    """

    def __init__(
        self,
        endpoints: Sequence[Endpoint],
        shown_url: str,
        *,
        heartbeat: int,
        connect_timeout: float,
        ssl_context: ssl.SSLContext | None,
        reconnect_delay: float,
        reconnect_max_delay: float,
        client_name: str,
        on_connected: Callable[[aiormq.abc.AbstractConnection], Awaitable[None]],
        on_lost: Callable[[], None],
    ) -> None:
        self._endpoints = list(endpoints)
        self.url = shown_url
        self._heartbeat = heartbeat
        self._connect_timeout = connect_timeout
        self._ssl_context = ssl_context
        self._reconnect_delay = reconnect_delay
        self._reconnect_max_delay = reconnect_max_delay
        self._client_name = client_name
        self._on_connected = on_connected
        self._on_lost = on_lost
        self._next = 0  # index of the endpoint to try first
        self.connection: aiormq.abc.AbstractConnection | None = None
        self.ready = asyncio.Event()
        self.closing = False
        self._watcher: asyncio.Task[None] | None = None
        self.endpoint: Endpoint | None = None

    async def _open(self, endpoint: Endpoint) -> aiormq.abc.AbstractConnection:
        url = endpoint.url.with_query(heartbeat=str(self._heartbeat), name=self._client_name)
        context = self._ssl_context if url.scheme == "amqps" else None
        connection = aiormq.Connection(
            url, context=context, client_properties={"connection_name": self._client_name}
        )
        try:
            async with asyncio.timeout(self._connect_timeout):
                await connection.connect()
        except BaseException:
            await asyncio.shield(connection.close())
            raise
        return connection

    async def _connect_once(self) -> aiormq.abc.AbstractConnection:
        """Try every endpoint once, starting with the one that last worked."""
        errors: list[str] = []
        count = len(self._endpoints)
        for i in range(count):
            index = (self._next + i) % count
            endpoint = self._endpoints[index]
            _log.info("amqp_connecting", url=endpoint.redacted, timeout=self._connect_timeout)
            try:
                connection = await self._open(endpoint)
            except TimeoutError:
                reason = (
                    f"no answer within {self._connect_timeout:g} s (TCP connect and AMQP "
                    "handshake; a server that accepts the connection but does not speak AMQP "
                    "0-9-1 looks like this); raise connect_timeout=… if the broker is slow"
                )
                errors.append(reason if count == 1 else f"{endpoint.redacted}: {reason}")
                continue
            except (OSError, aiormq.AMQPError) as exc:
                # One address: the error already names it; several: say which one failed.
                errors.append(
                    _describe(exc) if count == 1 else f"{endpoint.redacted}: {_describe(exc)}"
                )
                continue
            self._next = index
            self.endpoint = endpoint
            return connection
        raise BrokerConnectionError(self.url, "; ".join(errors))

    async def start(self) -> None:
        """Connect for the first time and start watching the connection.

        Raises:
            BrokerConnectionError: No endpoint could be reached, or ``on_connected`` failed
                with a connection error.
        """
        connection = await self._connect_once()
        try:
            await self._on_connected(connection)
        except BaseException:
            await asyncio.shield(connection.close())
            raise
        self._became_ready(connection)
        self._watcher = asyncio.get_running_loop().create_task(
            self._watch(), name="actorbus-amqp-connection"
        )

    def _became_ready(self, connection: aiormq.abc.AbstractConnection) -> None:
        self.connection = connection
        self.ready.set()
        endpoint = self.endpoint.redacted if self.endpoint else self.url
        _log.info("amqp_connected", url=endpoint)

    async def _watch(self) -> None:
        while not self.closing:
            connection = self.connection
            if connection is None:  # pragma: no cover - set by start()
                return
            reason = await _closed(connection)
            if self._stopped():
                return
            self.ready.clear()
            self.connection = None
            _log.warning("amqp_connection_lost", url=self.url, reason=reason)
            try:
                self._on_lost()
            except Exception:  # pragma: no cover - defensive
                _log.exception("amqp_on_lost_failed")
            await self._reconnect()

    async def _reconnect(self) -> None:
        next_delay = reconnect_backoff(self._reconnect_delay, self._reconnect_max_delay).delays()
        attempts = 0
        while not self.closing:
            attempts += 1
            try:
                connection = await self._connect_once()
            except BrokerConnectionError as exc:
                delay = next_delay()
                _log.info(
                    "amqp_reconnect_failed", url=self.url, attempt=attempts,
                    retry_in=round(delay, 2), reason=exc.reason,
                )  # fmt: skip
                await asyncio.sleep(delay)
                continue
            try:
                await self._on_connected(connection)
            except BaseException as exc:
                if not isinstance(exc, Exception):  # cancelled while setting up: no leak
                    await asyncio.shield(connection.close())
                    raise
                delay = next_delay()
                _log.warning(
                    "amqp_reconnect_setup_failed", url=self.url, attempt=attempts,
                    retry_in=round(delay, 2), reason=_describe(exc),
                )  # fmt: skip
                await asyncio.shield(connection.close())
                await asyncio.sleep(delay)
                continue
            if self._stopped():
                await asyncio.shield(connection.close())
                return
            self._became_ready(connection)
            return

    def _stopped(self) -> bool:
        # A method, not the attribute: mypy would narrow ``self.closing`` across awaits.
        return self.closing

    async def wait_ready(self, within: float) -> aiormq.abc.AbstractConnection:
        """Return the open connection, waiting up to ``within`` seconds for a reconnection.

        Raises:
            BrokerConnectionError: Still not connected after ``within`` s, or closing.
        """
        connection = self.connection
        if connection is not None and self.ready.is_set():
            return connection
        if self.closing:
            raise BrokerConnectionError(self.url, "the broker is closed")
        try:
            async with asyncio.timeout(within):
                while True:
                    await self.ready.wait()
                    connection = self.connection
                    if connection is not None:
                        return connection
                    await asyncio.sleep(0)  # pragma: no cover - cleared in between
        except TimeoutError:
            raise BrokerConnectionError(
                self.url, f"not connected; gave up waiting for reconnection after {within:g} s"
            ) from None

    async def close(self) -> None:
        """Close the connection and stop reconnecting."""
        self.closing = True
        self.ready.clear()
        watcher = self._watcher
        if watcher is not None and not watcher.done():
            watcher.cancel()
            await asyncio.gather(watcher, return_exceptions=True)
        connection, self.connection = self.connection, None
        if connection is not None:
            await asyncio.shield(connection.close())
        _log.info("amqp_closed", url=self.url)


async def _closed(connection: aiormq.abc.AbstractConnection) -> str:
    """Wait until ``connection`` closes; return why."""
    try:
        await connection.closing
    except asyncio.CancelledError:
        if connection.is_closed:
            return "cancelled"
        raise
    except BaseException as exc:
        return _describe(exc)
    return "closed"


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
