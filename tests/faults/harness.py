"""Private RabbitMQ and PostgreSQL instances for fault tests: started, stopped and killed at will.

Nothing here touches the machine's shared services. A private broker is its own Erlang node
(unique node name, AMQP and distribution ports, data and log directories under a temp dir); the
shared epmd only learns one more node name. A private PostgreSQL is its own cluster (``initdb``
into a temp dir owned by ``postgres``, started with ``pg_ctl`` as that user, since CI runs as
root), listening on its own port on 127.0.0.1 and its own socket directory.

When the server binaries are genuinely missing, :func:`require_tools` skips the test with the
reason; on this machine and in CI they exist, so the fault tests run.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

RABBITMQ_SERVER_GLOB = "/usr/lib/rabbitmq/lib/rabbitmq_server-*/sbin/rabbitmq-server"
POSTGRES_BIN_GLOB = "/usr/lib/postgresql/*/bin"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((host, port), 0.5):
            return True
    except OSError:
        return False


def wait_until(predicate: object, timeout: float, what: str, interval: float = 0.1) -> None:
    assert callable(predicate)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise TimeoutError(f"{what} not within {timeout:.0f} s")


def rabbitmq_server_binary() -> str | None:
    """The un-wrapped ``rabbitmq-server`` script (the Debian wrapper switches to its own user)."""
    found = sorted(glob.glob(RABBITMQ_SERVER_GLOB))
    return found[-1] if found else shutil.which("rabbitmq-server")


def postgres_bin_dir() -> Path | None:
    for candidate in sorted(glob.glob(POSTGRES_BIN_GLOB), reverse=True):
        if Path(candidate, "initdb").exists() and Path(candidate, "pg_ctl").exists():
            return Path(candidate)
    initdb = shutil.which("initdb")
    return Path(os.path.realpath(initdb)).parent if initdb else None


def require_tools(*, rabbitmq: bool = False, postgres: bool = False) -> None:
    """Skip (with the reason) when a server binary this test needs is not installed."""
    if rabbitmq and rabbitmq_server_binary() is None:
        pytest.skip("rabbitmq-server is not installed: no private broker for fault tests")
    if postgres:
        if postgres_bin_dir() is None:
            pytest.skip("initdb/pg_ctl are not installed: no private PostgreSQL for fault tests")
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("no 'postgres' user to run a private PostgreSQL cluster as")


@dataclass
class RabbitNode:
    """One private RabbitMQ node; ``start``/``stop``/``kill`` may be called repeatedly."""

    config: dict[str, str] = field(default_factory=dict)
    port: int = field(default_factory=free_port)
    dist_port: int = field(default_factory=free_port)
    base: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="orch-rabbit-")))
    process: subprocess.Popen[bytes] | None = None

    def __post_init__(self) -> None:
        self.name = f"orch-fault-{os.getpid()}-{self.port}@localhost"
        lines = [f"{key} = {value}" for key, value in self.config.items()]
        (self.base / "rabbitmq.conf").write_text("\n".join(lines) + "\n")
        (self.base / "enabled_plugins").write_text("[].\n")

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}/"

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            RABBITMQ_NODENAME=self.name,
            RABBITMQ_NODE_IP_ADDRESS="127.0.0.1",
            RABBITMQ_NODE_PORT=str(self.port),
            RABBITMQ_DIST_PORT=str(self.dist_port),
            RABBITMQ_MNESIA_BASE=str(self.base / "mnesia"),
            RABBITMQ_LOG_BASE=str(self.base / "log"),
            RABBITMQ_CONFIG_FILE=str(self.base / "rabbitmq.conf"),
            RABBITMQ_ADVANCED_CONFIG_FILE=str(self.base / "advanced.config"),
            RABBITMQ_ENABLED_PLUGINS_FILE=str(self.base / "enabled_plugins"),
            RABBITMQ_PID_FILE=str(self.base / "rabbit.pid"),
        )
        return env

    def start(self, timeout: float = 60) -> None:
        binary = rabbitmq_server_binary()
        assert binary is not None, "require_tools(rabbitmq=True) first"
        assert self.process is None or self.process.poll() is not None, "already running"
        log = (self.base / "server.out").open("ab")
        self.process = subprocess.Popen(
            [binary],
            cwd=self.base,
            env=self._env(),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            wait_until(
                lambda: port_open(self.port) or self.process.poll() is not None,  # type: ignore[union-attr]
                timeout,
                f"private RabbitMQ on port {self.port}",
            )
        except TimeoutError:
            self.kill()
            raise
        if self.process.poll() is not None:
            raise RuntimeError(f"private RabbitMQ exited:\n{self.output()}")

    def output(self) -> str:
        return (self.base / "server.out").read_text(errors="replace")[-4000:]

    def stop(self, timeout: float = 30) -> None:
        """Orderly stop (SIGTERM: the node closes its connections and exits)."""
        self._signal(signal.SIGTERM, timeout)

    def kill(self) -> None:
        """kill -9 of the node's whole process group (beam and its helpers)."""
        self._signal(signal.SIGKILL, 10)

    def _signal(self, sig: int, timeout: float) -> None:
        process = self.process
        if process is None or process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, sig)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)
        # Helpers (erl_child_setup, inet_gethost) share the group; make sure none lingers.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        wait_until(lambda: not port_open(self.port), 10, "private RabbitMQ port to close")

    def destroy(self) -> None:
        try:
            self.kill()
        finally:
            shutil.rmtree(self.base, ignore_errors=True)


@dataclass
class PostgresCluster:
    """One private PostgreSQL cluster, run as the ``postgres`` user."""

    port: int = field(default_factory=free_port)
    base: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="orch-pg-")))

    def __post_init__(self) -> None:
        bin_dir = postgres_bin_dir()
        assert bin_dir is not None, "require_tools(postgres=True) first"
        self.bin = bin_dir
        user = pwd.getpwnam("postgres")
        os.chown(self.base, user.pw_uid, user.pw_gid)
        self.base.chmod(0o700)
        self.data = self.base / "data"
        self._as_postgres(
            "initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8",
            "--no-sync",
        )  # fmt: skip

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _as_postgres(self, tool: str, *args: str, timeout: float = 60) -> None:
        command = [str(self.bin / tool), *args]
        if os.geteuid() == 0:
            command = ["runuser", "-u", "postgres", "--", *command]
        result = subprocess.run(
            command, cwd=self.base, capture_output=True, text=True, timeout=timeout, check=False
        )
        if result.returncode != 0:
            raise RuntimeError(f"{tool} failed: {result.stdout}{result.stderr}")

    def start(self) -> None:
        options = f"-p {self.port} -k {self.base} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._as_postgres(
            "pg_ctl", "-D", str(self.data), "-l", str(self.base / "server.log"), "-w",
            "-t", "60", "-o", options, "start",
        )  # fmt: skip

    def stop(self, mode: str = "fast") -> None:
        """``fast``: orderly; ``immediate``: like a crash (recovery runs at the next start)."""
        if (self.data / "postmaster.pid").exists():
            self._as_postgres("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")

    def kill(self) -> None:
        """kill -9 of the postmaster; its backends notice and exit by themselves."""
        pid_file = self.data / "postmaster.pid"
        if not pid_file.exists():
            return
        pid = int(pid_file.read_text().split()[0])
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        wait_until(lambda: not port_open(self.port), 10, "private PostgreSQL port to close")

    def destroy(self) -> None:
        try:
            with contextlib.suppress(Exception):
                self.stop("immediate")
        finally:
            shutil.rmtree(self.base, ignore_errors=True)
