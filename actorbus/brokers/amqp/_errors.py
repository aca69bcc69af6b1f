"""aiormq / AMQP errors → actorbus exceptions: the one mapping table of this broker.

AMQP 0-9-1 reports failures as reply codes on ``channel.close`` or ``connection.close``.
aiormq turns them into its own exception classes; :func:`translate` turns those into
:mod:`actorbus.exceptions`, naming the queue or exchange involved and what to do.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable, Mapping
from types import MappingProxyType

import aiormq.exceptions as amqp_exc

from ...exceptions import (
    BrokerConnectionError,
    BrokerError,
    ExchangeNotFoundError,
    PublishError,
    PublishNackedError,
    QueueNotFoundError,
    TopologyConflictError,
    TopologyError,
    UnroutableError,
)

__all__ = (
    "REPLY_CODES",
    "is_connection_error",
    "reply_code",
    "translate",
)

# Reply codes of AMQP 0-9-1 (section 1.2 of the spec) that RabbitMQ sends.
CONNECTION_FORCED = 320
INVALID_PATH = 402
ACCESS_REFUSED = 403
NOT_FOUND = 404
RESOURCE_LOCKED = 405
PRECONDITION_FAILED = 406
NOT_ALLOWED = 530

_CLASS_CODES: Mapping[type[BaseException], int] = MappingProxyType(
    {
        amqp_exc.ChannelAccessRefused: ACCESS_REFUSED,
        amqp_exc.ChannelNotFoundEntity: NOT_FOUND,
        amqp_exc.ChannelLockedResource: RESOURCE_LOCKED,
        amqp_exc.ChannelPreconditionFailed: PRECONDITION_FAILED,
        amqp_exc.ConnectionNotAllowed: NOT_ALLOWED,
    }
)

# "PRECONDITION_FAILED - inequivalent arg 'x-queue-type' for queue 'q' in vhost '/':
#  received the value 'quorum' of type 'longstr' but current is none"
_INEQUIVALENT = re.compile(
    r"inequivalent arg '(?P<arg>[^']+)' for (?P<kind>queue|exchange) '(?P<name>[^']*)' "
    r"in vhost '[^']*': received (?P<received>.+?) but current is (?P<current>.+)$",
    re.DOTALL,
)


def _topology_error(text: str, subject: str | None) -> TopologyError:
    match = _INEQUIVALENT.search(text)
    if match is not None:
        return TopologyConflictError(
            match["kind"],
            match["name"],
            match["arg"],
            _plain(match["received"]),
            _plain(match["current"]),
        )
    where = f" declaring {subject}" if subject else ""
    return TopologyError(f"the broker refused{where}: {text}")


def _plain(value: str) -> str:
    # "the value 'quorum' of type 'longstr'" -> "'quorum'"; "none" -> "none (unset)"
    value = value.strip()
    typed = re.match(r"the value (?P<v>.+?) of type '[^']+'$", value)
    if typed is not None:
        return typed["v"]
    if value == "none":
        return "none (unset)"
    return value


_NO_EXCHANGE = re.compile(r"no exchange '(?P<name>[^']*)'")
_NO_QUEUE = re.compile(r"no queue '(?P<name>[^']*)'")


def _not_found(text: str, queue: str | None) -> BrokerError:
    exchange = _NO_EXCHANGE.search(text)
    if exchange is not None:
        return ExchangeNotFoundError(exchange["name"])
    missing = _NO_QUEUE.search(text)
    if missing is not None:
        return QueueNotFoundError(missing["name"])
    if queue is not None:
        return QueueNotFoundError(queue)
    return TopologyError(f"not found: {text}; declare it before using it")


def _refused(text: str, subject: str | None) -> BrokerError:
    where = f" on {subject}" if subject else ""
    return TopologyError(
        f"access refused{where}: {text}; grant the user configure/write/read permissions"
    )


#: Reply code → how to build the actorbus exception from (server text, queue or subject).
REPLY_CODES: Mapping[int, Callable[[str, str | None], BrokerError]] = MappingProxyType(
    {
        NOT_FOUND: _not_found,
        PRECONDITION_FAILED: _topology_error,
        RESOURCE_LOCKED: lambda text, subject: TopologyError(
            f"{subject or 'resource'} is locked by another connection (exclusive): {text}"
        ),
        ACCESS_REFUSED: _refused,
    }
)


def reply_code(exc: BaseException) -> int | None:
    """Return the AMQP reply code carried by an aiormq exception, if any."""
    for cls, code in _CLASS_CODES.items():
        if isinstance(exc, cls):
            return code
    if isinstance(exc, amqp_exc.ChannelClosed | amqp_exc.ConnectionClosed) and exc.args:
        first = exc.args[0]
        if isinstance(first, int):
            return first
    return None


def _text(exc: BaseException) -> str:
    args = [a for a in exc.args if isinstance(a, str)]
    return args[-1] if args else (str(exc) or type(exc).__name__)


def is_connection_error(exc: BaseException) -> bool:
    """Whether ``exc`` means the connection or channel went away (retry after reconnecting)."""
    return isinstance(
        exc,
        ConnectionError
        | OSError
        | amqp_exc.AMQPConnectionError
        | amqp_exc.ChannelInvalidStateError
        | asyncio.CancelledError
        | RuntimeError,
    ) or (isinstance(exc, amqp_exc.ChannelClosed) and reply_code(exc) is None)


def translate(
    exc: BaseException,
    *,
    url: str,
    queue: str | None = None,
    subject: str | None = None,
    exchange: str = "",
    routing_key: str = "",
    message_id: str | None = None,
) -> BrokerError:
    """Translate an aiormq exception into the matching :class:`~actorbus.exceptions.BrokerError`.

    Args:
        exc: What aiormq raised.
        url: The broker URL, already redacted.
        queue: The queue the operation was about (for :class:`QueueNotFoundError`).
        subject: A description of what was being declared, for the message.
        exchange: For publishes: the exchange published to.
        routing_key: For publishes: the routing key used.
        message_id: For publishes: the message id.

    Returns:
        The exception to raise (``from exc``).
    """
    if isinstance(exc, BrokerError):
        return exc
    if isinstance(exc, amqp_exc.PublishError):  # a basic.return of a mandatory message
        return UnroutableError(exchange, routing_key, message_id)
    if isinstance(exc, amqp_exc.DeliveryError):  # basic.nack
        return PublishNackedError(exchange, routing_key, message_id)
    code = reply_code(exc)
    if code == NOT_FOUND and routing_key:
        missing = _NO_EXCHANGE.search(_text(exc))
        if missing is not None:
            return ExchangeNotFoundError(missing["name"], routing_key)
    if code is not None and code in REPLY_CODES:
        return REPLY_CODES[code](_text(exc), queue if code == NOT_FOUND else subject or queue)
    if code == NOT_ALLOWED:
        return BrokerConnectionError(url, f"not allowed: {_text(exc)} (does the vhost exist?)")
    if isinstance(exc, amqp_exc.ProbableAuthenticationError | amqp_exc.AuthenticationError):
        return BrokerConnectionError(url, f"authentication failed: {_text(exc)}")
    if is_connection_error(exc) or code is not None:
        reason = _text(exc) if exc.args else "connection lost"
        if code is not None:
            reason = f"{reason} (reply code {code})"
        return BrokerConnectionError(url, reason)
    if isinstance(exc, amqp_exc.AMQPError):
        return (
            PublishError(f"AMQP error: {exc!r}")
            if exchange or routing_key
            else BrokerError(f"AMQP error: {exc!r}")
        )
    return BrokerError(f"unexpected error from the AMQP client: {exc!r}")
