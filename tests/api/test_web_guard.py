"""Web pages cannot drive a local instance: the Host check (DNS rebinding) and the Origin /
Sec-Fetch-Site check on every state-changing request (issue 11, "What was seen" 5 and 6)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from orchestrator.lifecycle import State
from tests.api.conftest import ADD, DOWN_AMQP_URL, Api
from tests.api.dashboard_pages import add_dead_letter, job_state, read, snapshot

REMOTE = ("10.0.0.5", 40000)
ADMIN_KEY = "guard-admin-key-0123456789"
EVIL = "http://rebound.example:5001"
CROSS_SITE: list[dict[str, str]] = [
    {"Origin": "http://evil.example"},
    {"Origin": "http://localhost:6666"},  # another port of the same host
    {"Origin": "null"},  # a sandboxed frame or a data: page
    {"Sec-Fetch-Site": "cross-site"},
    {"Sec-Fetch-Site": "same-site"},
    {"Origin": "http://127.0.0.1", "Sec-Fetch-Site": "cross-site"},
]


@pytest.fixture
async def open_api(start_api: Any, sqlite_url: str) -> AsyncIterator[Api]:
    async with start_api(sqlite_url, amqp_url=DOWN_AMQP_URL) as api:
        yield api


async def test_a_rebound_host_name_is_refused_without_keys(open_api: Api) -> None:
    for path in ("/api/v1/jobs", "/api/v1/stats", "/hangfire", "/hangfire/jobs", "/docs"):
        response = await open_api.http.get(path, headers={"Host": "rebound.example:5001"})
        assert response.status_code == 400, path
        error = response.json()["error"]
        assert error["code"] == "host_not_allowed", path
        assert "rebound.example:5001" in error["message"] and "DNS rebinding" in error["message"]
    enqueue = await open_api.http.post(
        "/api/v1/jobs", json={"job": ADD, "args": [1, 2]}, headers={"Host": "rebound.example"}
    )
    assert enqueue.status_code == 400
    assert await open_api.count() == 0


async def test_loopback_names_with_any_port_are_served(open_api: Api) -> None:
    for host in ("localhost", "localhost:5001", "127.0.0.1", "127.0.0.1:80", "[::1]:5001", "[::1]"):
        response = await open_api.http.get("/api/v1/stats", headers={"Host": host})
        assert response.status_code == 200, host


async def test_probes_answer_under_an_ip_literal_as_kubelet_sends_it(open_api: Api) -> None:
    for path in ("/healthz", "/readyz", "/metrics"):
        assert (await open_api.http.get(path, headers={"Host": "10.1.2.3:5001"})).status_code == 200
        assert (
            await open_api.http.get(path, headers={"Host": "[fd00::5]:5001"})
        ).status_code == 200
        rebound = await open_api.http.get(path, headers={"Host": "rebound.example"})
        assert rebound.status_code == 400, path
    # An IP literal is not enough for the API itself.
    assert (
        await open_api.http.get("/api/v1/jobs", headers={"Host": "10.1.2.3"})
    ).status_code == 400


async def test_configured_allowed_hosts(start_api: Any, sqlite_url: str) -> None:
    allowed = ["orchestrator.internal", ".corp.example"]
    async with start_api(sqlite_url, amqp_url=DOWN_AMQP_URL, allowed_hosts=allowed) as api:
        for host in ("orchestrator.internal:5001", "corp.example", "a.b.corp.example", "localhost"):
            assert (await api.http.get("/api/v1/jobs", headers={"Host": host})).status_code == 200
        for host in ("orchestrator.internal.evil", "evilcorp.example", "rebound.example"):
            assert (await api.http.get("/api/v1/jobs", headers={"Host": host})).status_code == 400


async def test_with_keys_the_host_is_checked_only_when_hosts_are_configured(
    start_api: Any, sqlite_url: str
) -> None:
    bearer = {"Authorization": f"Bearer {ADMIN_KEY}", "Host": "orchestrator-api:5001"}
    async with start_api(
        sqlite_url, amqp_url=DOWN_AMQP_URL, api_keys=[ADMIN_KEY], client=REMOTE
    ) as api:
        assert (await api.http.get("/api/v1/jobs", headers=bearer)).status_code == 200
    async with start_api(
        sqlite_url,
        amqp_url=DOWN_AMQP_URL,
        api_keys=[ADMIN_KEY],
        allowed_hosts=["orch.example.com"],
        client=REMOTE,
    ) as api:
        assert (await api.http.get("/api/v1/jobs", headers=bearer)).status_code == 400
        public = {**bearer, "Host": "orch.example.com"}
        assert (await api.http.get("/api/v1/jobs", headers=public)).status_code == 200
        for host in ("10.244.0.7:5001", "api:5001"):  # kubelet; Prometheus in compose
            probe = await api.http.get("/metrics", headers={"Host": host})
            assert probe.status_code == 200, host


async def _targets(api: Api) -> dict[str, str]:
    """One of each body-less state-changing request, ready to succeed."""
    failed = await api.enqueue()
    await api.move(failed, State.PROCESSING, State.FAILED)
    doomed = await api.enqueue()
    put = await api.http.put(
        "/api/v1/recurring/nightly", json={"job": ADD, "args": [1, 1], "cron": "@daily"}
    )
    assert put.status_code in (200, 201), put.text
    letter = await add_dead_letter(api, await api.enqueue())
    return {
        "trigger": "POST /api/v1/recurring/nightly/trigger",
        "pause": "POST /api/v1/recurring/nightly/pause",
        "resume": "POST /api/v1/recurring/nightly/resume",
        "requeue": f"POST /api/v1/jobs/{failed}/requeue",
        "replay": f"POST /api/v1/dead-letters/{letter}/replay",
        "delete": f"DELETE /api/v1/jobs/{doomed}",
        "failed": failed,
        "doomed": doomed,
    }


async def test_cross_site_writes_are_refused_and_change_nothing(open_api: Api) -> None:
    targets = await _targets(open_api)
    before = await snapshot(open_api)
    for name in ("trigger", "pause", "resume", "requeue", "replay", "delete"):
        method, path = targets[name].split(" ")
        for headers in CROSS_SITE:
            response = await open_api.http.request(method, path, headers=headers)
            assert response.status_code == 403, (name, headers, response.text)
            assert response.json()["error"]["code"] == "cross_site_request"
    # A form post of an enqueue from another site, too.
    form = await open_api.http.post(
        "/api/v1/jobs", content=b"job=x", headers={"Origin": "http://evil.example"}
    )
    assert form.status_code == 403
    assert await snapshot(open_api) == before
    assert await job_state(open_api, targets["failed"]) == "Failed"


async def test_same_origin_and_headerless_writes_pass(open_api: Api) -> None:
    targets = await _targets(open_api)
    own = [
        {},  # curl, httpx, the project's Client
        {"Origin": "http://127.0.0.1", "Sec-Fetch-Site": "same-origin"},
        {"Sec-Fetch-Site": "none"},  # typed into the address bar
    ]
    for index, name in enumerate(("trigger", "pause", "resume", "requeue", "replay", "delete")):
        method, path = targets[name].split(" ")
        response = await open_api.http.request(method, path, headers=own[index % len(own)])
        assert response.status_code in (200, 201, 202), (name, response.text)
    assert await job_state(open_api, targets["failed"]) == "Enqueued"
    assert await job_state(open_api, targets["doomed"]) == "Deleted"


async def test_configured_origins_may_write(start_api: Any, sqlite_url: str) -> None:
    async with start_api(
        sqlite_url, amqp_url=DOWN_AMQP_URL, allowed_origins=["https://ops.example.com/"]
    ) as api:
        enqueue = {"job": ADD, "args": [1, 2]}
        ok = await api.http.post(
            "/api/v1/jobs", json=enqueue, headers={"Origin": "https://ops.example.com"}
        )
        assert ok.status_code == 201
        refused = await api.http.post(
            "/api/v1/jobs", json=enqueue, headers={"Origin": "https://other.example.com"}
        )
        assert refused.status_code == 403


async def test_dashboard_posts_from_another_origin_are_refused(open_api: Api) -> None:
    failed = await open_api.enqueue()
    await open_api.move(failed, State.PROCESSING, State.FAILED)
    page = await open_api.http.get(f"/hangfire/jobs/{failed}")
    assert page.status_code == 200
    token = read(page.text).csrf_token
    assert token
    for headers in CROSS_SITE:
        # The viewer's own cookie and token, posted by another page: still refused.
        response = await open_api.http.post(
            f"/hangfire/jobs/{failed}/requeue", data={"csrf_token": token}, headers=headers
        )
        assert response.status_code == 403, headers
    assert await job_state(open_api, failed) == "Failed"
    accepted = await open_api.http.post(
        f"/hangfire/jobs/{failed}/requeue",
        data={"csrf_token": token},
        headers={"Origin": "http://127.0.0.1", "Sec-Fetch-Site": "same-origin"},
    )
    assert accepted.status_code == 303
    assert await job_state(open_api, failed) == "Enqueued"


async def test_security_headers_on_every_answer(open_api: Api) -> None:
    job = await open_api.enqueue()
    for path in (f"/api/v1/jobs/{job}", "/api/v1/jobs", "/api/v1/nope", "/healthz"):
        response = await open_api.http.get(path)
        assert response.headers["x-content-type-options"] == "nosniff", path
        assert response.headers["cache-control"] == "no-store", path
        assert response.headers["referrer-policy"] == "same-origin", path
        assert response.headers["cross-origin-resource-policy"] == "same-origin", path
    refused = await open_api.http.get("/api/v1/jobs", headers={"Host": "rebound.example"})
    assert refused.headers["cache-control"] == "no-store"
    page = await open_api.http.get("/hangfire/jobs")
    assert page.headers["x-frame-options"] == "DENY"
    policy = page.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in policy and "script-src 'self';" in policy
    assert "unsafe" not in policy
    static = await open_api.http.get("/hangfire/static/htmx.min.js")
    assert static.headers["cache-control"] == "public, max-age=3600"
    assert static.headers["x-content-type-options"] == "nosniff"
