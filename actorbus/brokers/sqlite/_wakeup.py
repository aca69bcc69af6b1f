"""Cross-process wake-up hints: a Unix datagram socket per connection of a broker file.

SQLite tells no other process that a row arrived (``update_hook`` is per connection), and a
poll fast enough to feel instant would burn CPU in every idle process. So every connection
binds a datagram socket, and a connection that committed ready messages sends each other
connection of the file one datagram naming the queues (``*`` for "look at all of them").
A hint is only a hint: it may be lost (a full socket buffer, a peer that just started),
which the polling backstop (``poll``, 1 s by default) covers.

On Linux the sockets live in the abstract namespace (named after a hash of the file's real
path): no file to clean up after a ``kill -9``, no 108-byte path limit. Elsewhere they are
files in ``<broker file>.wake/``; if that path would be too long, hints are off and the
backstop poll alone wakes consumers.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import socket
import sys
from collections.abc import Iterable
from pathlib import Path

import anyio

from ..._log import get_logger

__all__ = ("Hints",)

_log = get_logger("actorbus.brokers", broker="sqlite")

#: Datagram naming every queue: the receiver re-checks all the queues it consumes.
ALL = "*"
_MAX_PAYLOAD = 8192


class Hints:
    """The wake-up socket of one connection, and the addresses of the others.

    Args:
        path: The broker file.
    """

    def __init__(self, path: Path) -> None:
        real = os.path.realpath(path)
        self._abstract = sys.platform.startswith("linux")
        self._prefix = hashlib.sha1(real.encode()).hexdigest()[:16]
        self._dir = Path(f"{real}.wake")
        self._sock: socket.socket | None = None
        self._bound: str | None = None

    @property
    def enabled(self) -> bool:
        """Whether this connection receives hints (else it relies on the backstop poll)."""
        return self._sock is not None

    def address(self, owner: int) -> str | None:
        """Return the socket address of connection ``owner`` (``None``: cannot have one)."""
        if self._abstract:
            return f"\0actorbus-{self._prefix}-{owner}"
        name = str(self._dir / f"{owner}.sock")
        return name if len(name.encode()) < 100 else None

    def open(self, owner: int) -> None:
        """Bind this connection's socket (blocking only on a file system: call in a thread)."""
        address = self.address(owner)
        if address is None:
            _log.info("wakeup_hints_off", reason="socket path too long", directory=str(self._dir))
            return
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            if not self._abstract:
                self._dir.mkdir(exist_ok=True)
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(address)
            sock.bind(address)
            sock.setblocking(False)
        except OSError as exc:
            sock.close()
            _log.warning("wakeup_hints_off", reason=str(exc))
            return
        self._sock = sock
        self._bound = address

    def send(self, peers: Iterable[int], queues: Iterable[str]) -> None:
        """Tell each connection in ``peers`` that ``queues`` have ready messages; never blocks."""
        sock = self._sock
        if sock is None:
            return
        payload = "\n".join(queues).encode()
        if len(payload) > _MAX_PAYLOAD:
            payload = ALL.encode()
        for peer in peers:
            address = self.address(peer)
            if address is None:
                continue
            # Refused or missing: the peer is gone (it is reclaimed by its lease). Would
            # block: its buffer is full of hints it has yet to read, so it will look anyway.
            with contextlib.suppress(OSError):
                sock.sendto(payload, address)

    async def receive(self) -> set[str]:
        """Wait for hints; return the queues they name (``{"*"}`` for all)."""
        sock = self._sock
        if sock is None:
            await anyio.sleep_forever()
            return set()  # pragma: no cover - never reached
        await anyio.wait_readable(sock)
        queues: set[str] = set()
        while True:
            try:
                data = sock.recv(65536)
            except (BlockingIOError, InterruptedError):
                return queues
            except OSError:
                return queues
            queues.update(data.decode(errors="replace").split("\n"))

    def close(self) -> None:
        """Close the socket (and remove its file, off Linux)."""
        sock, self._sock = self._sock, None
        if sock is None:
            return
        sock.close()
        if not self._abstract and self._bound is not None:
            with contextlib.suppress(OSError):
                os.unlink(self._bound)
