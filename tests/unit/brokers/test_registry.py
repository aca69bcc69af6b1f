"""URL scheme → broker lookup: built-ins, registered factories, entry points."""

from __future__ import annotations

from collections.abc import Iterator
from importlib import metadata
from typing import Any

import pytest

from actorbus.brokers import _registry, connect, known_schemes, register_broker
from actorbus.brokers._registry import get_broker_factory, unregister_broker
from actorbus.brokers.memory import MemoryBroker
from actorbus.exceptions import BrokerImportError, ConfigurationError, UnknownBrokerError


class _FakeBroker(MemoryBroker):
    """A third-party broker for the lookup tests: behaves like the memory broker."""

    def __init__(self, url: str, **options: Any) -> None:
        super().__init__("memory://")
        self.given_url = url
        self.options = options


@pytest.fixture(autouse=True)
def _clean_registry() -> Iterator[None]:
    registered = dict(_registry._registered)
    loaded = dict(_registry._loaded)
    yield
    _registry._registered.clear()
    _registry._registered.update(registered)
    _registry._loaded.clear()
    _registry._loaded.update(loaded)


def _entry_points(monkeypatch: pytest.MonkeyPatch, *eps: metadata.EntryPoint) -> None:
    def entry_points(*, group: str) -> list[metadata.EntryPoint]:
        return [ep for ep in eps if ep.group == group]

    monkeypatch.setattr(metadata, "entry_points", entry_points)


def test_memory_is_built_in() -> None:
    broker = connect("memory://")
    assert isinstance(broker, MemoryBroker)
    assert not broker.is_ready  # un-entered


def test_options_are_passed_to_the_broker() -> None:
    broker = connect("memory://", max_message_size=10)
    assert isinstance(broker, MemoryBroker)
    assert broker._max_size == 10


def test_scheme_is_case_insensitive() -> None:
    assert isinstance(connect("MEMORY://"), MemoryBroker)


def test_unknown_scheme_lists_known_schemes(monkeypatch: pytest.MonkeyPatch) -> None:
    _entry_points(monkeypatch)
    with pytest.raises(UnknownBrokerError, match=r"'kafka'.*amqp://, amqps://, memory://") as info:
        connect("kafka://localhost:9092")
    assert "actorbus.brokers" in str(info.value)
    assert isinstance(info.value, LookupError)


def test_unknown_scheme_error_never_shows_the_password(monkeypatch: pytest.MonkeyPatch) -> None:
    _entry_points(monkeypatch)
    with pytest.raises(UnknownBrokerError) as info:
        connect("kafka://u:hunter2@localhost")
    assert "hunter2" not in str(info.value)


def test_not_a_url() -> None:
    with pytest.raises(ConfigurationError, match="not a broker URL"):
        connect("localhost:5672")


def test_register_broker() -> None:
    register_broker("fake", _FakeBroker)
    broker = connect("fake://somewhere", heartbeat=5)
    assert isinstance(broker, _FakeBroker)
    assert broker.given_url == "fake://somewhere"
    assert broker.options == {"heartbeat": 5}
    assert "fake" in known_schemes()


def test_register_twice_needs_replace() -> None:
    register_broker("fake", _FakeBroker)
    register_broker("fake", _FakeBroker)  # the same factory again is fine

    def other(url: str, **options: Any) -> MemoryBroker:
        return MemoryBroker()

    with pytest.raises(ConfigurationError, match="replace=True"):
        register_broker("fake", other)
    register_broker("FAKE://", other, replace=True)
    assert get_broker_factory("fake") is other
    unregister_broker("fake")
    assert "fake" not in _registry._registered


def test_registered_broker_overrides_built_in() -> None:
    register_broker("memory", _FakeBroker, replace=True)
    assert isinstance(connect("memory://"), _FakeBroker)


@pytest.mark.parametrize("scheme", ["", "a b", "ka/fka"])
def test_invalid_scheme(scheme: str) -> None:
    with pytest.raises(ConfigurationError, match="invalid URL scheme"):
        register_broker(scheme, _FakeBroker)


def test_factory_must_return_a_broker() -> None:
    def bad(url: str, **options: Any) -> Any:
        return object()

    register_broker("bad", bad)
    with pytest.raises(ConfigurationError, match=r"'object'.*does not implement"):
        connect("bad://")


def test_entry_point_lookup(monkeypatch: pytest.MonkeyPatch) -> None:
    ep = metadata.EntryPoint(name="fake", value=f"{__name__}:_FakeBroker", group="actorbus.brokers")
    other_group = metadata.EntryPoint(name="nope", value="x:y", group="other.group")
    _entry_points(monkeypatch, ep, other_group)
    assert "fake" in known_schemes()
    assert "nope" not in known_schemes()
    broker = connect("fake://host")
    assert isinstance(broker, _FakeBroker)


def test_entry_point_that_fails_to_import(monkeypatch: pytest.MonkeyPatch) -> None:
    ep = metadata.EntryPoint(
        name="broken", value="no_such_module_xyz:Broker", group="actorbus.brokers"
    )
    _entry_points(monkeypatch, ep)
    with pytest.raises(BrokerImportError, match=r"'broken'.*no_such_module_xyz"):
        connect("broken://host")


def test_built_in_import_failure_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(_registry._BUILTINS, "amqp", "actorbus.brokers.no_such_amqp:AmqpBroker")
    _registry._loaded.pop("amqp", None)
    with pytest.raises(BrokerImportError, match=r"'amqp'.*pip install aiormq") as info:
        connect("amqp://guest:guest@localhost/")
    assert isinstance(info.value, ImportError)


def test_built_in_without_the_attribute(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(_registry._BUILTINS, "amqp", "actorbus.brokers.memory:NoSuchBroker")
    _registry._loaded.pop("amqp", None)
    with pytest.raises(BrokerImportError, match="has no attribute 'NoSuchBroker'"):
        connect("amqp://localhost/")


def test_package_does_not_import_brokers_eagerly() -> None:
    import actorbus.brokers as brokers

    assert not hasattr(brokers, "MemoryBroker")
    assert not hasattr(brokers, "AmqpBroker")
