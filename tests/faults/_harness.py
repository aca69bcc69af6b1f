"""What the fault, cluster and scale-out tests share: service processes and an order workload.

:class:`ServicesProcess` runs ``python -m actorbus run TARGET`` as a subprocess (the contract
command line), collects its JSON log lines, and lets a test wait for one, kill the process,
signal it and start it again on the same data directory and port.

:class:`OrderWorkload` places single-line orders through the HTTP front door with an
``Idempotency-Key`` each, retrying through outages (a retried POST returns the same order),
then checks the outcome from outside: every accepted order settled (``GET /orders/{id}``),
each notification sent exactly once (``GET /notifications?orderId=``), and stock consumed
exactly once per confirmed order (``GET /stock/{sku}``). :class:`Figures` is the report.

Nothing sleeps for a fixed time except the small pauses of polling external state (HTTP
answers) under a deadline.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import httpx
from anyio.abc import ByteReceiveStream, Process, TaskGroup

REPO = Path(__file__).resolve().parents[2]

#: The SKU every workload orders from, and the stock it starts with.
SKU = "ABC"
START_STOCK = 100_000

#: The notifications a confirmed single-line order produces in the choreography, once each.
NOTIFICATION_KINDS = ("order_received", "stock_reserved")


def free_port() -> int:
    """Return a free TCP port of 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def eventually(
    probe: Callable[[], Awaitable[bool]], *, timeout: float, what: str, every: float = 0.1
) -> None:
    """Poll external state until ``probe()`` is true, for at most ``timeout`` seconds.

    Raises:
        AssertionError: Still false after ``timeout`` seconds; the message says what for.
    """
    with anyio.move_on_after(timeout):
        while True:
            if await probe():
                return
            await anyio.sleep(every)
    raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")


