"""A whole Orchestrator system of real processes on this machine, for e2e tests and benchmarks.

It creates a fresh PostgreSQL database (or SQLite file), migrates it, picks free ports and a
unique broker namespace, starts the roles with the ``orchestrator`` CLI, and tears everything
down afterwards, queues and database included.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import aio_pika
import httpx
import sqlalchemy as sa

from orchestrator.db import create_engine
from orchestrator.migrate import upgrade
from orchestrator.topology import DELAY_LEVELS

ROOT = Path(__file__).resolve().parents[2]
POSTGRES_ADMIN_URL = os.environ.get(
    "ORCHESTRATOR_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
AMQP_URL = os.environ.get("ORCHESTRATOR_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")


#: A role that used no CPU for this long while not ready is stuck (a slow one still computes).
STALL_SECONDS = float(os.environ.get("ORCHESTRATOR_TEST_STALL_SECONDS", "45"))
#: The longest any readiness wait lasts while its roles keep computing.
READY_LIMIT_SECONDS = float(os.environ.get("ORCHESTRATOR_TEST_READY_LIMIT_SECONDS", "600"))
LOG_TAIL_CHARS = 4000


class RoleNotReadyError(RuntimeError):
    """A role of a test system did not become ready; says which, and shows its log."""

    def __init__(self, summary: str, logs: str):
        super().__init__(f"{summary}\n{logs}")
        self.summary = summary


def cpu_seconds(pid: int) -> float | None:
    """CPU time a process has used (Linux /proc), or None when it is gone or unknown."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def _admin(statement: str) -> None:
    engine = create_engine(POSTGRES_ADMIN_URL)
    try:
        async with engine.connect() as conn:
            conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
            await conn.execute(sa.text(statement))
    finally:
        await engine.dispose()


def new_postgres_database() -> tuple[str, str]:
    name = f"orch_sys_{uuid.uuid4().hex[:10]}"
    asyncio.run(_admin(f'CREATE DATABASE "{name}"'))
    parts = urlsplit(POSTGRES_ADMIN_URL)
    url = urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, parts.fragment))
    upgrade(url)
    return name, url


