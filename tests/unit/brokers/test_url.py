"""Broker URL parsing and credential redaction."""

from __future__ import annotations

import pytest

from actorbus.brokers._url import parse_url, redact, scheme_of
from actorbus.exceptions import ConfigurationError


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("amqp://guest:guest@localhost:5672/", "amqp://guest:***@localhost:5672/"),
        ("amqps://svc:s3cr%40t@rabbit.internal/prod", "amqps://svc:***@rabbit.internal/prod"),
        ("amqp://user:p@ss:w0rd@host/", "amqp://user:***@host/"),
        ("amqp://:only-password@host", "amqp://:***@host"),
        ("amqp://user@host/", "amqp://user@host/"),
        ("amqp://host/vhost", "amqp://host/vhost"),
        ("memory://", "memory://"),
        ("memory://shared", "memory://shared"),
        (
            "amqp://h/?heartbeat=30&password=hunter2&token=t0k",
            "amqp://h/?heartbeat=30&password=***&token=***",
        ),
        ("amqp://h/?failover=amqp://bob:hunter2@h2", "amqp://h/?failover=amqp://bob:***@h2"),
        ("amqp://h/?sasl_secret=x;api_key=y", "amqp://h/?sasl_secret=***;api_key=***"),
        ("not a url", "not a url"),
        ("guest:guest@localhost:5672", "guest:***@localhost:5672"),
        ("", ""),
    ],
)
def test_redact(url: str, shown: str) -> None:
    assert redact(url) == shown


@pytest.mark.parametrize("secret", ["hunter2", "s3cr%40t", "p@ss"])
def test_redact_never_shows_the_password(secret: str) -> None:
    assert secret not in redact(f"amqp://user:{secret}@host:5672/?password={secret}")


def test_parse_url() -> None:
    url = parse_url("AMQP://user:pa%40ss@rabbit:5673/orders%2Fv1?heartbeat=30&ssl=")
    assert url.scheme == "amqp"
    assert url.host == "rabbit"
    assert url.port == 5673
    assert url.username == "user"
    assert url.password == "pa@ss"
    assert url.path == "orders/v1"
    assert url.query == {"heartbeat": "30", "ssl": ""}
    assert url.redacted == "AMQP://user:***@rabbit:5673/orders%2Fv1?heartbeat=30&ssl="
    assert "pa@ss" not in repr(url)


def test_parse_url_without_parts() -> None:
    url = parse_url("memory://")
    assert (url.scheme, url.host, url.port, url.username, url.password, url.path) == (
        "memory",
        "",
        None,
        None,
        None,
        "",
    )


def test_invalid_port_names_the_redacted_url() -> None:
    with pytest.raises(ConfigurationError, match=r"amqp://u:\*\*\*@host:notaport") as info:
        parse_url("amqp://u:hunter2@host:notaport/")
    assert "hunter2" not in str(info.value)


@pytest.mark.parametrize("url", ["localhost:5672", "://host", "1amqp://host", ""])
def test_scheme_of_rejects_non_urls(url: str) -> None:
    with pytest.raises(ConfigurationError, match="not a broker URL"):
        scheme_of(url)


def test_scheme_of_lowercases() -> None:
    assert scheme_of("AmQpS://h") == "amqps"


def test_scheme_error_is_redacted() -> None:
    with pytest.raises(ConfigurationError) as info:
        scheme_of("user:hunter2@host")
    assert "hunter2" not in str(info.value)
    assert "user:***@host" in str(info.value)