class LogLines:
    """Collects a process's stderr lines in the background; lets a test wait for one."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.closed = False
        self._changed = anyio.Event()

    async def drain(self, stream: ByteReceiveStream) -> None:
        """Read ``stream`` to its end, splitting it into lines."""
        buffer = b""
        try:
            async for chunk in stream:
                buffer += chunk
                *complete, buffer = buffer.split(b"\n")
                self.lines.extend(line.decode(errors="replace") for line in complete)
                self._wake()
        except (anyio.ClosedResourceError, anyio.BrokenResourceError):
            pass
        finally:
            self.closed = True
            self._wake()

    def _wake(self) -> None:
        self._changed.set()
        self._changed = anyio.Event()

    def count(self, text: str, start: int = 0) -> int:
        """Return how many lines from index ``start`` on contain ``text``."""
        return sum(text in line for line in self.lines[start:])

    async def wait_for(self, text: str, start: int = 0) -> str:
        """Return the first line from index ``start`` on containing ``text``.

        Raises:
            EOFError: The stream ended without such a line.
        """
        while True:
            changed = self._changed
            for line in self.lines[start:]:
                if text in line:
                    return line
            if self.closed:
                raise EOFError(f"the process ended without logging {text!r}")
            await changed.wait()

    async def wait_count(self, text: str, count: int) -> None:
        """Wait until ``count`` lines contain ``text``.

        Raises:
            EOFError: The stream ended before.
        """
        while True:
            changed = self._changed
            if self.count(text) >= count:
                return
            if self.closed:
                raise EOFError(f"the process ended with fewer than {count} lines of {text!r}")
            await changed.wait()

    def events(self, name: str) -> list[dict[str, Any]]:
        """Return the JSON log records whose ``event`` is ``name``."""
        found = []
        for line in self.lines:
            if f'"{name}"' not in line:
                continue
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict) and record.get("event") == name:
                found.append(record)
        return found

    def tail(self, count: int = 40) -> str:
        """Return the last ``count`` lines, for assertion messages."""
        return "\n".join(self.lines[-count:])


class ServicesProcess:
    """``python -m actorbus run TARGET --broker URL --http 127.0.0.1:PORT --data-dir DIR``.

    Start, stop and restart it on the same port and data directory. The log lines of every
    incarnation accumulate in :attr:`log`.

    Args:
        tg: The task group that drains the process's output.
        target: What to run, e.g. ``"services"`` or ``"services.inventory"``.
        broker: The broker URL.
        data_dir: The data directory (shared by processes of the same service on one host).
        http: Serve HTTP on a free port (``False``: ``--http off``).
        env: Extra environment variables.
        name: Shown in failure messages.
    """

    def __init__(
        self,
        tg: TaskGroup,
        target: str,
        *,
        broker: str,
        data_dir: Path,
        http: bool = True,
        env: Mapping[str, str] | None = None,
        name: str | None = None,
    ) -> None:
        self._tg = tg
        self.target = target
        self.broker = broker
        self.data_dir = data_dir
        self.port = free_port() if http else None
        self.env = {
            **os.environ,
            "PYTHONPATH": str(REPO),
            "ACTORBUS_LOG_FORMAT": "json",
            "ACTORBUS_LOG_LEVEL": "info",
            **(env or {}),
        }
        self.name = name or target
        self.log = LogLines()
        self.process: Process | None = None
        self.starts = 0
        self._mark = 0

    @property
    def base_url(self) -> str:
        """The front door's base URL."""
        if self.port is None:
            raise RuntimeError(f"{self.name} runs without HTTP")
        return f"http://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        """Whether the current incarnation is alive."""
        return self.process is not None and self.process.returncode is None

    @property
    def pid(self) -> int:
        """The pid of the current incarnation."""
        if self.process is None:
            raise RuntimeError(f"{self.name} was never started")
        return self.process.pid

    def command(self) -> list[str]:
        """The command line of the process."""
        http = f"127.0.0.1:{self.port}" if self.port is not None else "off"
        return [
            sys.executable, "-m", "actorbus", "run", self.target, "--broker", self.broker,
            "--http", http, "--data-dir", str(self.data_dir),
        ]  # fmt: skip

    async def start(self, timeout: float = 30.0) -> None:
        """Start (again) and wait for the ``actorbus_ready`` line of this incarnation.

        Raises:
            AssertionError: The process exited or was not ready within ``timeout``.
        """
        if self.running:
            raise RuntimeError(f"{self.name} is already running")
        log = LogLines()
        log.lines = self.log.lines  # one list across incarnations
        self.log = log
        self._mark = len(log.lines)
        self.process = await anyio.open_process(
            self.command(), cwd=REPO, env=self.env, stdout=None, stderr=-1, start_new_session=True
        )
        self.starts += 1
        assert self.process.stderr is not None
        self._tg.start_soon(log.drain, self.process.stderr)
        try:
            with anyio.fail_after(timeout):
                await log.wait_for("actorbus_ready", self._mark)
        except (TimeoutError, EOFError) as exc:
            await self.kill()
            raise AssertionError(f"{self.name} did not get ready: {exc}\n{log.tail()}") from exc

    def send_signal(self, signum: int) -> None:
        """Send ``signum`` to the process."""
        if self.process is not None and self.process.returncode is None:
            os.kill(self.process.pid, signum)

    async def wait(self, timeout: float = 30.0) -> int:
        """Wait for the process to exit; return its exit code.

        Raises:
            TimeoutError: Still running after ``timeout`` seconds.
        """
        if self.process is None:
            raise RuntimeError(f"{self.name} was never started")
        with anyio.fail_after(timeout):
            return await self.process.wait()

    async def kill(self) -> None:
        """SIGKILL the process (a crash) and reap it."""
        if self.running:
            self.send_signal(signal.SIGKILL)
            await self.wait()

    async def terminate(self, timeout: float = 30.0) -> int:
        """SIGTERM the process and return its exit code."""
        self.send_signal(signal.SIGTERM)
        return await self.wait(timeout)

    async def aclose(self) -> None:
        """Stop the process if it still runs (SIGTERM, then SIGKILL after a while).

        Its log is left next to the data directory (``<name>.log``) for a post-mortem.
        """
        if self.running:
            self.send_signal(signal.SIGTERM)
            with anyio.move_on_after(15):
                await self.wait(15)
            await self.kill()
        slug = "".join(c if c.isalnum() else "-" for c in self.name)
        (self.data_dir.parent / f"{slug}.log").write_text("\n".join(self.log.lines) + "\n")

    def since_start(self, text: str) -> int:
        """Count the current incarnation's log lines containing ``text``."""
        return self.log.count(text, self._mark)


