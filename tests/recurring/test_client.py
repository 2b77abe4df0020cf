"""Recurring-job methods of the client against the in-process API, on both stores."""

from __future__ import annotations

import httpx
import pytest

from orchestrator import AsyncClient, Cron
from orchestrator.errors import ApiError
from tests import jobs_for_tests as jobs
from tests.api.conftest import Api


def client_of(api: Api) -> AsyncClient:
    transport = httpx.ASGITransport(app=api.app, client=("127.0.0.1", 50000))
    return AsyncClient("http://127.0.0.1", transport=transport)


async def test_async_client_round_trip(api: Api) -> None:
    async with client_of(api) as client:
        created = await client.add_or_update(
            "team.report",
            jobs.echo.call("hi"),
            Cron.daily(3, 30),
            timezone="Europe/Berlin",
            misfire="strict",
            overlap="skip",
            retries=1,
        )
        assert created["id"] == "team.report" and created["kwargs"] == {}
        assert created["args"] == ["hi"] and created["cron"] == "30 3 * * *"
        assert created["misfire"] == "strict" and created["overlap"] == "skip"
        assert [d["id"] for d in await client.list_recurring()] == ["team.report"]
        job_id = await client.trigger("team.report")
        assert (await client.get(job_id))["recurring_id"] == "team.report"
        assert (await client.pause("team.report"))["paused"] is True
        assert (await client.resume("team.report"))["paused"] is False
        assert (await client.get_recurring("team.report"))["last_job_id"] == job_id
        await client.remove("team.report")
        with pytest.raises(ApiError) as missing:
            await client.get_recurring("team.report")
        assert missing.value.status == 404
        with pytest.raises(ApiError) as invalid:
            await client.add_or_update("x", jobs.add.call(1, 2), "not a cron")
        assert invalid.value.status == 422 and invalid.value.code == "invalid_cron"


