"""The auth matrix of "Auth, once": keys, roles, the dashboard cookie, loopback-only mode."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.api.conftest import ADD, DOWN_AMQP_URL, Api
from tests.api.dashboard_pages import sign_in

REMOTE = ("10.0.0.5", 40000)
ALWAYS = ["/healthz", "/readyz", "/metrics"]
ENQUEUE = {"job": ADD, "args": [1, 2]}


@pytest.fixture
async def open_api(start_api: Any, sqlite_url: str) -> AsyncIterator[Api]:
    async with start_api(sqlite_url, amqp_url=DOWN_AMQP_URL) as api:
        yield api


@pytest.fixture
async def keyed_api(start_api: Any, sqlite_url: str) -> AsyncIterator[Api]:
    async with start_api(
        sqlite_url,
        amqp_url=DOWN_AMQP_URL,
        api_keys=["admin-secret-0123", "read-secret-01234:read"],
        client=REMOTE,
    ) as api:
        yield api


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


async def test_no_keys_serves_loopback(open_api: Api) -> None:
    assert (await open_api.http.get("/api/v1/jobs")).status_code == 200
    assert (await open_api.http.post("/api/v1/jobs", json=ENQUEUE)).status_code == 201
    assert (await open_api.http.get("/hangfire")).status_code == 200
    async with open_api.client(("::1", 5000)) as ipv6:
        assert (await ipv6.get("/api/v1/jobs")).status_code == 200
    async with open_api.client(("127.8.9.10", 5000)) as other_loopback:
        assert (await other_loopback.get("/api/v1/stats")).status_code == 200


async def test_no_keys_refuses_remote_clients(open_api: Api) -> None:
    async with open_api.client(REMOTE) as remote:
        for method, path in [
            ("GET", "/api/v1/jobs"),
            ("POST", "/api/v1/jobs"),
            ("GET", "/hangfire"),
            ("GET", "/api/v1/catalog"),
        ]:
            response = await remote.request(method, path, json=ENQUEUE)
            assert response.status_code == 403, path
            assert response.json()["error"]["code"] == "forbidden"
        # Forwarded headers never make a remote peer local.
        spoofed = await remote.get(
            "/api/v1/jobs", headers={"X-Forwarded-For": "127.0.0.1", "X-Real-IP": "127.0.0.1"}
        )
        assert spoofed.status_code == 403
        for path in ALWAYS:
            assert (await remote.get(path)).status_code == 200, path
    assert await open_api.count() == 0


async def test_missing_and_unknown_keys_are_401(keyed_api: Api) -> None:
    missing = await keyed_api.http.get("/api/v1/jobs")
    assert missing.status_code == 401
    assert missing.headers["WWW-Authenticate"] == "Bearer"
    assert missing.json()["error"]["code"] == "unauthorized"
    for headers in (
        bearer("wrong"),
        bearer(""),
        {"Authorization": "Basic YWRtaW4tc2VjcmV0LTAxMjM="},
        bearer("admin-secret-012"),
        bearer("admin-secret-01232"),
    ):
        response = await keyed_api.http.get("/api/v1/jobs", headers=headers)
        assert response.status_code == 401, headers


async def test_read_key_reads_but_never_writes(keyed_api: Api) -> None:
    read = bearer("read-secret-01234")
    for path in ("/api/v1/jobs", "/api/v1/stats", "/api/v1/catalog", "/api/v1/servers"):
        assert (await keyed_api.http.get(path, headers=read)).status_code == 200, path
    refused = await keyed_api.http.post("/api/v1/jobs", json=ENQUEUE, headers=read)
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "forbidden"
    bulk = await keyed_api.http.post("/api/v1/jobs/bulk", json={"jobs": [ENQUEUE]}, headers=read)
    assert bulk.status_code == 403
    assert await keyed_api.count() == 0
    admin = bearer("admin-secret-0123")
    created = await keyed_api.http.post("/api/v1/jobs", json=ENQUEUE, headers=admin)
    assert created.status_code == 201
    job_id = created.json()["id"]
    assert (await keyed_api.http.delete(f"/api/v1/jobs/{job_id}", headers=read)).status_code == 403
    assert (await keyed_api.http.get(f"/api/v1/jobs/{job_id}", headers=read)).status_code == 200
    assert (await keyed_api.http.delete(f"/api/v1/jobs/{job_id}", headers=admin)).status_code == 200


async def test_keys_are_needed_from_loopback_too(keyed_api: Api) -> None:
    async with keyed_api.client(("127.0.0.1", 1234)) as local:
        assert (await local.get("/api/v1/jobs")).status_code == 401
        page = await local.get("/hangfire")
        assert page.status_code == 303  # a page sends a browser to the login form
        assert page.headers["location"] == "/hangfire/login"


async def test_probes_and_metrics_are_always_served(keyed_api: Api) -> None:
    for path in ALWAYS:
        assert (await keyed_api.http.get(path)).status_code == 200, path


async def login(api: Api, key: str) -> Any:
    return await sign_in(api.http, key)


async def test_login_cookie_opens_the_dashboard_but_never_the_api(keyed_api: Api) -> None:
    assert (await keyed_api.http.get("/hangfire")).status_code == 303  # to the login form
    assert (await keyed_api.http.get("/hangfire/login")).status_code == 200
    response = await login(keyed_api, "read-secret-01234")
    assert response.status_code == 303
    set_cookie = response.headers["set-cookie"]
    assert "HttpOnly" in set_cookie
    assert "SameSite=strict" in set_cookie or "SameSite=Strict" in set_cookie
    token = response.cookies["orchestrator_session"]
    cookie = {"Cookie": f"orchestrator_session={token}"}
    page = await keyed_api.http.get("/hangfire", headers=cookie)
    assert page.status_code == 200
    assert "text/html" in page.headers["content-type"]
    api_call = await keyed_api.http.get("/api/v1/jobs", headers=cookie)
    assert api_call.status_code == 401
    tampered = {"Cookie": f"orchestrator_session={token[:-1]}{'0' if token[-1] != '0' else '1'}"}
    assert (await keyed_api.http.get("/hangfire", headers=tampered)).status_code == 303
    with_header = await keyed_api.http.get("/hangfire", headers=bearer("admin-secret-0123"))
    assert with_header.status_code == 200


async def test_login_with_a_wrong_key_sets_no_cookie(keyed_api: Api) -> None:
    response = await login(keyed_api, "guess")
    assert response.status_code == 401
    assert "set-cookie" not in response.headers


async def test_login_without_configured_keys_explains(open_api: Api) -> None:
    response = await login(open_api, "anything")
    assert response.status_code == 400
    assert "No API keys" in response.text


async def test_sessions_expire_and_die_with_their_key(keyed_api: Api) -> None:
    from datetime import UTC, datetime, timedelta

    from orchestrator.settings import ApiKey
    from orchestrator_api import sessions

    engine = keyed_api.runtime.engine
    key = ApiKey("a-read-key-of-16+", "read")
    now = datetime.now(UTC)
    token = await sessions.create(engine, key, now=now)
    assert await sessions.key_of(engine, [key], token, now=now + timedelta(seconds=1)) is key
    later = now + timedelta(hours=13)
    assert await sessions.key_of(engine, [key], token, now=later) is None
    other = ApiKey("another-admin-key-0", "admin")
    assert await sessions.key_of(engine, [other], token, now=now) is None
    assert await sessions.key_of(engine, [key], "garbage", now=now) is None
    await sessions.revoke(engine, token)
    assert await sessions.key_of(engine, [key], token, now=now) is None
