"""Probes, metrics, OpenAPI and the status page; the API keeps serving while RabbitMQ is down."""

from __future__ import annotations

from typing import Any

from prometheus_client import REGISTRY

from tests.api.conftest import ADD, DOWN_AMQP_URL, Api


async def test_healthz(api: Api) -> None:
    response = await api.http.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_broker_outage_keeps_the_api_ready_and_enqueuing(api: Api) -> None:
    ready = await api.http.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["checks"] == {"store": True, "broker": False}
    job_id = await api.enqueue()
    # Not published: the entry waits for the scheduler's relay.
    assert len(await api.outbox_for(job_id)) == 1


async def test_readyz_is_503_when_the_store_is_unreachable(start_api: Any) -> None:
    nowhere = "postgresql://postgres@127.0.0.1:1/nowhere"
    async with start_api(nowhere, amqp_url=DOWN_AMQP_URL) as api:
        ready = await api.http.get("/readyz")
        assert ready.status_code == 503
        assert ready.json()["checks"]["store"] is False
        assert (await api.http.get("/healthz")).status_code == 200
        failed = await api.http.post("/api/v1/jobs", json={"job": ADD, "args": [1, 2]})
        assert failed.status_code == 503
        assert failed.json()["error"]["code"] == "store_unavailable"


def _requests(route: str, status: str) -> float:
    value = REGISTRY.get_sample_value(
        "orchestrator_http_requests_total", {"method": "GET", "route": route, "status": status}
    )
    return value or 0.0


async def test_metrics_count_requests_by_route_template(api: Api) -> None:
    job_id = await api.enqueue()
    before = _requests("/api/v1/jobs/{job_id}", "200")
    before_404 = _requests("/api/v1/jobs/{job_id}", "404")
    await api.http.get(f"/api/v1/jobs/{job_id}")
    await api.http.get("/api/v1/jobs/00000000-0000-0000-0000-000000000000")
    assert _requests("/api/v1/jobs/{job_id}", "200") == before + 1
    assert _requests("/api/v1/jobs/{job_id}", "404") == before_404 + 1
    text = (await api.http.get("/metrics")).text
    assert "orchestrator_http_requests_total" in text
    assert "orchestrator_jobs_enqueued_total" in text
    assert job_id not in text


async def test_requests_refused_before_routing_never_label_the_raw_path(
    start_api: Any, sqlite_url: str
) -> None:
    async with start_api(
        sqlite_url, amqp_url=DOWN_AMQP_URL, api_keys=["ops-test-key-0123456"]
    ) as api:
        before = _requests("/api/*", "401")
        await api.http.get("/api/v1/jobs/123")
        assert _requests("/api/*", "401") == before + 1
        before_404 = _requests("<unmatched>", "404")
        await api.http.get("/no/such/page")
        assert _requests("<unmatched>", "404") == before_404 + 1
        assert "/no/such/page" not in (await api.http.get("/metrics")).text


async def test_openapi_describes_the_endpoints(api: Api) -> None:
    schema = (await api.http.get("/openapi.json")).json()
    assert {
        "/api/v1/jobs",
        "/api/v1/jobs/bulk",
        "/api/v1/jobs/{job_id}",
        "/api/v1/jobs/{job_id}/requeue",
        "/api/v1/stats",
    } <= schema["paths"].keys()


async def test_dashboard_shows_real_data(api: Api) -> None:
    job_id = await api.enqueue()
    page = await api.http.get("/hangfire")
    assert page.status_code == 200
    assert 'href="/hangfire/jobs?state=Enqueued"' in page.text
    jobs = await api.http.get("/hangfire/jobs")
    assert job_id in jobs.text
    assert ADD in jobs.text
