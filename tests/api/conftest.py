"""Drive the API in-process (its real lifespan, real PostgreSQL/SQLite and RabbitMQ)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from fastapi import FastAPI

from orchestrator import composition, store
from orchestrator.db import db_now
from orchestrator.lifecycle import Change, State
from orchestrator.models import OutboxEntry
from orchestrator.settings import Settings
from orchestrator_api.app import create_app
from orchestrator_api.runtime import Runtime

TEST_JOBS = "tests.jobs_for_tests"
#: Free-form and secret-taking jobs (tests.api.bounds_jobs), registered beside TEST_JOBS.
BOUNDS_JOBS = "tests.api.bounds_jobs"
ADD = f"{TEST_JOBS}.add"
ECHO = f"{TEST_JOBS}.echo"
FAIL = f"{TEST_JOBS}.fail"
URGENT = f"{TEST_JOBS}.urgent"
#: Nothing listens there: the API must serve anyway.
DOWN_AMQP_URL = "amqp://guest:guest@127.0.0.1:1/"
LOOPBACK = ("127.0.0.1", 50000)


@dataclass
class Api:
    app: FastAPI
    http: httpx.AsyncClient
    settings: Settings

    @property
    def runtime(self) -> Runtime:
        runtime = self.app.state.runtime
        assert isinstance(runtime, Runtime)
        return runtime

    def client(self, address: tuple[str, int]) -> httpx.AsyncClient:
        """Another client of the same running app, calling from ``address``."""
        transport = httpx.ASGITransport(app=self.app, client=address)
        return httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1")

    async def enqueue(self, job: str = ADD, **body: Any) -> str:
        if job == ADD and "args" not in body and "kwargs" not in body:
            body["args"] = [1, 2]
        response = await self.http.post("/api/v1/jobs", json={"job": job, **body})
        assert response.status_code == 201, response.text
        return str(response.json()["id"])

    async def count(self, table: str = "jobs") -> int:
        async with self.runtime.engine.connect() as conn:
            return int((await conn.execute(sa.text(f"SELECT count(*) FROM {table}"))).scalar_one())

    async def outbox_for(self, job_id: str) -> list[Any]:
        outbox = OutboxEntry.__table__  # type: ignore[attr-defined]
        async with self.runtime.engine.connect() as conn:
            query = sa.select(outbox).where(outbox.c.job_id == uuid.UUID(job_id))
            return list((await conn.execute(query)).all())

    async def move(self, job_id: str, *path: State) -> None:
        """Walk a job through states with the state machine, as a worker would."""
        async with self.runtime.engine.begin() as conn:
            row = await store.get_job(conn, uuid.UUID(job_id))
            current = State(row.state)
            for target in path:
                now = await db_now(conn)
                moved = await composition.transitions(timedelta(hours=1)).move(
                    conn,
                    [uuid.UUID(job_id)],
                    expected=[current],
                    target=target,
                    change=Change("test"),
                    now=now,
                )
                assert moved, f"could not move {current} -> {target}"
                current = target


ApiFactory = Callable[..., AbstractAsyncContextManager[Api]]


@pytest.fixture
def start_api(make_settings: Callable[..., Settings]) -> ApiFactory:
    """``async with start_api(database_url, **settings) as api`` runs the app's lifespan."""

    @asynccontextmanager
    async def start(
        database_url: str, *, client: tuple[str, int] = LOOPBACK, **overrides: Any
    ) -> AsyncIterator[Api]:
        settings = make_settings(database_url).model_copy(update={"jobs": [TEST_JOBS], **overrides})
        app = create_app(settings)
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app, client=client)
            async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as http:
                yield Api(app, http, settings)

    return start


@pytest.fixture
async def api(start_api: ApiFactory, database_url: str) -> AsyncIterator[Api]:
    """The API on PostgreSQL and on SQLite, with RabbitMQ unreachable (outbox entries stay)."""
    async with start_api(database_url, amqp_url=DOWN_AMQP_URL) as running:
        yield running


@pytest.fixture
async def bounded_api(start_api: ApiFactory, database_url: str) -> AsyncIterator[Api]:
    """:func:`api` with the jobs of ``tests.api.bounds_jobs`` in its catalog too."""
    async with start_api(
        database_url, amqp_url=DOWN_AMQP_URL, jobs=[TEST_JOBS, BOUNDS_JOBS]
    ) as running:
        yield running
