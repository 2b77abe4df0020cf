"""Shared fixtures: real PostgreSQL and RabbitMQ, isolated per test.

Addresses come from the environment (local defaults below). Each test gets a fresh PostgreSQL
database cloned from a migrated template, a fresh SQLite file, and a unique broker namespace so
its queues and exchanges never meet another test's. Where the local services are unreachable
and Docker is available, testcontainers starts them.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
import sqlalchemy as sa

from orchestrator.db import create_engine
from orchestrator.migrate import upgrade
from orchestrator.settings import Settings, load_settings

# One in-memory span exporter for the process, defined once so it is installed once.
from tests.support.spans import _installed_exporter, spans  # noqa: F401  (fixtures)
from tests.support.system import RoleNotReadyError, remove_namespace

POSTGRES_URL = os.environ.get(
    "ORCHESTRATOR_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
AMQP_URL = os.environ.get("ORCHESTRATOR_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--chaos-seeds",
        default="",
        help="comma-separated seeds of tests/faults/test_chaos.py (or ORCHESTRATOR_CHAOS_SEEDS)",
    )


def _reachable(url: str, default_port: int) -> bool:
    parts = urlsplit(url)
    try:
        with socket.create_connection(
            (parts.hostname or "127.0.0.1", parts.port or default_port), 2
        ):
            return True
    except OSError:
        return False


def _docker_available() -> bool:
    return shutil.which("docker") is not None and os.path.exists("/var/run/docker.sock")


@pytest.fixture(scope="session")
def postgres_admin_url() -> Iterator[str]:
    """A PostgreSQL URL whose user may create databases."""
    if _reachable(POSTGRES_URL, 5432):
        yield POSTGRES_URL
        return
    if not _docker_available():
        pytest.fail(f"PostgreSQL is not reachable at {POSTGRES_URL} and Docker is not available")
    from testcontainers.postgres import PostgresContainer

    with PostgresContainer("postgres:15.10") as container:
        yield container.get_connection_url(driver=None)


@pytest.fixture(scope="session")
def amqp_url() -> Iterator[str]:
    if _reachable(AMQP_URL, 5672):
        yield AMQP_URL
        return
    if not _docker_available():
        pytest.fail(f"RabbitMQ is not reachable at {AMQP_URL} and Docker is not available")
    from testcontainers.rabbitmq import RabbitMqContainer

    with RabbitMqContainer("rabbitmq:3.10.8") as container:
        params = container.get_connection_params()
        yield f"amqp://guest:guest@{params.host}:{params.port}/"


def _with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, parts.fragment))


async def _admin(url: str, *statements: str) -> None:
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
            for statement in statements:
                await conn.execute(sa.text(statement))
    finally:
        await engine.dispose()


@pytest.fixture(scope="session")
def postgres_template(postgres_admin_url: str) -> Iterator[str]:
    """A migrated database that each test's database is cloned from."""
    name = f"orch_tpl_{uuid.uuid4().hex[:12]}"
    asyncio.run(_admin(postgres_admin_url, f'CREATE DATABASE "{name}"'))
    upgrade(_with_database(postgres_admin_url, name))
    yield name
    asyncio.run(_admin(postgres_admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture
def postgres_url(postgres_admin_url: str, postgres_template: str) -> Iterator[str]:
    """A fresh, migrated PostgreSQL database for one test."""
    name = f"orch_t_{uuid.uuid4().hex[:12]}"
    asyncio.run(
        _admin(
            postgres_admin_url,
            f'CREATE DATABASE "{name}" TEMPLATE "{postgres_template}" STRATEGY FILE_COPY',
        )
    )
    yield _with_database(postgres_admin_url, name)
    asyncio.run(_admin(postgres_admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("sqlite-template") / "template.db"
    upgrade(f"sqlite:///{path}")
    return path


@pytest.fixture
def sqlite_url(sqlite_template: Path, tmp_path: Path) -> str:
    """A fresh, migrated SQLite database file for one test."""
    path = tmp_path / "orchestrator.db"
    shutil.copyfile(sqlite_template, path)
    return f"sqlite:///{path}"


@pytest.fixture(params=["postgresql", "sqlite"])
def database_url(request: pytest.FixtureRequest) -> str:
    """Each test using this runs once on PostgreSQL and once on SQLite."""
    fixture = "postgres_url" if request.param == "postgresql" else "sqlite_url"
    return str(request.getfixturevalue(fixture))


@pytest.fixture
def namespace(amqp_url: str) -> Iterator[str]:
    """A broker namespace of this test's own; its queues and exchanges are removed afterwards."""
    name = f"t{uuid.uuid4().hex[:10]}"
    yield name
    remove_namespace(amqp_url, name)


@pytest.fixture
def make_settings(amqp_url: str, namespace: str):  # type: ignore[no-untyped-def]
    """Build Settings for this test's broker namespace and a given database."""

    def build(database_url: str, **overrides: object) -> Settings:
        values: dict[str, object] = {
            "database_url": database_url,
            "amqp_url": amqp_url,
            "broker_namespace": namespace,
            "api_keys": [],
            "jobs": [],
            # Queues the tests name that none of their jobs uses (the operator's allow-list).
            "queues": ["low", "other"],
        }
        values.update(overrides)
        return load_settings(**values)

    return build


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[sa.ext.asyncio.AsyncEngine]:
    eng = create_engine(database_url)
    yield eng
    await eng.dispose()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    """A system that failed to start fails every test that shares it: the first test shows the
    role and its log, the others point to it instead of repeating the log."""
    outcome = yield
    report = outcome.get_result()
    error = call.excinfo.value if call.excinfo is not None else None
    if call.when != "setup" or not isinstance(error, RoleNotReadyError):
        return
    first = _first_reports.setdefault(id(error), item.nodeid)
    if first != item.nodeid:
        report.longrepr = f"{error.summary} (shared set-up; its log is in the error of {first})"


_first_reports: dict[int, str] = {}
