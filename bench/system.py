"""A whole Orchestrator system of real processes on this machine, for benchmarks and e2e tests.

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
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import aio_pika
import httpx
import sqlalchemy as sa

from orchestrator.db import create_engine
from orchestrator.migrate import upgrade
from orchestrator.topology import DELAY_LEVELS

ROOT = Path(__file__).resolve().parent.parent
POSTGRES_ADMIN_URL = os.environ.get(
    "ORCHESTRATOR_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
AMQP_URL = os.environ.get("ORCHESTRATOR_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")


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
            PYTHONPATH=str(ROOT),
        )
        env.update(self.extra_env)
        env.update(overrides)
        return env

    def start(self, name: str, role: str, *args: str, **env: str) -> subprocess.Popen[bytes]:
        log = (self.log_dir / f"{self.namespace}-{name}.log").open("wb")
        process = subprocess.Popen(
            [sys.executable, "-m", "orchestrator_cli", role, *args],
            cwd=ROOT,
            env=self.env(**env),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        self.processes[name] = process
        return process

    def log_of(self, name: str) -> str:
        return (self.log_dir / f"{self.namespace}-{name}.log").read_text(errors="replace")

    def wait_for_api(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.api_url}/readyz", timeout=1).status_code == 200:
                    return
            time.sleep(0.1)
        raise RuntimeError(f"API did not become ready:\n{self.log_of('api')}")

    def wait_for_catalog(self, name: str, timeout: float = 60) -> None:
        """Until a worker has registered job ``name`` in the store."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                items = httpx.get(f"{self.api_url}/api/v1/catalog", timeout=2).json()["items"]
                if any(item["name"] == name for item in items):
                    return
            time.sleep(0.1)
        raise RuntimeError(f"job {name} never appeared in the catalog")

    def stop(self, name: str, sig: int = signal.SIGTERM, timeout: float = 40) -> int:
        process = self.processes.pop(name)
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
        asyncio.run(delete_namespace(self.amqp_url, self.namespace))


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
