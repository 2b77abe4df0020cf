"""A RabbitMQ for ``orchestrator dev`` when the configured one is not running.

On a laptop whose RabbitMQ is stopped, ``dev`` starts a private node of the installed
``rabbitmq-server`` under the project folder (``.orchestrator/rabbitmq/``) on the port the broker
URL names, runs the roles against it and stops it when it stops. The node is the fault tests'
kind of private node: its own node name, AMQP, distribution and epmd ports (all on 127.0.0.1),
data and log directories, Erlang cookie, and schedulers that do not busy-wait (``+sbwt none``).
Nothing of a system RabbitMQ is touched, and no process of the node outlives ``dev``'s stop.

Without ``rabbitmq-server`` on PATH, ``dev`` prints the ``docker run`` line of the image
docker-compose.yml pins (when ``docker`` is on PATH) or how to start one, and exits.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlsplit

import click

#: The RabbitMQ image docker-compose.yml runs (tests/test_private_broker.py keeps them equal).
PINNED_IMAGE = "rabbitmq:3.13.7-management"
#: Where a project's private node keeps its data, relative to the folder ``dev`` runs in.
STATE_FOLDER = Path(".orchestrator") / "rabbitmq"
#: Two cores may be shared with a test suite: starting can take a while, hanging cannot.
START_TIMEOUT_SECONDS = 180.0
STOP_TIMEOUT_SECONDS = 60.0
#: Schedulers that sleep when idle, and Erlang distribution on loopback only.
ERL_ARGS = "+sbwt none +sbwtdcpu none +sbwtdio none -kernel inet_dist_use_interface {127,0,0,1}"
#: The node listens on 127.0.0.1 (which "localhost" includes) only.
LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1"})
#: Where packages install ``rabbitmq-server`` outside a normal user's PATH (Debian: /usr/sbin).
SBIN_FOLDERS = ("/usr/sbin", "/usr/local/sbin", "/opt/homebrew/sbin")


@dataclass(frozen=True)
class BrokerAddress:
    """What a private node must accept: the URL's port, user, password and virtual host."""

    port: int
    user: str
    password: str
    vhost: str

    @classmethod
    def local(cls, url: str) -> BrokerAddress | None:
        """The address of ``url`` when a node on this machine could serve it, else None
        (another host, or TLS, which a private node does not set up)."""
        try:
            parts = urlsplit(url)
            port = parts.port or 5672
        except ValueError:
            return None
        if parts.scheme != "amqp" or (parts.hostname or "localhost") not in LOOPBACK_HOSTS:
            return None
        path = parts.path[1:] if parts.path.startswith("/") else parts.path
        return cls(
            port=port,
            user=unquote(parts.username or "guest"),
            password=unquote(parts.password or "guest"),
            vhost=unquote(path) or "/",
        )


def rabbitmq_server() -> Path | None:
    """The ``rabbitmq-server`` script on PATH, past Debian's wrapper (which would run the
    system node's user and data), or None."""
    found = shutil.which("rabbitmq-server")
    if found is None:
        return None
    real = Path(os.path.realpath(found))
    if real.name == "rabbitmq-script-wrapper":
        unwrapped = real.with_name("rabbitmq-server")
        return unwrapped if unwrapped.exists() else None
    return real


def installed_off_path() -> Path | None:
    """A ``rabbitmq-server`` installed in an sbin folder that PATH does not list."""
    listed = {os.path.realpath(p) for p in os.environ.get("PATH", "").split(os.pathsep) if p}
    for folder in SBIN_FOLDERS:
        candidate = Path(folder, "rabbitmq-server")
        if os.path.realpath(folder) not in listed and candidate.exists():
            return candidate
    return None


def epmd_binary() -> str | None:
    """Erlang's port mapper, started by us so that it stops with the node (``erl`` would leave a
    daemon behind)."""
    found = shutil.which("epmd")
    if found is not None:
        return found
    erl = shutil.which("erl")
    if erl is not None and Path(os.path.realpath(erl)).with_name("epmd").exists():
        return str(Path(os.path.realpath(erl)).with_name("epmd"))
    return None


