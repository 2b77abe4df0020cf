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
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import uuid
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
    #: HOME of the node and its CLI tools: where a cluster's shared Erlang cookie lives.
    home: Path | None = None
    extra_env: dict[str, str] = field(default_factory=dict)
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
        if self.home is not None:
            env["HOME"] = str(self.home)
        env.update(self.extra_env)
        return env

    def ctl(self, tool: str, *args: str, timeout: float = 120) -> str:
        """Run ``rabbitmqctl``/``rabbitmq-queues`` (un-wrapped, with this node's cookie)
        against this node; returns its output, raises on failure."""
        binary = rabbitmq_server_binary()
        assert binary is not None
        command = [str(Path(binary).with_name(tool)), "-n", self.name, *args]
        result = subprocess.run(
            command, env=self._env(), capture_output=True, text=True, timeout=timeout, check=False
        )
        if result.returncode != 0:
            raise RuntimeError(f"{tool} {' '.join(args)}: {result.stdout}{result.stderr}")
        return result.stdout

    def start(self, timeout: float = 60) -> None:
        binary = rabbitmq_server_binary()
        assert binary is not None, "require_tools(rabbitmq=True) first"
        assert self.process is None or self.process.poll() is not None, "already running"
        # The node writes to its own copy of the file's descriptor; ours is closed at once.
        with (self.base / "server.out").open("ab") as log:
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


#: Three Erlang VMs on two cores: no busy-waiting schedulers.
QUIET_ERL_ARGS = "+sbwt none +sbwtdcpu none +sbwtdio none"


class RabbitCluster:
    """Private RabbitMQ nodes clustered together (own names, ports, data, shared cookie)."""

    def __init__(self, size: int = 3, config: dict[str, str] | None = None) -> None:
        self.home = Path(tempfile.mkdtemp(prefix="orch-cluster-"))
        cookie = self.home / ".erlang.cookie"
        cookie.write_text(uuid.uuid4().hex.upper())
        cookie.chmod(0o400)
        env = {"RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": QUIET_ERL_ARGS}
        self.nodes = [
            RabbitNode(config=dict(config or {}), home=self.home, extra_env=env)
            for _ in range(size)
        ]

    @property
    def urls(self) -> list[str]:
        return [node.url for node in self.nodes]

    def running(self) -> list[RabbitNode]:
        return [n for n in self.nodes if n.process is not None and n.process.poll() is None]

    def start(self) -> None:
        """Start every node (together), then join the others to the first."""
        errors: list[BaseException] = []

        def start(node: RabbitNode) -> None:
            try:
                node.start(timeout=180)
            except BaseException as exc:  # reported below, in the test's thread
                errors.append(exc)

        threads = [threading.Thread(target=start, args=(n,)) for n in self.nodes]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if errors:
            raise errors[0]
        first = self.nodes[0]
        for node in self.nodes[1:]:
            node.ctl("rabbitmqctl", "stop_app")
            node.ctl("rabbitmqctl", "join_cluster", first.name)
            node.ctl("rabbitmqctl", "start_app")
        first.ctl("rabbitmqctl", "await_online_nodes", str(len(self.nodes)))

    def restart(self, node: RabbitNode) -> None:
        """Start a stopped member again; it rejoins with its data."""
        node.start(timeout=180)
        node.ctl("rabbitmqctl", "await_startup")

    def leader(self, queue: str) -> RabbitNode:
        """The node leading quorum queue ``queue``, as a running member reports it."""
        reporter = self.running()[0]
        out = reporter.ctl("rabbitmqctl", "list_queues", "name", "leader", "--formatter", "json")
        for row in json.loads(out):
            if row["name"] == queue:
                return next(n for n in self.nodes if n.name == row["leader"])
        raise LookupError(f"no queue {queue!r} on {reporter.name}")

    def members(self, queue: str) -> list[str]:
        reporter = self.running()[0]
        out = reporter.ctl("rabbitmqctl", "list_queues", "name", "members", "--formatter", "json")
        found = [list(row["members"]) for row in json.loads(out) if row["name"] == queue]
        return found[0] if found else []  # not declared yet

    def destroy(self) -> None:
        for node in self.nodes:
            with contextlib.suppress(Exception):
                node.destroy()
        shutil.rmtree(self.home, ignore_errors=True)


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
