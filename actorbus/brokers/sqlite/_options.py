"""The ``sqlite://`` broker URL, its options, and the translation of SQLite's errors.

``sqlite:///relative/path/broker.sqlite3`` or ``sqlite:////absolute/path/broker.sqlite3``
(as SQLAlchemy and the SQLite store spell them). Query options:

- ``synchronous=FULL`` (default) or ``NORMAL``: see :mod:`actorbus.brokers.sqlite`.
- ``lease`` (seconds, default 10): how long a connection's deliveries stay leased to it
  without a heartbeat; a connection of a process that is gone on this host is reclaimed at
  once, any other (a hung process, another host's NFS client) when its lease runs out.
- ``poll`` (seconds, default 1): the backstop poll for lost wake-up hints.
- ``busy_timeout`` (milliseconds, default 10000): how long a transaction waits for the write
  lock another process holds before it fails.
- ``max_size_mb``: refuse to grow the file beyond this (SQLite's ``max_page_count``); a full
  broker then fails publishes with a clear error instead of filling the disk.
- ``acks=async`` (default) or ``confirmed``: whether ``Delivery.ack()`` returns at once (the
  ack is committed with the connection's next group commit, as a RabbitMQ ``basic.ack`` is
  sent without a confirm) or only once its commit is done.
"""

from __future__ import annotations

import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qsl

from ...exceptions import BrokerConnectionError, BrokerError, ConfigurationError
from .._url import redact, scheme_of

__all__ = ("SqliteOptions", "parse_sqlite_url", "storage_error")

_KNOWN = ("synchronous", "lease", "poll", "busy_timeout", "max_size_mb", "acks")


@dataclass(frozen=True, slots=True)
class SqliteOptions:
    """What a ``sqlite://`` URL says.

    Attributes:
        url: The URL as given, redacted (a file URL holds no secret, but one rule for all).
        path: The database file.
        synchronous: ``FULL`` or ``NORMAL``.
        lease: Seconds a connection's deliveries stay leased without a heartbeat.
        poll: Seconds between backstop polls.
        busy_timeout: Milliseconds to wait for another process's write lock.
        max_size_mb: Cap on the file's size, or ``None``.
        confirm_acks: ``acks=confirmed``: ``ack()`` returns once its commit is done, so an
            ack that returned is never redelivered, even after ``kill -9``. Otherwise
            (``acks=async``) ``ack()`` returns at once and the ack rides the next group
            commit: a consumer does not wait one transaction per message, and a crash
            before that commit redelivers the message (at-least-once).
    """

    url: str
    path: Path
    synchronous: str = "FULL"
    lease: float = 10.0
    poll: float = 1.0
    busy_timeout: int = 10_000
    max_size_mb: float | None = None
    confirm_acks: bool = False


def _number(url: str, key: str, raw: str, *, low: float) -> float:
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if not value >= low:  # also rejects NaN
        raise ConfigurationError(
            f"sqlite broker URL {url!r}: {key}={raw!r} must be a number >= {low:g}"
        )
    return value


