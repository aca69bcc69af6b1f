"""``HOST:PORT`` addresses of the servers a process runs (front door, metrics port)."""

from __future__ import annotations

from ..exceptions import ConfigurationError

__all__ = ("metrics_address", "parse_address")


def parse_address(value: str, what: str = "HTTP") -> tuple[str, int]:
    """Parse ``HOST:PORT`` (``[::1]:8000`` for IPv6).

    Raises:
        ConfigurationError: It is not ``HOST:PORT`` with a port in 0-65535.
    """
    host, sep, port_text = value.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port_text.isdigit() or int(port_text) > 65535:
        raise ConfigurationError(
            f"invalid {what} address {value!r}: expected HOST:PORT, e.g. 127.0.0.1:8000"
        )
    return host, int(port_text)


def metrics_address(port: str | int | None) -> tuple[str, int] | None:
    """Parse the metrics port option: ``HOST:PORT``, or a port number on 127.0.0.1.

    Raises:
        ConfigurationError: It is neither.
    """
    if port is None:
        return None
    if isinstance(port, int) and not isinstance(port, bool):
        if not 0 <= port <= 65535:
            raise ConfigurationError(f"invalid metrics port {port!r}: expected 0-65535")
        return ("127.0.0.1", port)
    return parse_address(str(port), "metrics")