@dataclass
class System:
    """Processes of one system; ``start_*`` launches roles, ``stop`` ends them all."""

    database_url: str
    jobs: str
    namespace: str = field(default_factory=lambda: f"sys{uuid.uuid4().hex[:10]}")
    amqp_url: str = AMQP_URL
    api_port: int = field(default_factory=free_port)
    extra_env: dict[str, str] = field(default_factory=dict)
    log_dir: Path = field(default_factory=lambda: Path(os.environ.get("TMPDIR", "/tmp")))
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    #: The role each process in ``processes`` was started as.
    roles: dict[str, str] = field(default_factory=dict)

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    def env(self, **overrides: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("ORCHESTRATOR_")}
        env.update(
            ORCHESTRATOR_DATABASE_URL=self.database_url,
            ORCHESTRATOR_AMQP_URL=self.amqp_url,
            ORCHESTRATOR_BROKER_NAMESPACE=self.namespace,
            ORCHESTRATOR_JOBS=self.jobs,
            ORCHESTRATOR_API_PORT=str(self.api_port),
            ORCHESTRATOR_WORKER_OPS_PORT="0",
            ORCHESTRATOR_SCHEDULER_OPS_PORT="0",
            ORCHESTRATOR_JANITOR_OPS_PORT="0",
            ORCHESTRATOR_LOG_LEVEL="WARNING",
            # Queues tests and benchmarks name that no job of theirs uses.
            ORCHESTRATOR_QUEUES="low,other,bench",
            PYTHONPATH=str(ROOT),
        )
        env.update(self.extra_env)
        env.update(overrides)
        return env

    def start(self, name: str, role: str, *args: str, **env: str) -> subprocess.Popen[bytes]:
        # The child writes to its own copy of the file's descriptor; ours is closed at once.
        with (self.log_dir / f"{self.namespace}-{name}.log").open("wb") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "orchestrator_cli", role, *args],
                cwd=ROOT,
                env=self.env(**env),
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self.processes[name] = process
        self.roles[name] = role
        return process

    def log_of(self, name: str) -> str:
        return (self.log_dir / f"{self.namespace}-{name}.log").read_text(errors="replace")

    def wait_for_api(self, timeout: float | None = None) -> None:
        """Until the API answers /readyz with 200."""

        def ready() -> bool:
            with contextlib.suppress(httpx.HTTPError):
                return httpx.get(f"{self.api_url}/readyz", timeout=2).status_code == 200
            return False

        self.wait_until_ready("the API to be ready", ready, self._named("api"), timeout)

    def wait_for_catalog(
        self, name: str, timeout: float | None = None, api_key: str | None = None
    ) -> None:
        """Until the API serves and a worker has registered job ``name`` in the store."""
        headers = {"authorization": f"Bearer {api_key}"} if api_key else {}

        def registered() -> bool:
            with contextlib.suppress(httpx.HTTPError, KeyError, ValueError):
                answer = httpx.get(f"{self.api_url}/api/v1/catalog", headers=headers, timeout=2)
                return any(item["name"] == name for item in answer.json()["items"])
            return False

        roles = self._named("api", "worker")
        self.wait_until_ready(f"job {name} in the catalog", registered, roles, timeout)

    def wait_until_ready(
        self,
        what: str,
        ready: Callable[[], bool],
        names: Sequence[str],
        timeout: float | None = None,
    ) -> None:
        """Until ``ready()`` holds, for as long as the roles ``names`` make progress.

        A loaded machine makes starting slow, not stuck, so the wait is not a fixed time: it
        fails at once when one of the roles exits, when none of them has used any CPU for
        ``STALL_SECONDS`` (stuck, not slow), or after ``timeout`` (default
        ``READY_LIMIT_SECONDS``, a last resort). The error names the roles and shows their logs.
        """
        limit = READY_LIMIT_SECONDS if timeout is None else timeout
        started = last_progress = time.monotonic()
        used: dict[str, float] = {}
        while not ready():
            now = time.monotonic()
            for name in names:
                process = self.processes.get(name)
                if process is not None and process.poll() is not None:
                    raise RoleNotReadyError(
                        f"waiting for {what}: the {name} exited with code {process.returncode}",
                        self._logs([name]),
                    )
                cpu = cpu_seconds(process.pid) if process is not None else None
                if cpu is not None and cpu > used.get(name, -1.0):
                    used[name] = cpu
                    last_progress = now
            if now - last_progress > STALL_SECONDS:
                raise RoleNotReadyError(
                    f"waiting for {what}: {', '.join(names)} used no CPU for "
                    f"{STALL_SECONDS:.0f} s (stuck, not slow)",
                    self._logs(names),
                )
            if now - started > limit:
                raise RoleNotReadyError(
                    f"waiting for {what}: not within {limit:.0f} s although "
                    f"{', '.join(names)} kept running",
                    self._logs(names),
                )
            time.sleep(0.1)

    def _named(self, *roles: str) -> list[str]:
        """The processes started for ``roles``, or those roles' usual names."""
        found = [name for name, role in self.roles.items() if role in roles]
        return found or [name for name in roles if name in self.processes]

    def _logs(self, names: Sequence[str]) -> str:
        parts = []
        for name in names:
            path = self.log_dir / f"{self.namespace}-{name}.log"
            text = path.read_text(errors="replace") if path.exists() else ""
            tail = text[-LOG_TAIL_CHARS:] if text.strip() else "(nothing written yet)"
            parts.append(f"--- log of the {name} ---\n{tail}")
        return "\n".join(parts)

    def stop(self, name: str, sig: int = signal.SIGTERM, timeout: float = 40) -> int:
        process = self.processes.pop(name)
        self.roles.pop(name, None)
        if process.poll() is None:
            process.send_signal(sig)
        try:
            return process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            return process.wait()

    def stop_all(self) -> None:
        for name in list(self.processes):
            self.stop(name)
        remove_namespace(self.amqp_url, self.namespace)


def remove_namespace(
    url: str, namespace: str, queues: tuple[str, ...] = (), *, within: float = 60.0
) -> None:
    """Best-effort removal of a test's queues and exchanges, bounded in time.

    Clean-up only: a broker that is slow or refuses must not fail the test that is ending, nor
    the ones after it. aiormq raises ``CancelledError`` (a ``BaseException``) when a connection
    it found stuck is closed under a pending call; escaping a fixture's teardown, that left
    pytest's fixtures half torn down, and later tests were handed the failed test's ``tmp_path``
    (seen in a full run on a loaded machine: eight tests failed on files of another test).
    """
    try:
        removal = delete_namespace(url, namespace, *((queues,) if queues else ()))
        asyncio.run(asyncio.wait_for(removal, within))
    except (Exception, asyncio.CancelledError) as exc:
        print(f"removing namespace {namespace} failed ({exc!r}); left to RabbitMQ")


async def delete_namespace(
    url: str,
    namespace: str,
    queues: tuple[str, ...] = ("default", "critical", "low", "other", "bench"),
) -> None:
    connection = await aio_pika.connect(url)
    try:
        delays = [f"{namespace}.delay.{level}" for level in range(DELAY_LEVELS)]
        names = [f"{namespace}.q.{q}" for q in queues] + [f"{namespace}.dead", *delays]
        for queue in names:
            channel = await connection.channel()
            with contextlib.suppress(Exception):
                await channel.queue_delete(queue)
        for exchange in (
            f"{namespace}.jobs",
            f"{namespace}.dlx",
            f"{namespace}.control",
            f"{namespace}.scheduler.wake",
            f"{namespace}.delay.out",
            *delays,
        ):
            channel = await connection.channel()
            with contextlib.suppress(Exception):
                await channel.exchange_delete(exchange)
    finally:
        await connection.close()


def drop_postgres_database(name: str) -> None:
    asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