def parse_sqlite_url(url: str) -> SqliteOptions:
    """Parse a ``sqlite://`` broker URL.

    Raises:
        ConfigurationError: Not a ``sqlite:///…`` URL, no file named, or a bad option; the
            message names the URL and what to write instead.
    """
    shown = redact(url)
    if scheme_of(url) != "sqlite":
        raise ConfigurationError(
            f"SqliteBroker needs a 'sqlite:///path' URL, got {shown!r}; "
            "use actorbus.brokers.connect(url) to pick the broker by scheme"
        )
    rest = url.partition("://")[2]
    path_part, _, query = rest.partition("?")
    if not path_part.startswith("/") or len(path_part) < 2 or path_part.endswith("/"):
        raise ConfigurationError(
            f"sqlite broker URL {shown!r} names no file: write sqlite:///relative/broker.sqlite3 "
            "(relative to the working directory) or sqlite:////absolute/broker.sqlite3"
        )
    path = Path(path_part[1:])
    params = dict(parse_qsl(query, keep_blank_values=True))
    unknown = sorted(set(params) - set(_KNOWN))
    if unknown:
        raise ConfigurationError(
            f"sqlite broker URL {shown!r}: unknown option(s) {', '.join(unknown)}; "
            f"known: {', '.join(_KNOWN)}"
        )
    synchronous = params.get("synchronous", "FULL").upper()
    if synchronous not in ("FULL", "NORMAL"):
        raise ConfigurationError(
            f"sqlite broker URL {shown!r}: synchronous={params['synchronous']!r} is not "
            "supported; use FULL (a confirmed publish survives a power loss) or NORMAL (it "
            "survives kill -9, but the last commits before a power loss may be lost)"
        )
    lease = _number(shown, "lease", params.get("lease", "10"), low=1.0)
    poll = _number(shown, "poll", params.get("poll", "1"), low=0.01)
    busy = _number(shown, "busy_timeout", params.get("busy_timeout", "10000"), low=0)
    max_size = params.get("max_size_mb")
    acks = params.get("acks", "async").lower()
    if acks not in ("async", "confirmed"):
        raise ConfigurationError(
            f"sqlite broker URL {shown!r}: acks={params['acks']!r} is not supported; use "
            "async (ack() returns at once, the ack is committed with the next group commit) "
            "or confirmed (ack() returns once its commit is done)"
        )
    return SqliteOptions(
        url=shown,
        path=path,
        synchronous=synchronous,
        lease=lease,
        poll=poll,
        busy_timeout=int(busy),
        max_size_mb=_number(shown, "max_size_mb", max_size, low=0.1) if max_size else None,
        confirm_acks=acks == "confirmed",
    )


def storage_error(path: Path, doing: str, exc: BaseException) -> BrokerError:
    """Translate a failure of the broker file into a :class:`BrokerError` that names the path.

    Args:
        path: The database file.
        doing: What failed, e.g. ``"opening"`` or ``"committing 12 operations"``.
        exc: The :mod:`sqlite3` or OS error.
    """
    text = str(exc)
    low = text.lower()
    where = str(path.resolve() if not path.is_absolute() else path)
    if "full" in low:
        remedy = (
            "the disk (or the file's max_size_mb cap) is full: free space, or raise "
            "max_size_mb; nothing of this transaction was stored"
        )
    elif (
        "readonly" in low
        or "read-only" in low
        or isinstance(exc, PermissionError)
        or _read_only(path)
    ):
        remedy = (
            "the file or its directory is read-only: make the directory writable (SQLite "
            "also writes -wal and -shm files beside it) or choose another --data-dir"
        )
    elif "unable to open" in low or isinstance(exc, FileNotFoundError | NotADirectoryError):
        remedy = (
            "the file cannot be created or opened: check that its directory exists and is "
            "writable, or choose another --data-dir"
        )
    elif "locked" in low or "busy" in low:
        remedy = (
            "another process held the write lock longer than busy_timeout: is a process "
            "hung while holding the file? raise busy_timeout if the disk is very slow"
        )
    elif "not a database" in low or "malformed" in low:
        remedy = "the file is not an actorbus broker database or is damaged: move it aside"
    else:
        remedy = "see the SQLite error"
    message = f"{doing} {where!r} failed: {type(exc).__name__}: {text}; {remedy}"
    if doing == "opening":
        return BrokerConnectionError(f"sqlite:///{where}", message)
    return BrokerError(f"sqlite broker file: {message}")


def _read_only(path: Path) -> bool:
    """Whether the file's directory (or its nearest existing ancestor) cannot be written."""
    where = path.absolute().parent
    while not where.exists() and where != where.parent:
        where = where.parent
    try:
        read_only_fs = bool(os.statvfs(where).f_flag & os.ST_RDONLY)
    except OSError:
        read_only_fs = False
    return read_only_fs or not os.access(where, os.W_OK)


def is_storage_error(exc: BaseException) -> bool:
    """Whether ``exc`` is an error of the file (not of our SQL)."""
    return isinstance(exc, sqlite3.Error | OSError)