def port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), 0.5):
            return True
    except OSError:
        return False


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def docker_run_line(address: BrokerAddress | None) -> str:
    """The exact command that runs docker-compose.yml's RabbitMQ for this URL."""
    port = address.port if address is not None else 5672
    options = [f"-p {port}:5672"]
    if address is not None and (address.user, address.password) != ("guest", "guest"):
        options += [
            f"-e RABBITMQ_DEFAULT_USER={address.user}",
            "-e RABBITMQ_DEFAULT_PASS='<the password in ORCHESTRATOR_AMQP_URL>'",
        ]
    if address is not None and address.vhost != "/":
        options.append(f"-e RABBITMQ_DEFAULT_VHOST={address.vhost}")
    return f"docker run -d --name orchestrator-rabbitmq {' '.join(options)} {PINNED_IMAGE}"


def how_to_start(brokers: str, problem: str, address: BrokerAddress | None) -> str:
    """What ``dev`` says when it cannot start a broker itself."""
    lines = [f"RabbitMQ is not reachable at {brokers} ({problem})."]
    off_path = installed_off_path()
    if address is not None and off_path is not None:
        lines.append(
            f"rabbitmq-server is installed ({off_path}) but not on PATH; with its folder on PATH "
            f"`orchestrator dev` starts a private node itself: PATH=\"$PATH:{off_path.parent}\""
        )
    if address is not None and shutil.which("docker") is not None:
        lines += ["Start one with Docker:", f"  {docker_run_line(address)}"]
    else:
        lines += [
            "Start it first, for example:",
            "  rabbitmq-server -detached            (installed locally)",
            f"  {docker_run_line(address)}",
        ]
    lines.append("or point ORCHESTRATOR_AMQP_URL at a running broker.")
    return "\n".join(lines)


def _node_name(folder: Path) -> str:
    # One name per project folder: the node finds its own data (and queued messages) next time.
    digest = hashlib.sha256(str(folder).encode()).hexdigest()[:10]
    return f"orchestrator-dev-{digest}@localhost"


def _quoted(value: str) -> str:
    """A rabbitmq.conf (cuttlefish) value: backslashes and spaces are what it would misread."""
    return value.replace("\\", "\\\\").replace(" ", "\\ ")


