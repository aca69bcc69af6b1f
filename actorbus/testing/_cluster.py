"""A throwaway three-node RabbitMQ cluster on loopback, for cluster and fault tests.

:class:`RabbitMQCluster` starts several :class:`~actorbus.testing._rabbitmq.RabbitMQNode`
processes (each with its own node name, ports and data directory), gives them one Erlang
cookie, and joins the second and later nodes to the first with ``rabbitmqctl join_cluster``.
Any node may then be stopped, killed, paused or started again without touching any other
RabbitMQ on the machine. Like ``RabbitMQNode`` it is synchronous, so it can be used from
session fixtures and scripts alike; call it through ``anyio.to_thread.run_sync`` from async
code.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from ._process import ServerProcess
from ._rabbitmq import RabbitMQNode

__all__ = ("RabbitMQCluster",)


class RabbitMQCluster(ServerProcess):
    """A RabbitMQ cluster of ``size`` loopback nodes sharing one Erlang cookie.

    Use it as a context manager (or call :meth:`start` and :meth:`close`)::

        with RabbitMQCluster(size=3) as cluster:
            url = cluster.url                  # amqp://guest:guest@127.0.0.1:p1,127.0.0.1:p2,…/
            cluster.add_vhost("qq", default_queue_type="quorum")
            cluster.nodes[1].stop()            # the clients fail over to another address

    Args:
        size: Number of nodes (at least 1; 3 for quorum queues that survive one node down).
        name: Prefix of the Erlang node names.
        boot_timeout: Seconds each node may take to accept AMQP connections.
        base_dir: Where to put the nodes' directories; a fresh temporary directory if ``None``.

    Raises:
        RabbitMQNotInstalledError: ``rabbitmq-server`` is not installed.
        ValueError: ``size`` is below 1.
    """

    def __init__(
        self,
        size: int = 3,
        *,
        name: str = "actorbus-cluster",
        boot_timeout: float = 90.0,
        base_dir: str | os.PathLike[str] | None = None,
    ) -> None:
        if size < 1:
            raise ValueError(f"a cluster needs at least one node, got size={size!r}")
        self._owns_dir = base_dir is None
        self.base_dir = Path(base_dir or tempfile.mkdtemp(prefix="actorbus-cluster-"))
        self.base_dir.mkdir(parents=True, exist_ok=True)
        # mkdtemp makes it 0700; the nodes may run as the ``rabbitmq`` user (see RabbitMQNode).
        self.base_dir.chmod(0o755)
        self.cookie = secrets.token_hex(20).upper()
        self.nodes: list[RabbitMQNode] = []
        for index in range(size):
            node = RabbitMQNode(
                name=f"{name}{index + 1}",
                boot_timeout=boot_timeout,
                base_dir=self.base_dir / f"node{index + 1}",
            )
            self._write_cookie(node)
            self.nodes.append(node)
        self._joined = False

    # ------------------------------------------------------------------ properties

    @property
    def url(self) -> str:
        """One ``amqp://`` URL naming every node, in node order (for client failover)."""
        return self.vhost_url("/")

    def vhost_url(self, vhost: str, **query: str | int) -> str:
        """Return the failover URL of every node for ``vhost``, with optional query options.

        Example: ``cluster.vhost_url("qq", heartbeat=2)`` gives
        ``amqp://guest:guest@127.0.0.1:p1,127.0.0.1:p2,127.0.0.1:p3/qq?heartbeat=2``.
        """
        hosts = ",".join(f"127.0.0.1:{node.port}" for node in self.nodes)
        path = "" if vhost == "/" else vhost
        options = "&".join(f"{key}={value}" for key, value in query.items())
        return f"amqp://guest:guest@{hosts}/{path}" + (f"?{options}" if options else "")

    @property
    def running_nodes(self) -> list[RabbitMQNode]:
        """The nodes whose server process is alive."""
        return [node for node in self.nodes if node.running]

    # ------------------------------------------------------------------ setup

    def _write_cookie(self, node: RabbitMQNode) -> None:
        # The node's HOME is its own directory, so the cookie file there is the one that
        # both the server and rabbitmqctl read; the same cookie lets the nodes talk.
        cookie = node.base_dir / "home" / ".erlang.cookie"
        cookie.write_text(self.cookie)
        if os.geteuid() == 0:
            shutil.chown(cookie, "rabbitmq", "rabbitmq")
        cookie.chmod(0o400)

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Boot every node (in parallel) and join the others to the first one.

        Starting an already started cluster starts the nodes that are down again (they
        rejoin by themselves: their membership is on disk).

        Raises:
            TimeoutError: A node did not become ready in time.
            subprocess.CalledProcessError: ``rabbitmqctl join_cluster`` failed.
        """
        stopped = [node for node in self.nodes if not node.running]
        with ThreadPoolExecutor(max_workers=len(self.nodes)) as pool:
            # A rejoining node waits for its peers while booting: start them together.
            for future in [pool.submit(node.start) for node in stopped]:
                future.result()
        if self._joined:
            return
        seed = self.nodes[0]
        for node in self.nodes[1:]:
            node.ctl("stop_app")
            node.ctl("join_cluster", seed.nodename)
            node.ctl("start_app")
            node.wait_ready()
        self._joined = True
        self.wait_for_members(len(self.nodes))

    def wait_for_members(self, count: int, timeout: float = 30.0) -> None:
        """Block until a running node reports ``count`` running cluster members.

        Raises:
            TimeoutError: Not so many members after ``timeout`` seconds.
        """
        deadline = time.monotonic() + timeout
        while True:
            members = self.running_members()
            if len(members) >= count:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"cluster has {len(members)} running members {members!r}, wanted {count}"
                )
            time.sleep(0.2)

    def running_members(self) -> list[str]:
        """Return the node names that a running node sees as running cluster members."""
        for node in self.running_nodes:
            try:
                output = node.ctl("eval", "rabbit_nodes:all_running().", timeout=15)
            except (subprocess.CalledProcessError, subprocess.TimeoutExpired):
                continue
            text = output.strip().strip("[]")
            return [item.strip().strip("'") for item in text.split(",") if item.strip()]
        return []

    def pause(self, node: RabbitMQNode) -> None:
        """Freeze ``node``'s Erlang VM with SIGSTOP: its sockets stay open but go silent.

        Clients notice only through missed heartbeats; :meth:`resume` thaws it.
        """
        os.kill(self._beam_pid(node), signal.SIGSTOP)

    def resume(self, node: RabbitMQNode) -> None:
        """Thaw a node frozen by :meth:`pause` (SIGCONT)."""
        os.kill(self._beam_pid(node), signal.SIGCONT)

    @staticmethod
    def _beam_pid(node: RabbitMQNode) -> int:
        # RABBITMQ_PID_FILE of the node: the pid of its Erlang VM (beam), written at boot.
        return int((node.base_dir / "rabbitmq.pid").read_text().strip())

    def ctl(self, *args: str, timeout: float = 60.0) -> str:
        """Run ``rabbitmqctl`` against the first running node; return its standard output.

        Raises:
            RuntimeError: No node is running.
            subprocess.CalledProcessError: rabbitmqctl failed.
        """
        for node in self.nodes:
            if node.running:
                return node.ctl(*args, timeout=timeout)
        raise RuntimeError("no node of the cluster is running")

    def add_vhost(self, vhost: str, *, default_queue_type: str | None = None) -> None:
        """Create ``vhost`` and give ``guest`` every permission on it.

        Args:
            vhost: The virtual host's name.
            default_queue_type: ``quorum`` makes every queue declared there without an
                ``x-queue-type`` argument a quorum queue (RabbitMQ 3.10+).
        """
        extra = ["--default-queue-type", default_queue_type] if default_queue_type else []
        self.ctl("add_vhost", vhost, *extra)
        self.ctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")

    def list_queues(self, vhost: str = "/", *columns: str) -> list[list[str]]:
        """Return ``rabbitmqctl list_queues`` rows (name plus ``columns``) of ``vhost``."""
        output = self.ctl(
            "list_queues", "-p", vhost, "--quiet", "--no-table-headers", "name", *columns
        )
        return [line.split("\t") for line in output.splitlines() if line.strip()]

    def close(self) -> None:
        """Stop every node and delete the cluster's directories."""
        for node in self.nodes:
            node.close()
        if self._owns_dir:
            shutil.rmtree(self.base_dir, ignore_errors=True)

    def __repr__(self) -> str:
        names = ", ".join(repr(node.nodename) for node in self.nodes)
        return f"RabbitMQCluster([{names}], running={len(self.running_nodes)})"
