"""Fixtures of the fault tests: private servers, a system of real processes, effect traces."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from orchestrator.migrate import upgrade
from tests.faults.harness import PostgresCluster, RabbitNode, require_tools
from tests.faults.scenario import Effects
from tests.support.system import System

#: The private broker checks delivery-acknowledgement timeouts against this (the long-job test
#: relies on it; every other fault test runs under it too). 60 s is the smallest value 3.10
#: enforces (the check runs about once a minute).
CONSUMER_TIMEOUT_MS = 60_000


@pytest.fixture(scope="session")
def private_broker() -> Iterator[RabbitNode]:
    """One private RabbitMQ node for the fault tests; tests may stop, kill and restart it."""
    require_tools(rabbitmq=True)
    node = RabbitNode(config={"consumer_timeout": str(CONSUMER_TIMEOUT_MS)})
    try:
        node.start()
        yield node
    finally:
        node.destroy()


@pytest.fixture
def broker(private_broker: RabbitNode) -> RabbitNode:
    """The private broker, running (a previous test may have left it stopped)."""
    if private_broker.process is None or private_broker.process.poll() is not None:
        private_broker.start()
    return private_broker


@pytest.fixture
def private_postgres() -> Iterator[PostgresCluster]:
    """A private, migrated PostgreSQL cluster of this test's own."""
    require_tools(postgres=True)
    cluster = PostgresCluster()
    try:
        cluster.start()
        upgrade(cluster.url)
        yield cluster
    finally:
        cluster.destroy()


@pytest.fixture
def effects(tmp_path: Path) -> Effects:
    directory = tmp_path / "effects"
    directory.mkdir()
    return Effects(directory)


SystemFactory = Callable[..., System]


@pytest.fixture
def make_system(tmp_path: Path) -> Iterator[SystemFactory]:
    """Build systems of real processes running ``tests.faults.jobs``; all stopped afterwards."""
    built: list[System] = []

    def build(database_url: str, amqp_url: str, **env: str) -> System:
        system = System(
            database_url=database_url,
            amqp_url=amqp_url,
            jobs="tests.faults.jobs",
            log_dir=tmp_path,
            extra_env=env,
        )
        built.append(system)
        return system

    try:
        yield build
    finally:
        for system in built:
            for name in list(system.processes):
                with contextlib.suppress(Exception):
                    system.stop(name, timeout=20)
            with contextlib.suppress(Exception):
                system.stop_all()