@dataclass
class Figures:
    """What a fault case observed, from outside the system.

    Attributes:
        case: The case's name.
        sent: Orders the workload meant to place.
        accepted: Orders answered ``202`` (after retries).
        completed: Accepted orders that reached ``CONFIRMED`` with each notification once.
        lost: Orders not accepted, not settled, or missing a notification.
        duplicated: Notifications sent more than once, plus stock units reserved twice.
        seconds: Wall-clock time of the case.
    """

    case: str
    sent: int = 0
    accepted: int = 0
    completed: int = 0
    lost: int = 0
    duplicated: int = 0
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    def line(self) -> str:
        """Return the one-line summary printed per case."""
        text = (
            f"[{self.case}] sent={self.sent} accepted={self.accepted} "
            f"completed={self.completed} lost={self.lost} duplicated={self.duplicated} "
            f"time={self.seconds:.1f}s"
        )
        return text + (f" ({'; '.join(self.notes)})" if self.notes else "")

    def check(self) -> None:
        """Print the summary; assert that nothing was lost and nothing duplicated."""
        print(self.line())
        assert self.accepted == self.sent, self.line()
        assert self.lost == 0, self.line()
        assert self.duplicated == 0, self.line()
        assert self.completed == self.sent, self.line()


class OrderWorkload:
    """Places and checks single-line orders through one or more front doors.

    Args:
        case: The case's name (prefix of the idempotency keys, and the report's name).
        order_urls: Front doors that serve ``POST /orders`` and ``GET /orders/{id}``; orders
            are spread over them round-robin.
        notification_url: The front door serving ``GET /notifications``.
        stock_url: The front door serving ``/stock/{sku}``.
        retry_for: How long one POST is retried through an outage, in seconds.
    """

    def __init__(
        self,
        case: str,
        order_urls: Sequence[str],
        *,
        notification_url: str | None = None,
        stock_url: str | None = None,
        retry_for: float = 40.0,
    ) -> None:
        self.figures = Figures(case)
        self.order_urls = list(order_urls)
        self.notification_url = notification_url or self.order_urls[0]
        self.stock_url = stock_url or self.order_urls[0]
        self.retry_for = retry_for
        self.orders: dict[str, str] = {}  # idempotency key -> order id
        self._front_door: dict[str, str] = {}  # order id -> the front door that took it
        self._started = time.monotonic()
        self._client = httpx.AsyncClient(timeout=httpx.Timeout(10.0))

    async def __aenter__(self) -> OrderWorkload:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self._client.aclose()

    async def _request(
        self, method: str, url: str, *, ok: tuple[int, ...] = (200,), **kwargs: Any
    ) -> httpx.Response:
        """Send a request, retrying transport errors and 5xx answers for ``retry_for`` s."""
        deadline = time.monotonic() + self.retry_for
        while True:
            try:
                response = await self._client.request(method, url, **kwargs)
                if response.status_code in ok:
                    return response
                if response.status_code < 500:
                    raise AssertionError(f"{method} {url}: {response.status_code} {response.text}")
                problem = f"{response.status_code} {response.text[:200]}"
            except httpx.TransportError as exc:
                problem = repr(exc)
            if time.monotonic() > deadline:
                raise AssertionError(f"{method} {url} kept failing for {self.retry_for:g} s: "
                                     f"{problem}")  # fmt: skip
            await anyio.sleep(0.1)

    def note_fault(self, process: ServicesProcess, what: str) -> None:
        """Note ``what`` struck, and how many accepted orders ``process`` had not confirmed."""
        confirmed = process.log.count('"order_confirmed"')
        self.figures.notes.append(
            f"{what} with {len(self.orders) - confirmed} of {len(self.orders)} orders in flight"
        )

    async def set_stock(self, available: int = START_STOCK) -> None:
        """``PUT /stock/{SKU}``, so that no order of the workload runs out of stock."""
        await self._request("PUT", f"{self.stock_url}/stock/{SKU}", json={"available": available})

    async def stock(self) -> int:
        """``GET /stock/{SKU}``'s ``available``."""
        response = await self._request("GET", f"{self.stock_url}/stock/{SKU}")
        return int(response.json()["available"])

    async def place(self, index: int) -> str:
        """Place order number ``index`` (retried with its idempotency key); return its id."""
        key = f"{self.figures.case}-{index}"
        url = self.order_urls[index % len(self.order_urls)]
        response = await self._request(
            "POST", f"{url}/orders", ok=(202,), json={"sku": SKU, "qty": 1, "customerId": key},
            headers={"Idempotency-Key": key},
        )  # fmt: skip
        order_id = str(response.json()["orderId"])
        self.orders[key] = order_id
        self._front_door[order_id] = url
        return order_id

    async def place_all(
        self,
        count: int,
        *,
        concurrency: int = 4,
        at: Mapping[int, Callable[[], Awaitable[None]]] | None = None,
    ) -> None:
        """Place ``count`` more orders, ``concurrency`` at a time.

        Args:
            count: How many orders.
            concurrency: Orders in flight at once.
            at: Fault injections: ``{n: action}`` runs ``action()`` (in the background) once
                ``n`` orders were accepted.
        """
        first = self.figures.sent  # a second call places new orders, with new keys
        self.figures.sent += count
        pending = iter(range(first, first + count))
        actions = dict(at or {})

        async def worker(tg: TaskGroup) -> None:
            for index in pending:
                await self.place(index)
                accepted = len(self.orders)
                for threshold in [n for n in actions if n <= accepted]:
                    tg.start_soon(actions.pop(threshold))

        async with anyio.create_task_group() as tg:
            for _ in range(concurrency):
                tg.start_soon(worker, tg)
        self.figures.accepted = len(self.orders)

    async def settle(self, timeout: float = 40.0) -> dict[str, str]:
        """Wait until every accepted order is ``CONFIRMED`` or ``REJECTED``, up to ``timeout``.

        Returns:
            Order id → last status seen (``PENDING`` for those that never settled).
        """
        status = dict.fromkeys(self.orders.values(), "PENDING")
        deadline = time.monotonic() + timeout
        while True:
            open_ids = [oid for oid, s in status.items() if s == "PENDING"]
            for oid in open_ids:
                try:
                    response = await self._client.get(f"{self._front_door[oid]}/orders/{oid}")
                except httpx.TransportError:
                    continue
                if response.status_code == 200:
                    status[oid] = str(response.json()["status"])
            if all(s != "PENDING" for s in status.values()) or time.monotonic() > deadline:
                return status
            await anyio.sleep(0.2)

    async def notifications(self, order_id: str) -> Counter[str]:
        """Count the notifications sent for ``order_id`` by kind."""
        response = await self._request(
            "GET", f"{self.notification_url}/notifications", params={"orderId": order_id}
        )
        return Counter(n["kind"] for n in response.json()["notifications"])

    async def verify(self, *, settle_timeout: float = 40.0) -> Figures:
        """Settle, then count what was completed, lost and duplicated; return the figures."""
        figures = self.figures
        status = await self.settle(settle_timeout)
        not_settled = [oid for oid, s in status.items() if s == "PENDING"]
        rejected = [oid for oid, s in status.items() if s == "REJECTED"]
        # Notifications follow the order's confirmation a little later: wait for them too.
        counts: dict[str, Counter[str]] = {}
        deadline = time.monotonic() + 15
        for oid, s in status.items():
            if s != "CONFIRMED":
                continue
            while True:
                counts[oid] = await self.notifications(oid)
                if all(counts[oid][k] for k in NOTIFICATION_KINDS):
                    break
                if time.monotonic() > deadline:
                    break
                await anyio.sleep(0.1)
        missing = sum(1 for c in counts.values() if not all(c[k] for k in NOTIFICATION_KINDS))
        dup_notes = sum(max(0, n - 1) for c in counts.values() for n in c.values())
        confirmed = sum(1 for s in status.values() if s == "CONFIRMED")
        used = START_STOCK - await self.stock()
        dup_stock = used - confirmed
        figures.completed = confirmed - missing
        figures.lost = (figures.sent - figures.accepted) + len(not_settled) + len(rejected)
        figures.lost += missing
        figures.duplicated = dup_notes + max(0, dup_stock)
        if dup_stock < 0:
            figures.notes.append(f"stock short by {-dup_stock}: reservations lost")
            figures.lost += -dup_stock
        if rejected:
            figures.notes.append(f"{len(rejected)} rejected")
        figures.seconds = time.monotonic() - self._started
        return figures
