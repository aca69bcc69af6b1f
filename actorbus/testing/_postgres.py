"""A throwaway PostgreSQL cluster for tests and benchmarks.

:class:`PostgresCluster` runs ``initdb`` and ``pg_ctl`` from the installed ``postgresql``
binaries to start a cluster of its own: a data directory under a temporary directory, a free
port on 127.0.0.1, its Unix socket in its own directory, password authentication over TCP. A
test may stop, crash or restart it without touching any other PostgreSQL on the machine (such
as one on 127.0.0.1:5432). PostgreSQL refuses to run as root, so as root the cluster runs as
the ``postgres`` OS user. Synchronous (``subprocess``), usable from session fixtures and
benchmark scripts alike.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from ._process import ServerProcess

__all__ = ("PostgresCluster", "PostgresNotInstalledError", "find_postgres_bin")

_DEBIAN = Path("/usr/lib/postgresql")


class PostgresNotInstalledError(RuntimeError):
    """The PostgreSQL server binaries (``initdb``, ``pg_ctl``) were not found."""

    def __init__(self) -> None:
        super().__init__(
            "PostgreSQL server binaries (initdb, pg_ctl) not found; install them with: "
            "apt-get install postgresql (or set ACTORBUS_TEST_POSTGRES_URL to a database "
            "the tests may use)"
        )


def find_postgres_bin() -> Path | None:
    """Return the directory holding ``initdb`` and ``pg_ctl`` (newest Debian version first)."""
    found = shutil.which("initdb")
    if found is not None:
        return Path(found).resolve().parent
    if _DEBIAN.is_dir():
        versions = sorted(
            (p for p in _DEBIAN.iterdir() if (p / "bin" / "initdb").exists()),
            key=lambda p: int(p.name) if p.name.isdigit() else 0,
            reverse=True,
        )
        if versions:
            return versions[0] / "bin"
    return None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class PostgresCluster(ServerProcess):
    """A PostgreSQL cluster of its own on a free port of 127.0.0.1.

    Use it as a context manager (or call :meth:`start` and :meth:`close`)::

        with PostgresCluster() as pg:
            url = pg.url        # postgresql://postgres:<password>@127.0.0.1:<port>/postgres
            pg.crash(); pg.start()   # committed data survives (crash recovery)

    Args:
        password: The ``postgres`` user's password (TCP connections must give it).
        base_dir: Where to put the cluster; a fresh temporary directory if ``None``.
        boot_timeout: Seconds to wait for the server to accept connections.
        settings: Extra ``postgresql.conf`` settings (``{"max_connections": "50"}``).

    Raises:
        PostgresNotInstalledError: ``initdb`` / ``pg_ctl`` are not installed.
    """

    def __init__(
        self,
        *,
        password: str = "actorbus-test-secret",
        base_dir: str | os.PathLike[str] | None = None,
        boot_timeout: float = 60.0,
        settings: dict[str, str] | None = None,
    ) -> None:
        bindir = find_postgres_bin()
        if bindir is None:
            raise PostgresNotInstalledError()
        self._bin = bindir
        self.password = password
        self.port = _free_port()
        self.boot_timeout = boot_timeout
        self._owns_dir = base_dir is None
        self.base_dir = Path(base_dir or tempfile.mkdtemp(prefix="actorbus-postgres-"))
        self.data_dir = self.base_dir / "data"
        self.socket_dir = self.base_dir / "socket"
        self.log_file = self.base_dir / "postgres.log"
        self._settings = dict(settings or {})
        self._as_postgres = os.geteuid() == 0
        self._initialised = False

    @property
    def url(self) -> str:
        """The ``postgresql://`` URL of the ``postgres`` database (user ``postgres``)."""
        return f"postgresql://postgres:{self.password}@127.0.0.1:{self.port}/postgres"

    @property
    def running(self) -> bool:
        """Whether the server answers on its port."""
        return self._probe()

    def _user(self) -> str | None:
        return "postgres" if self._as_postgres else None

    def _run(self, *args: str, timeout: float = 120.0) -> str:
        result = subprocess.run(
            [str(self._bin / args[0]), *args[1:]],
            capture_output=True,
            timeout=timeout,
            check=False,
            cwd=str(self.base_dir),
            user=self._user(),
            group=self._user(),
            extra_groups=[] if self._as_postgres else None,
            env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8"},
        )
        if result.returncode != 0:
            raise RuntimeError(
                f"{args[0]} failed with exit code {result.returncode}: "
                f"{result.stderr.decode(errors='replace').strip()} (see {self.log_file})"
            )
        return result.stdout.decode(errors="replace")

    def _init(self) -> None:
        self.base_dir.mkdir(parents=True, exist_ok=True)
        self.socket_dir.mkdir(exist_ok=True)
        pwfile = self.base_dir / "pwfile"
        pwfile.write_text(self.password + "\n")
        if self._as_postgres:
            for path in (self.base_dir, self.socket_dir, pwfile):
                shutil.chown(path, "postgres", "postgres")
        os.chmod(self.base_dir, 0o700)
        self._run(
            "initdb",
            "-D",
            str(self.data_dir),
            "-U",
            "postgres",
            f"--pwfile={pwfile}",
            "--auth-host=scram-sha-256",
            "--auth-local=trust",
            "-E",
            "UTF8",
            "--locale=C",
        )
        pwfile.unlink()
        conf = {
            "listen_addresses": "'127.0.0.1'",
            "port": str(self.port),
            "unix_socket_directories": f"'{self.socket_dir}'",
            "max_connections": "100",
            "shared_buffers": "32MB",
            "logging_collector": "off",
            **self._settings,
        }
        with (self.data_dir / "postgresql.conf").open("a") as file:
            file.write("\n# actorbus test cluster\n")
            for key, value in conf.items():
                file.write(f"{key} = {value}\n")
        self._initialised = True

    def start(self) -> None:
        """Create the cluster on first use, start the server and wait until it accepts work.

        Raises:
            TimeoutError: Not ready within ``boot_timeout`` (the log file is named).
            RuntimeError: ``initdb`` or ``pg_ctl`` failed.
        """
        if not self._initialised:
            self._init()
        if self._probe():
            return
        self._run(
            "pg_ctl",
            "-D",
            str(self.data_dir),
            "-l",
            str(self.log_file),
            "-w",
            "-t",
            str(int(self.boot_timeout)),
            "start",
            timeout=self.boot_timeout + 10,
        )
        deadline = time.monotonic() + self.boot_timeout
        while not self._probe():
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"PostgreSQL on port {self.port} not ready after {self.boot_timeout:g} s; "
                    f"see {self.log_file}"
                )
            time.sleep(0.05)

    def _probe(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1.0):
                return True
        except OSError:
            return False

    def stop(self) -> None:
        """Stop the server cleanly (``pg_ctl stop -m fast``: disconnects every client)."""
        self._stop("fast")

    def crash(self) -> None:
        """Stop the server as a crash would (``-m immediate``: no checkpoint; the next start
        runs crash recovery). Clients see their connections drop mid-statement."""
        self._stop("immediate")

    def _stop(self, mode: str) -> None:
        if not (self.data_dir / "postmaster.pid").exists():
            return
        self._run("pg_ctl", "-D", str(self.data_dir), "-m", mode, "-w", "stop")

    def restart(self) -> None:
        """Stop the server cleanly and start it again on the same port and data."""
        self.stop()
        self.start()

    def close(self) -> None:
        """Stop the server and delete its directories."""
        with contextlib.suppress(RuntimeError, OSError, subprocess.SubprocessError):
            self.stop()
        if self._owns_dir:
            shutil.rmtree(self.base_dir, ignore_errors=True)

    def __repr__(self) -> str:
        return f"PostgresCluster(port={self.port}, data_dir={str(self.data_dir)!r})"
