"""The ``nats://`` / ``tls://`` URL: servers, credentials, TLS and broker options.

``nats://[user:password@]host[:port][,host[:port]...][?option=value&...]``; ``tls://`` (or
``?tls=1``) connects with TLS. Options: ``replicas`` (of every stream, default 1; 3 in a
three-node cluster), ``ack_wait`` (seconds, 30), ``max_ack_pending`` (per consumer, 10000),
``duplicate_window`` (seconds, 120), ``max_message_size`` (bytes; default: the server's
``max_payload``), ``token``, ``name`` (the connection name), ``tls_ca``, ``tls_cert``,
``tls_key``, ``connect_timeout`` (seconds, 2).
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, unquote

from ...exceptions import ConfigurationError
from .._url import redact

__all__ = ("NatsOptions", "parse_nats_url")


@dataclass(frozen=True, slots=True)
class NatsOptions:
    """What a ``nats://`` URL says."""

    servers: list[str]
    redacted: str
    user: str | None = None
    password: str | None = field(default=None, repr=False)
    token: str | None = field(default=None, repr=False)
    tls: ssl.SSLContext | None = None
    replicas: int = 1
    ack_wait: float = 30.0
    max_ack_pending: int = 10_000
    duplicate_window: float = 120.0
    max_message_size: int | None = None
    name: str = "actorbus"
    connect_timeout: float = 2.0


def _number(query: dict[str, str], key: str, default: float, shown: str) -> float:
    raw = query.get(key)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigurationError(
            f"invalid {key}={raw!r} in NATS URL {shown!r}: expected a number"
        ) from None
    if value <= 0:
        raise ConfigurationError(f"invalid {key}={raw!r} in NATS URL {shown!r}: must be > 0")
    return value


def parse_nats_url(url: str) -> NatsOptions:
    """Parse a ``nats://`` or ``tls://`` URL.

    Raises:
        ConfigurationError: The URL is malformed or an option is invalid; the message
            shows the redacted URL only.
    """
    shown = redact(url)
    scheme, sep, rest = url.partition("://")
    scheme = scheme.lower()
    if not sep or scheme not in {"nats", "tls"}:
        raise ConfigurationError(
            f"not a NATS URL: {shown!r}; expected 'nats://host:4222' or 'tls://host:4222'"
        )
    netloc, _, query_text = rest.partition("?")
    netloc = netloc.rstrip("/")
    query = dict(parse_qsl(query_text, keep_blank_values=True))
    user = password = None
    if "@" in netloc:
        userinfo, _, netloc = netloc.rpartition("@")
        name, has_password, secret = userinfo.partition(":")
        user = unquote(name) or None
        password = unquote(secret) if has_password else None
    use_tls = scheme == "tls" or query.get("tls", "").lower() in {"1", "true", "yes"}
    servers: list[str] = []
    for part in netloc.split(","):
        host = part.strip().split("://", 1)[-1]
        if not host:
            continue
        if ":" not in host:
            host = f"{host}:4222"
        servers.append(f"{'tls' if use_tls else 'nats'}://{host}")
    if not servers:
        raise ConfigurationError(f"NATS URL {shown!r} names no server; e.g. 'nats://host:4222'")
    context = None
    if use_tls:
        context = ssl.create_default_context(cafile=query.get("tls_ca") or None)
        if query.get("tls_cert"):
            context.load_cert_chain(query["tls_cert"], query.get("tls_key") or None)
    size = query.get("max_message_size")
    replicas = int(_number(query, "replicas", 1, shown))
    if replicas not in {1, 2, 3, 4, 5}:
        raise ConfigurationError(f"invalid replicas={replicas} in NATS URL {shown!r}: 1 to 5")
    return NatsOptions(
        servers=servers,
        redacted=shown,
        user=user,
        password=password,
        token=query.get("token"),
        tls=context,
        replicas=replicas,
        ack_wait=_number(query, "ack_wait", 30.0, shown),
        max_ack_pending=int(_number(query, "max_ack_pending", 10_000, shown)),
        duplicate_window=_number(query, "duplicate_window", 120.0, shown),
        max_message_size=int(_number(query, "max_message_size", 1, shown)) if size else None,
        name=query.get("name", "actorbus"),
        connect_timeout=_number(query, "connect_timeout", 2.0, shown),
    )
