"""URL scheme → broker: built-ins by module path (imported lazily), third parties by entry point.

Lookup order for a scheme: brokers registered with :func:`register_broker` in this process,
then the built-ins, then the ``actorbus.brokers`` entry-point group. Nothing is imported until
a URL with that scheme is connected, so ``memory://`` never imports aiormq.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from importlib import metadata
from typing import Any

from .._log import get_logger
from ..exceptions import BrokerImportError, ConfigurationError, UnknownBrokerError
from ._protocol import Broker
from ._url import redact, scheme_of

__all__ = (
    "ENTRY_POINT_GROUP",
    "BrokerFactory",
    "connect",
    "get_broker_factory",
    "known_schemes",
    "register_broker",
    "unregister_broker",
)

ENTRY_POINT_GROUP = "actorbus.brokers"
"""The entry-point group third-party brokers register under: ``scheme = "pkg.mod:Factory"``."""

BrokerFactory = Callable[..., Broker]
"""Called as ``factory(url, **options)``; returns an un-entered broker (usually the class)."""

_BUILTINS: dict[str, str] = {
    "memory": "actorbus.brokers.memory:MemoryBroker",
    "amqp": "actorbus.brokers.amqp:AmqpBroker",
    "amqps": "actorbus.brokers.amqp:AmqpBroker",
    "sqlite": "actorbus.brokers.sqlite:SqliteBroker",
    "nats": "actorbus.brokers.nats:NatsBroker",
    "tls": "actorbus.brokers.nats:NatsBroker",
}

_INSTALL_HINTS: dict[str, str] = {
    "amqp": "the AMQP broker needs aiormq: install it with: pip install aiormq",
    "amqps": "the AMQP broker needs aiormq: install it with: pip install aiormq",
    "nats": "the NATS broker needs nats-py: install it with: pip install 'actorbus[nats]'",
    "tls": "the NATS broker needs nats-py: install it with: pip install 'actorbus[nats]'",
}

_registered: dict[str, BrokerFactory] = {}
_loaded: dict[str, BrokerFactory] = {}

_log = get_logger("actorbus.brokers")


def _normalize(scheme: str) -> str:
    scheme = scheme.lower().removesuffix("://")
    if not scheme or not scheme.replace("+", "").replace("-", "").replace(".", "").isalnum():
        raise ConfigurationError(
            f"invalid URL scheme {scheme!r}: use letters, digits, '+', '-' or '.', e.g. 'kafka'"
        )
    return scheme


def register_broker(scheme: str, factory: BrokerFactory, *, replace: bool = False) -> None:
    """Make ``connect("<scheme>://…")`` create brokers with ``factory``.

    Meant for brokers defined in the application itself; an installed package registers
    through the ``actorbus.brokers`` entry-point group instead.

    Args:
        scheme: The URL scheme without ``://``, e.g. ``"kafka"``; case-insensitive.
        factory: Called as ``factory(url, **options)``; returns an un-entered broker.
        replace: Allow replacing a broker registered before with :func:`register_broker`.

    Raises:
        ConfigurationError: ``scheme`` is invalid, or already registered and not ``replace``.
    """
    key = _normalize(scheme)
    existing = _registered.get(key)
    if existing is not None and existing is not factory and not replace:
        raise ConfigurationError(
            f"a broker is already registered for scheme {key!r} ({existing!r}); "
            "pass replace=True to replace it"
        )
    _registered[key] = factory
    _loaded.pop(key, None)


def unregister_broker(scheme: str) -> None:
    """Forget a broker registered with :func:`register_broker` (built-ins stay)."""
    key = _normalize(scheme)
    _registered.pop(key, None)
    _loaded.pop(key, None)


def _entry_points() -> dict[str, metadata.EntryPoint]:
    return {ep.name.lower(): ep for ep in metadata.entry_points(group=ENTRY_POINT_GROUP)}


def known_schemes() -> frozenset[str]:
    """Return every scheme ``connect`` accepts: registered, built-in and entry points."""
    return frozenset(_registered) | frozenset(_BUILTINS) | frozenset(_entry_points())


def _load_target(scheme: str, target: str) -> BrokerFactory:
    module_name, _, attr = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise BrokerImportError(
            scheme, target, f"{type(exc).__name__}: {exc}", _INSTALL_HINTS.get(scheme, "")
        ) from exc
    try:
        factory: BrokerFactory = getattr(module, attr)
    except AttributeError:
        raise BrokerImportError(
            scheme, target, f"module {module_name!r} has no attribute {attr!r}"
        ) from None
    return factory


def _load_entry_point(scheme: str, ep: metadata.EntryPoint) -> BrokerFactory:
    dist = getattr(ep.dist, "name", None)
    where = f"entry point {ep.value!r}" + (f" of distribution {dist!r}" if dist else "")
    try:
        factory: BrokerFactory = ep.load()
    except Exception as exc:
        hint = f"reinstall {dist!r}" if dist else "check the package that declares it"
        raise BrokerImportError(scheme, where, f"{type(exc).__name__}: {exc}", hint) from exc
    if not callable(factory):
        raise BrokerImportError(
            scheme, where, f"{factory!r} is not callable", "it must be a broker class or factory"
        )
    return factory


def get_broker_factory(scheme: str) -> BrokerFactory:
    """Return the factory for ``scheme``, importing it on first use.

    Raises:
        UnknownBrokerError: No broker is known for ``scheme``; lists the known schemes.
        BrokerImportError: The broker is known but cannot be imported; says what to install.
    """
    key = _normalize(scheme)
    factory = _registered.get(key) or _loaded.get(key)
    if factory is not None:
        return factory
    target = _BUILTINS.get(key)
    if target is not None:
        factory = _load_target(key, target)
    else:
        ep = _entry_points().get(key)
        if ep is None:
            raise UnknownBrokerError(key, known_schemes())
        factory = _load_entry_point(key, ep)
    _loaded[key] = factory
    return factory


def connect(url: str, **options: Any) -> Broker:
    """Create the broker for ``url``; enter it to connect.

    Example::

        async with connect("amqp://guest:guest@localhost/") as broker:
            await broker.declare(topology)

    Args:
        url: ``memory://``, ``amqp://user:password@host:port/vhost``, ``amqps://…``, or a
            scheme registered by a third-party broker.
        **options: Passed to the broker's constructor.

    Returns:
        An un-entered broker.

    Raises:
        ConfigurationError: ``url`` is not a URL.
        UnknownBrokerError: No broker handles the URL's scheme.
        BrokerImportError: The broker's module cannot be imported.
    """
    scheme = scheme_of(url)
    factory = get_broker_factory(scheme)
    broker = factory(url, **options)
    if not isinstance(broker, Broker):
        raise ConfigurationError(
            f"the broker factory for scheme {scheme!r} returned {type(broker).__name__!r}, "
            "which does not implement actorbus.brokers.Broker"
        )
    _log.debug("broker_created", url=redact(url), broker=type(broker).__name__)
    return broker
