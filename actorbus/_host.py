"""Who holds a lease: this host's identity and whether a process on it is still alive.

Leases (an embedded broker's deliveries, an outbox relay's claimed rows) expire after a
timeout so that a process that died holding them loses nothing. On the same host a dead owner
can be told at once, without waiting out the lease: its pid is gone, or now belongs to a
process that started at another time.
"""

from __future__ import annotations

import contextlib
import functools
import os
import socket
from pathlib import Path

__all__ = ("host_key", "owner_alive", "process_started")


@functools.cache
def host_key() -> str:
    """Return this host's identity: name and boot id (a pid means nothing after a reboot)."""
    boot = ""
    with contextlib.suppress(OSError):
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    return f"{socket.gethostname()}/{boot}"


def process_started(pid: int) -> str | None:
    """Return the start time of process ``pid`` ("" if unknown), or ``None`` if it is gone.

    A zombie (killed, not yet reaped) counts as gone. The start time tells a reused pid
    from the process that registered.
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return None
    except OSError:
        stat = ""
    if stat:
        after = stat.rpartition(")")[2].split()
        if after and after[0] in ("Z", "X"):
            return None
        return after[19] if len(after) > 19 else ""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass
    return ""


def owner_alive(host: str, pid: int, started: str) -> bool | None:
    """Return whether the process ``pid`` that started at ``started`` on ``host`` still runs.

    ``None`` when this host cannot tell (another host: only its lease's expiry can).
    """
    if host != host_key():
        return None
    now_started = process_started(pid)
    if now_started is None:
        return False
    return not (started and now_started and now_started != started)