@dataclass
class PrivateNode:
    """One private RabbitMQ node serving ``address`` with its state under ``folder``."""

    server: Path
    address: BrokerAddress
    folder: Path
    dist_port: int = field(default_factory=free_port)
    epmd_port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    epmd: subprocess.Popen[bytes] | None = None

    @property
    def name(self) -> str:
        return _node_name(self.folder.resolve())

    def _prepare(self) -> None:
        home = self.folder / "home"
        home.mkdir(parents=True, exist_ok=True)
        # The folder ignores itself in a git work tree.
        (self.folder / ".gitignore").write_text("*\n")
        cookie = home / ".erlang.cookie"
        if not cookie.exists():
            cookie.write_text(secrets.token_hex(16).upper())
            cookie.chmod(0o400)
        config = self.folder / "rabbitmq.conf"
        config.write_text(
            # The default user and virtual host are created at the node's first start only.
            f"default_user = {_quoted(self.address.user)}\n"
            f"default_pass = {_quoted(self.address.password)}\n"
            f"default_vhost = {_quoted(self.address.vhost)}\n"
        )
        config.chmod(0o600)
        (self.folder / "enabled_plugins").write_text("[].\n")
        # An empty environment file instead of the system node's /etc/rabbitmq/rabbitmq-env.conf.
        (self.folder / "rabbitmq-env.conf").write_text("")

    def _env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("RABBITMQ_", "ERL_"))}
        env.update(
            HOME=str(self.folder / "home"),
            RABBITMQ_CONF_ENV_FILE=str(self.folder / "rabbitmq-env.conf"),
            RABBITMQ_NODENAME=self.name,
            RABBITMQ_NODE_IP_ADDRESS="127.0.0.1",
            RABBITMQ_NODE_PORT=str(self.address.port),
            RABBITMQ_DIST_PORT=str(self.dist_port),
            RABBITMQ_MNESIA_BASE=str(self.folder / "mnesia"),
            RABBITMQ_LOG_BASE=str(self.folder / "log"),
            RABBITMQ_CONFIG_FILE=str(self.folder / "rabbitmq.conf"),
            RABBITMQ_ADVANCED_CONFIG_FILE=str(self.folder / "advanced.config"),
            RABBITMQ_ENABLED_PLUGINS_FILE=str(self.folder / "enabled_plugins"),
            RABBITMQ_PID_FILE=str(self.folder / "rabbit.pid"),
            RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS=ERL_ARGS,
            ERL_EPMD_PORT=str(self.epmd_port),
            ERL_EPMD_ADDRESS="127.0.0.1",
        )
        return env

    def start(self, timeout: float = START_TIMEOUT_SECONDS) -> None:
        """Start the node and wait until it accepts AMQP connections; raise if it cannot."""
        self._prepare()
        env = self._env()
        epmd = epmd_binary()
        if epmd is not None:
            self.epmd = subprocess.Popen(  # noqa: S603  (an installed binary, fixed arguments)
                [epmd, "-port", str(self.epmd_port), "-address", "127.0.0.1"],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
        log = (self.folder / "server.out").open("ab")
        # Its own session: a Ctrl-C in the terminal reaches the roles, not the broker they need
        # while they stop; dev stops the node after them.
        self.process = subprocess.Popen(  # noqa: S603
            [str(self.server)],
            cwd=self.folder,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while not port_open(self.address.port):
            if self.process.poll() is not None:
                raise RuntimeError(f"the private RabbitMQ node exited:\n{self.output()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"the private RabbitMQ node did not start in {timeout:.0f} s")
            time.sleep(0.2)

    def output(self) -> str:
        path = self.folder / "server.out"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""

    def stop(self, timeout: float = STOP_TIMEOUT_SECONDS) -> None:
        """An orderly stop (SIGTERM: the node closes its connections and writes its data), a
        kill after ``timeout``; then its port mapper. Returns once none of them runs."""
        if self.process is not None:
            _end(self.process, timeout)
        if self.epmd is not None:
            _end(self.epmd, 10)

    def stopped(self) -> bool:
        processes = [p for p in (self.process, self.epmd) if p is not None]
        return all(p.poll() is not None for p in processes)


def _end(process: subprocess.Popen[bytes], timeout: float) -> None:
    """SIGTERM the process's group, SIGKILL it after ``timeout``, and reap the process."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)
    # The rabbitmq-server script exits only after the beam it waits for; a SIGKILL reaches
    # both at once. So nothing of the group is left once its leader is reaped.


def _stop_on_sigterm(*_: object) -> None:
    # Until dev's supervisor takes SIGTERM over: unwind, so that the node is stopped.
    raise SystemExit(128 + signal.SIGTERM)


async def _probe(url: str) -> None:
    from orchestrator.broker import connect

    connection = await connect([url], name="orchestrator-dev-probe", timeout=10)
    await connection.close()


def start_or_explain(urls: list[str], brokers: str, problem: str) -> PrivateNode:
    """A running private node for the first broker URL, or exit 1 saying how to get a broker.

    A node is started only when that URL names this machine and nothing listens on its port
    (RabbitMQ is not running; a port that answers is someone else's, or a refused login).
    """
    address = BrokerAddress.local(urls[0])
    server = rabbitmq_server()
    if address is None or server is None or port_open(address.port):
        click.echo(how_to_start(brokers, problem, address), err=True)
        raise SystemExit(1)
    node = PrivateNode(server, address, Path.cwd() / STATE_FOLDER)
    click.echo(
        f"RabbitMQ is not running at {brokers}: starting a private node of {server} "
        f"on 127.0.0.1:{address.port} (data in {STATE_FOLDER}/; it stops when dev stops)",
        err=True,
    )
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    try:
        node.start()
        asyncio.run(_probe(urls[0]))
    except BaseException as exc:
        node.stop()
        if isinstance(exc, Exception):
            click.echo(f"the private RabbitMQ node could not serve {brokers}: {exc!r}", err=True)
            click.echo(node.output(), err=True)
            raise SystemExit(1) from None
        raise
    click.echo(f"private RabbitMQ node {node.name} is running", err=True)
    return node
