"""A throwaway RabbitMQ node for tests and benchmarks.

:class:`RabbitMQNode` starts ``rabbitmq-server`` as a separate node (own node name, own
data, log and config directories under a temporary directory) listening on free loopback
ports only, so that a test may stop, kill or restart it without touching any other RabbitMQ
running on the machine. It is synchronous (``subprocess``) so that it can be used from
session fixtures and from benchmark scripts alike.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from ._process import ServerProcess

__all__ = ("RabbitMQNode", "RabbitMQNotInstalledError", "find_rabbitmq_server")

# Debian installs the real scripts here; the wrappers in /usr/sbin insist on su-ing to the
# ``rabbitmq`` user through a shell, which would hide the server's pid from us.
_DEBIAN_SCRIPTS = Path("/usr/lib/rabbitmq/bin")
_AMQP_HEADER = b"AMQP\x00\x00\x09\x01"


class RabbitMQNotInstalledError(RuntimeError):
    """``rabbitmq-server`` was not found on this machine."""

    def __init__(self) -> None:
        super().__init__(
            "rabbitmq-server is not installed; install it with: apt-get install rabbitmq-server "
            "(or point ACTORBUS_TEST_AMQP_URL at a running RabbitMQ)"
        )


def find_rabbitmq_server() -> Path | None:
    """Return the directory holding ``rabbitmq-server`` and ``rabbitmqctl``, or ``None``."""
    if (_DEBIAN_SCRIPTS / "rabbitmq-server").exists():
        return _DEBIAN_SCRIPTS
    found = shutil.which("rabbitmq-server")
    if found is None:
        return None
    return Path(found).resolve().parent


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class RabbitMQNode(ServerProcess):
    """A RabbitMQ node of its own, on free ports of 127.0.0.1, for fault-injection tests.

    Use it as a context manager (or call :meth:`start` and :meth:`close`)::

        with RabbitMQNode() as node:
            url = node.url            # amqp://guest:guest@127.0.0.1:<port>/
            node.close_all_connections()
            node.stop(); node.start() # durable queues and messages survive

    Args:
        name: Prefix of the Erlang node name; a free port number is appended.
        tls: Optional ``(cafile, certfile, keyfile)`` of a server certificate; adds a TLS
            listener on :attr:`tls_port` that verifies client certificates when given.
        boot_timeout: Seconds to wait for the node to accept AMQP connections.
        base_dir: Where to put the node's directories; a fresh temporary directory if ``None``.

    Raises:
        RabbitMQNotInstalledError: ``rabbitmq-server`` is not installed.
    """

    def __init__(
        self,
        name: str = "actorbus-test",
        *,
        tls: tuple[str, str, str] | None = None,
        boot_timeout: float = 60.0,
        base_dir: str | os.PathLike[str] | None = None,
    ) -> None:
        scripts = find_rabbitmq_server()
        if scripts is None:
            raise RabbitMQNotInstalledError()
        self._scripts = scripts
        self.port = _free_port()
        self.dist_port = _free_port()
        self.tls_port = _free_port() if tls is not None else None
        self.nodename = f"{name}-{self.port}@localhost"
        self.boot_timeout = boot_timeout
        self._owns_dir = base_dir is None
        self.base_dir = Path(base_dir or tempfile.mkdtemp(prefix="actorbus-rabbitmq-"))
        self._tls = tls
        self._process: subprocess.Popen[bytes] | None = None
        self._as_rabbitmq = os.geteuid() == 0
        self._env = self._prepare()

    # ------------------------------------------------------------------ properties

    @property
    def url(self) -> str:
        """The ``amqp://`` URL of the node (guest/guest, default vhost)."""
        return f"amqp://guest:guest@127.0.0.1:{self.port}/"

    @property
    def tls_url(self) -> str:
        """The ``amqps://`` URL of the node's TLS listener (without certificate options).

        Raises:
            RuntimeError: The node was created without ``tls``.
        """
        if self.tls_port is None:
            raise RuntimeError("this node has no TLS listener; pass tls=(ca, cert, key)")
        return f"amqps://guest:guest@localhost:{self.tls_port}/"

    @property
    def running(self) -> bool:
        """Whether the server process is alive."""
        return self._process is not None and self._process.poll() is None

    # ------------------------------------------------------------------ setup

    def _prepare(self) -> dict[str, str]:
        base = self.base_dir
        for sub in ("mnesia", "log", "home"):
            (base / sub).mkdir(parents=True, exist_ok=True)
        lines = [
            f"listeners.tcp.1 = 127.0.0.1:{self.port}",
            "loopback_users = none",
            "log.console = false",
            "log.file.level = info",
        ]
        if self._tls is not None:
            # Copied next to the node's data, so that the rabbitmq user can read them.
            tls_dir = base / "tls"
            tls_dir.mkdir(exist_ok=True)
            ca, cert, key = (
                str(shutil.copy(src, tls_dir / name))
                for src, name in zip(self._tls, ("ca.pem", "cert.pem", "key.pem"), strict=True)
            )
            lines += [
                f"listeners.ssl.1 = 127.0.0.1:{self.tls_port}",
                f"ssl_options.cacertfile = {ca}",
                f"ssl_options.certfile = {cert}",
                f"ssl_options.keyfile = {key}",
                "ssl_options.verify = verify_peer",
                "ssl_options.fail_if_no_peer_cert = false",
            ]
        (base / "rabbitmq.conf").write_text("\n".join(lines) + "\n")
        (base / "enabled_plugins").write_text("[].\n")
        (base / "rabbitmq-env.conf").write_text("")
        if self._as_rabbitmq:
            for path in [base, *base.rglob("*")]:
                shutil.chown(path, "rabbitmq", "rabbitmq")
        return {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(base / "home"),  # its own Erlang cookie
            "LANG": "C.UTF-8",
            "RABBITMQ_NODENAME": self.nodename,
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_MNESIA_BASE": str(base / "mnesia"),
            "RABBITMQ_LOG_BASE": str(base / "log"),
            "RABBITMQ_PID_FILE": str(base / "rabbitmq.pid"),
            "RABBITMQ_CONFIG_FILE": str(base / "rabbitmq.conf"),
            "RABBITMQ_ADVANCED_CONFIG_FILE": str(base / "advanced.config"),
            "RABBITMQ_CONF_ENV_FILE": str(base / "rabbitmq-env.conf"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(base / "enabled_plugins"),
            "ERL_EPMD_ADDRESS": "127.0.0.1",
            "ERL_FLAGS": "-kernel inet_dist_use_interface {127,0,0,1}",
        }

    def _user(self) -> str | None:
        # Debian's rabbitmq-server refuses to run as root: run as its ``rabbitmq`` user.
        return "rabbitmq" if self._as_rabbitmq else None

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Start the node (again) and wait until it accepts AMQP connections.

        Raises:
            TimeoutError: It did not become ready within ``boot_timeout``; the node's log
                directory is named in the message.
            RuntimeError: The server process exited during boot.
        """
        if self.running:
            return
        log = (self.base_dir / "log" / "console.out").open("ab")
        try:
            self._process = subprocess.Popen(
                [str(self._scripts / "rabbitmq-server")],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                env=self._env,
                cwd=str(self.base_dir),
                user=self._user(),
                group=self._user(),
                extra_groups=[] if self._as_rabbitmq else None,
            )
        finally:
            log.close()
        self.wait_ready()

    def wait_ready(self, timeout: float | None = None) -> None:
        """Block until the node answers the AMQP protocol header on its port.

        Raises:
            TimeoutError: Not ready within ``timeout`` (default ``boot_timeout``) seconds.
            RuntimeError: The server process exited.
        """
        deadline = time.monotonic() + (self.boot_timeout if timeout is None else timeout)
        while True:
            if self._process is not None and self._process.poll() is not None:
                raise RuntimeError(
                    f"rabbitmq-server exited with {self._process.returncode} during boot; "
                    f"see the logs in {self.base_dir / 'log'}"
                )
            if self._probe():
                return
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"RabbitMQ node {self.nodename} not ready on port {self.port} after "
                    f"{self.boot_timeout:g} s; see the logs in {self.base_dir / 'log'}"
                )
            time.sleep(0.1)

    def _probe(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1.0) as sock:
                sock.sendall(_AMQP_HEADER)
                first = sock.recv(1)
                return first == b"\x01"  # a method frame: Connection.Start
        except OSError:
            return False

    def stop(self, timeout: float = 60.0) -> None:
        """Stop the node gracefully (SIGTERM) and wait for the process to exit."""
        process = self._process
        if process is None or process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self) -> None:
        """Kill the node at once (SIGKILL), as a crash would."""
        process = self._process
        if process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()

    def restart(self) -> None:
        """Stop the node gracefully and start it again on the same ports and data."""
        self.stop()
        self.start()

    def ctl(self, *args: str, timeout: float = 60.0) -> str:
        """Run ``rabbitmqctl -n <node> <args>`` and return its standard output.

        Raises:
            subprocess.CalledProcessError: rabbitmqctl failed.
        """
        result = subprocess.run(
            [str(self._scripts / "rabbitmqctl"), "-n", self.nodename, *args],
            capture_output=True,
            timeout=timeout,
            check=True,
            env=self._env,
            cwd=str(self.base_dir),
            user=self._user(),
            group=self._user(),
            extra_groups=[] if self._as_rabbitmq else None,
        )
        return result.stdout.decode(errors="replace")

    def close_all_connections(self, reason: str = "closed by test") -> None:
        """Close every client connection from the server side (``close_all_connections``)."""
        self.ctl("close_all_connections", "--global", reason)

    def close(self) -> None:
        """Stop the node and delete its directories."""
        self.stop()
        if self._owns_dir:
            shutil.rmtree(self.base_dir, ignore_errors=True)

    def __repr__(self) -> str:
        return f"RabbitMQNode({self.nodename!r}, port={self.port}, running={self.running})"
