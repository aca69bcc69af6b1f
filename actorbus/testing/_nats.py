"""Throwaway ``nats-server -js`` processes (one node, or a three-node cluster) for tests.

:class:`NatsServer` starts ``nats-server`` with JetStream on free ports of 127.0.0.1 only
(``-a 127.0.0.1``), its store under a temporary directory, so that a test may stop, kill or
restart it without touching the machine's own NATS (often on 127.0.0.1:4222).
:class:`NatsCluster` starts three such nodes routed to each other (JetStream clustering, R3
streams). Synchronous (``subprocess``) like :class:`~actorbus.testing.RabbitMQNode`, so that
session fixtures and benchmark scripts can use them alike.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

from ._process import ServerProcess

__all__ = ("NatsCluster", "NatsNotInstalledError", "NatsServer", "find_nats_server")

_DEBIAN_BINARY = Path("/usr/sbin/nats-server")


class NatsNotInstalledError(RuntimeError):
    """``nats-server`` was not found on this machine."""

    def __init__(self) -> None:
        super().__init__(
            "nats-server is not installed; install it with: apt-get install nats-server "
            "(Debian puts it in /usr/sbin), or point ACTORBUS_TEST_NATS_URL at a running "
            "nats-server -js"
        )


def find_nats_server() -> Path | None:
    """Return the path of ``nats-server``, or ``None`` if it is not installed."""
    found = shutil.which("nats-server")
    if found is not None:
        return Path(found)
    return _DEBIAN_BINARY if _DEBIAN_BINARY.exists() else None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class NatsServer(ServerProcess):
    """A ``nats-server -js`` of its own on free loopback ports.

    Use it as a context manager (or call :meth:`start` and :meth:`close`)::

        with NatsServer() as server:
            url = server.url          # nats://127.0.0.1:<port>
            server.stop(); server.start()   # file-stored streams and consumers survive

    Args:
        name: The server's name (JetStream needs one per cluster node).
        base_dir: Where to put the store and the log; a fresh temporary directory if ``None``.
        cluster_port: This node's route port, for :class:`NatsCluster`.
        routes: The route ports of the other nodes of the cluster.
        boot_timeout: Seconds to wait until JetStream answers ``/healthz``.

    Raises:
        NatsNotInstalledError: ``nats-server`` is not installed.
    """

    def __init__(
        self,
        name: str = "actorbus-test",
        *,
        base_dir: str | os.PathLike[str] | None = None,
        cluster_port: int | None = None,
        routes: tuple[int, ...] = (),
        boot_timeout: float = 30.0,
    ) -> None:
        binary = find_nats_server()
        if binary is None:
            raise NatsNotInstalledError()
        self._binary = binary
        self.port = _free_port()
        self.monitor_port = _free_port()
        self.name = name
        self.cluster_port = cluster_port
        self.routes = routes
        self.boot_timeout = boot_timeout
        self._owns_dir = base_dir is None
        self.base_dir = Path(base_dir or tempfile.mkdtemp(prefix="actorbus-nats-"))
        self._process: subprocess.Popen[bytes] | None = None
        self._config = self._write_config()

    @property
    def url(self) -> str:
        """The ``nats://`` URL of this server."""
        return f"nats://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        """Whether the server process is alive."""
        return self._process is not None and self._process.poll() is None

    def _write_config(self) -> Path:
        store = self.base_dir / "jetstream"
        store.mkdir(parents=True, exist_ok=True)
        lines = [
            f"server_name: {json.dumps(self.name)}",
            "host: 127.0.0.1",
            f"port: {self.port}",
            "http: " + json.dumps(f"127.0.0.1:{self.monitor_port}"),
            f"jetstream {{ store_dir: {json.dumps(str(store))} }}",
        ]
        if self.cluster_port is not None:
            routes = ", ".join(json.dumps(f"nats-route://127.0.0.1:{p}") for p in self.routes)
            lines.append(
                "cluster { name: actorbus-test, "
                f"listen: {json.dumps(f'127.0.0.1:{self.cluster_port}')}, routes: [{routes}] }}"
            )
        path = self.base_dir / "nats.conf"
        path.write_text("\n".join(lines) + "\n")
        return path

    def start(self) -> None:
        """Start the server (again) and wait until JetStream is healthy.

        Raises:
            TimeoutError: Not healthy within ``boot_timeout``; the log file is named.
            RuntimeError: The process exited during boot.
        """
        self.start_process()
        self.wait_ready()

    def start_process(self) -> None:
        """Start the process without waiting (the nodes of a cluster wait for each other)."""
        if self.running:
            return
        log = (self.base_dir / "nats.log").open("ab")
        try:
            self._process = subprocess.Popen(
                [str(self._binary), "-c", str(self._config), "-a", "127.0.0.1"],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                cwd=str(self.base_dir),
            )
        finally:
            log.close()

    def wait_ready(self, timeout: float | None = None, *, jetstream: bool = True) -> None:
        """Block until the server answers ``/healthz`` (JetStream included by default).

        Raises:
            TimeoutError: Not ready within ``timeout`` (default ``boot_timeout``) seconds.
            RuntimeError: The process exited.
        """
        deadline = time.monotonic() + (self.boot_timeout if timeout is None else timeout)
        while True:
            if self._process is not None and self._process.poll() is not None:
                raise RuntimeError(
                    f"nats-server exited with {self._process.returncode} during boot; "
                    f"see {self.base_dir / 'nats.log'}"
                )
            if self._probe(jetstream):
                return
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"nats-server {self.name!r} not ready on port {self.port} after "
                    f"{self.boot_timeout:g} s; see {self.base_dir / 'nats.log'}"
                )
            time.sleep(0.05)

    def _probe(self, jetstream: bool) -> bool:
        path = "/healthz" if jetstream else "/healthz?js-enabled-only=true"
        try:
            with urllib.request.urlopen(
                f"http://127.0.0.1:{self.monitor_port}{path}", timeout=1.0
            ) as response:
                return bool(response.status == 200)
        except OSError:
            return False

    def stop(self, timeout: float = 30.0) -> None:
        """Stop the server gracefully (SIGTERM) and wait for it to exit."""
        self._signal(signal.SIGTERM, timeout)

    def kill(self) -> None:
        """Kill the server (SIGKILL): what a crash looks like to the clients."""
        self._signal(signal.SIGKILL, 10.0)

    def _signal(self, sig: signal.Signals, timeout: float) -> None:
        process = self._process
        if process is None or process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, sig)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(10.0)

    def close(self) -> None:
        """Stop the server and delete its directory (if this object created it)."""
        self.stop()
        if self._owns_dir:
            shutil.rmtree(self.base_dir, ignore_errors=True)


class NatsCluster(ServerProcess):
    """Three ``nats-server -js`` nodes routed to each other on loopback ports.

    ``cluster.url`` lists every node (``nats://127.0.0.1:p1,127.0.0.1:p2,127.0.0.1:p3``), so
    a client fails over to the others when one is stopped; declare streams with
    ``?replicas=3`` to survive the loss of a node.

    Args:
        size: Number of nodes (3 tolerates the loss of one).
        boot_timeout: Seconds each node may take to become healthy.
    """

    def __init__(self, size: int = 3, *, boot_timeout: float = 60.0) -> None:
        self.base_dir = Path(tempfile.mkdtemp(prefix="actorbus-nats-cluster-"))
        ports = [_free_port() for _ in range(size)]
        self.nodes = [
            NatsServer(
                f"n{i + 1}",
                base_dir=self.base_dir / f"n{i + 1}",
                cluster_port=port,
                routes=tuple(p for p in ports if p != port),
                boot_timeout=boot_timeout,
            )
            for i, port in enumerate(ports)
        ]

    @property
    def url(self) -> str:
        """A URL naming every node, for a client that fails over between them."""
        return "nats://" + ",".join(f"127.0.0.1:{node.port}" for node in self.nodes)

    def start(self) -> None:
        """Start every node, then wait until each reports JetStream healthy."""
        for node in self.nodes:
            if not node.running:
                node.start_process()
        for node in self.nodes:
            node.wait_ready()

    def close(self) -> None:
        """Stop every node and delete the cluster's directory."""
        for node in self.nodes:
            node.stop()
        shutil.rmtree(self.base_dir, ignore_errors=True)
