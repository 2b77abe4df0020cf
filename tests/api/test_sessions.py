"""Sessions and keys (issue 11, "What was seen" 6 and 11): logout ends a session on every
replica, CSRF tokens are bound to the viewer (a planted cookie does not act), the login form
is protected too, failed keys are throttled per client, short keys are refused at start-up, and
cookies are Secure behind a TLS proxy."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import AsyncIterator
from typing import Any

import pytest

from orchestrator.lifecycle import State
from orchestrator_api.auth import SESSION_COOKIE
from tests.api.conftest import DOWN_AMQP_URL, Api
from tests.api.dashboard_pages import job_state, read, sign_in

ADMIN = "sessions-admin-key-0123456789"
READ = "sessions-read-key-0123456789"
REMOTE = ("10.0.0.5", 40000)
PLANTED = "p" * 43  # what a page on another port of the same host can set as a cookie


@pytest.fixture
async def keyed_api(start_api: Any, sqlite_url: str) -> AsyncIterator[Api]:
    async with start_api(
        sqlite_url, amqp_url=DOWN_AMQP_URL, api_keys=[ADMIN, f"{READ}:read"], client=REMOTE
    ) as api:
        yield api


async def _signed_in(api: Api, key: str = ADMIN) -> Any:
    client = api.client(REMOTE)
    response = await sign_in(client, key)
    assert response.status_code == 303, response.text
    return client


async def test_logout_ends_the_session_on_every_replica(start_api: Any, sqlite_url: str) -> None:
    options: dict[str, Any] = {"amqp_url": DOWN_AMQP_URL, "api_keys": [ADMIN], "client": REMOTE}
    async with start_api(sqlite_url, **options) as one, start_api(sqlite_url, **options) as two:
        browser = await _signed_in(one)
        cookie = browser.cookies[SESSION_COOKIE]
        stolen = {"Cookie": f"{SESSION_COOKIE}={cookie}"}
        assert (await two.http.get("/hangfire/jobs", headers=stolen)).status_code == 200
        page = read((await browser.get("/hangfire")).text)
        assert page.csrf_token
        out = await browser.post(
            "/hangfire/logout", data={"csrf_token": page.csrf_token}, follow_redirects=False
        )
        assert out.status_code == 303 and out.headers["location"] == "/hangfire/login"
        # The old cookie, replayed on either replica: signed out, not just forgotten.
        for api in (one, two):
            again = await api.http.get("/hangfire/jobs", headers=stolen, follow_redirects=False)
            assert again.status_code == 303 and again.headers["location"] == "/hangfire/login"
            poll = await api.http.get("/hangfire/realtime", headers={**stolen, "HX-Request": "1"})
            assert poll.status_code == 401
            assert (await api.http.get("/docs", headers=stolen)).status_code == 401
        await browser.aclose()


async def test_logout_needs_the_pages_token(keyed_api: Api) -> None:
    browser = await _signed_in(keyed_api)
    refused = await browser.post("/hangfire/logout", data={}, follow_redirects=False)
    assert refused.status_code == 403
    assert (await browser.get("/hangfire/jobs")).status_code == 200  # still signed in
    await browser.aclose()


async def test_a_planted_csrf_cookie_with_the_same_value_in_the_form_changes_nothing(
    start_api: Any, sqlite_url: str
) -> None:
    """The audit's case: another port of the same host set ``orchestrator_csrf`` and posted
    the same value; that deleted a job. Without keys and with a signed-in admin alike."""
    async with start_api(sqlite_url, amqp_url=DOWN_AMQP_URL) as api:
        job = await api.enqueue()
        api.http.cookies.set("orchestrator_csrf", PLANTED)
        response = await api.http.post(
            f"/hangfire/jobs/{job}/delete", data={"csrf_token": PLANTED}, follow_redirects=False
        )
        assert response.status_code == 403
        assert await job_state(api, job) == "Enqueued"
        # The same browser's real token (bound to that planted cookie, by the server) works.
        token = read((await api.http.get("/hangfire")).text).csrf_token
        assert token and token != PLANTED
        done = await api.http.post(
            f"/hangfire/jobs/{job}/delete", data={"csrf_token": token}, follow_redirects=False
        )
        assert done.status_code == 303
        assert await job_state(api, job) == "Deleted"
    async with start_api(
        sqlite_url, amqp_url=DOWN_AMQP_URL, api_keys=[ADMIN], client=REMOTE
    ) as keyed:
        admin = await _signed_in(keyed)
        created = await admin.post(
            "/api/v1/jobs",
            json={"job": "tests.jobs_for_tests.add", "args": [1, 2]},
            headers={"Authorization": f"Bearer {ADMIN}"},
        )
        job = created.json()["id"]
        admin.cookies.set("orchestrator_csrf", PLANTED, path="/hangfire")
        for token in (PLANTED, admin.cookies[SESSION_COOKIE]):
            refused = await admin.post(
                f"/hangfire/jobs/{job}/delete", data={"csrf_token": token}, follow_redirects=False
            )
            assert refused.status_code == 403
        assert await job_state(keyed, job) == "Enqueued"
        await admin.aclose()


async def test_a_token_is_bound_to_its_session(keyed_api: Api) -> None:
    """One admin's page token does not work in another admin's session."""
    created = await keyed_api.http.post(
        "/api/v1/jobs",
        json={"job": "tests.jobs_for_tests.add", "args": [1, 2]},
        headers={"Authorization": f"Bearer {ADMIN}"},
    )
    failed = created.json()["id"]
    await keyed_api.move(failed, State.PROCESSING, State.FAILED)
    first, second = await _signed_in(keyed_api), await _signed_in(keyed_api)
    token = read((await first.get("/hangfire")).text).csrf_token
    refused = await second.post(
        f"/hangfire/jobs/{failed}/requeue", data={"csrf_token": token}, follow_redirects=False
    )
    assert refused.status_code == 403
    assert await job_state(keyed_api, failed) == "Failed"
    accepted = await first.post(
        f"/hangfire/jobs/{failed}/requeue", data={"csrf_token": token}, follow_redirects=False
    )
    assert accepted.status_code == 303
    await first.aclose()
    await second.aclose()


async def test_the_login_form_is_protected(keyed_api: Api) -> None:
    browser = keyed_api.client(REMOTE)
    missing = await browser.post("/hangfire/login", data={"key": ADMIN}, follow_redirects=False)
    assert missing.status_code == 403
    assert SESSION_COOKIE not in browser.cookies
    # A planted binding cookie with a made-up token: refused.
    browser.cookies.set("orchestrator_csrf", PLANTED, path="/hangfire")
    planted = await browser.post(
        "/hangfire/login", data={"key": ADMIN, "csrf_token": PLANTED}, follow_redirects=False
    )
    assert planted.status_code == 403
    # Posted from another site's page: refused before the form is read.
    cross = await sign_in(browser, ADMIN, headers={"Origin": "http://localhost:6666"})
    assert cross.status_code == 403
    assert SESSION_COOKIE not in browser.cookies
    assert (await sign_in(browser, ADMIN)).status_code == 303
    await browser.aclose()


async def test_unknown_bearer_keys_are_throttled_per_client(keyed_api: Api) -> None:
    burst = keyed_api.settings.auth_failure_burst
    async with keyed_api.client(("10.9.9.9", 1000)) as guesser:
        for attempt in range(burst):
            guess = {"Authorization": f"Bearer guess-{attempt:012d}"}
            assert (await guesser.get("/api/v1/jobs", headers=guess)).status_code == 401
        throttled = await guesser.get("/api/v1/jobs", headers={"Authorization": "Bearer x"})
        assert throttled.status_code == 429
        assert throttled.json()["error"]["code"] == "too_many_failures"
        assert int(throttled.headers["Retry-After"]) >= 1
        # Even the right key learns nothing while throttled: the guess is not looked at.
        right = await guesser.get("/api/v1/jobs", headers={"Authorization": f"Bearer {ADMIN}"})
        assert right.status_code == 429
    async with keyed_api.client(("10.9.9.10", 1000)) as neighbour:
        ok = await neighbour.get("/api/v1/jobs", headers={"Authorization": f"Bearer {ADMIN}"})
        assert ok.status_code == 200


async def test_failed_sign_ins_are_throttled(keyed_api: Api) -> None:
    burst = keyed_api.settings.auth_failure_burst
    async with keyed_api.client(("10.9.9.11", 1000)) as guesser:
        for attempt in range(burst):
            assert (await sign_in(guesser, f"guess-{attempt:012d}")).status_code == 401
        throttled = await sign_in(guesser, ADMIN)
        assert throttled.status_code == 429
        assert int(throttled.headers["Retry-After"]) >= 1
        assert "Too many failed sign-ins" in read(throttled.text).status
        assert SESSION_COOKIE not in guesser.cookies


async def test_throttle_behind_a_trusted_proxy_counts_the_forwarded_client(
    start_api: Any, sqlite_url: str
) -> None:
    proxy = ("10.0.0.2", 443)
    async with start_api(
        sqlite_url,
        amqp_url=DOWN_AMQP_URL,
        api_keys=[ADMIN],
        trusted_proxies=["10.0.0.2"],
        auth_failure_burst=2,
        client=proxy,
    ) as api:

        async def guess(client_ip: str) -> int:
            headers = {"Authorization": "Bearer wrong-key-000000", "X-Forwarded-For": client_ip}
            return (await api.http.get("/api/v1/jobs", headers=headers)).status_code

        assert [await guess("203.0.113.7") for _ in range(3)] == [401, 401, 429]
        assert await guess("203.0.113.8") == 401  # another client behind the same proxy
    async with start_api(
        sqlite_url, amqp_url=DOWN_AMQP_URL, api_keys=[ADMIN], auth_failure_burst=2, client=proxy
    ) as untrusted:
        # Not a trusted proxy: its X-Forwarded-For is ignored, the peer itself is counted.
        statuses = []
        for client_ip in ("203.0.113.1", "203.0.113.2", "203.0.113.3"):
            headers = {"Authorization": "Bearer wrong-key-000000", "X-Forwarded-For": client_ip}
            statuses.append((await untrusted.http.get("/api/v1/jobs", headers=headers)).status_code)
        assert statuses == [401, 401, 429]


def test_the_api_refuses_to_start_with_a_short_key(tmp_path: Any) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORCHESTRATOR_")}
    env.update(
        ORCHESTRATOR_API_KEYS="short-key:admin",
        ORCHESTRATOR_DATABASE_URL=f"sqlite:///{tmp_path}/never.db",
        ORCHESTRATOR_API_PORT="0",
    )
    started = subprocess.run(
        [sys.executable, "-m", "orchestrator_cli", "api"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert started.returncode != 0
    assert "ORCHESTRATOR_API_KEYS" in started.stderr and "at least 16" in started.stderr
    assert "short-key" not in started.stderr
    assert "Traceback" not in started.stderr


async def _session_cookie_header(api: Api, client: Any, **headers: str) -> str:
    """Sign in; the session's Set-Cookie. The binding cookie is sent back by hand: a Secure
    cookie is one an http test client keeps to itself."""
    form = await client.get("/hangfire/login", headers=headers)
    token = read(form.text).csrf_token
    binding = form.headers["set-cookie"].split(";")[0]
    response = await client.post(
        "/hangfire/login",
        data={"key": ADMIN, "csrf_token": token},
        headers={**headers, "Cookie": binding},
        follow_redirects=False,
    )
    assert response.status_code == 303, response.text
    cookies = response.headers.get_list("set-cookie")
    return next(c for c in cookies if c.startswith(SESSION_COOKIE))


async def test_cookies_are_secure_behind_a_tls_proxy(start_api: Any, sqlite_url: str) -> None:
    proxy = ("10.0.0.2", 443)
    https = {"X-Forwarded-Proto": "https"}
    base = {"amqp_url": DOWN_AMQP_URL, "api_keys": [ADMIN], "client": proxy}
    async with start_api(sqlite_url, **base) as plain:
        # Nobody is trusted: a forwarded scheme proves nothing, the request was http.
        assert "Secure" not in await _session_cookie_header(plain, plain.client(proxy), **https)
    async with start_api(sqlite_url, trusted_proxies=["10.0.0.0/24"], **base) as proxied:
        assert "Secure" in await _session_cookie_header(proxied, proxied.client(proxy), **https)
        assert "Secure" not in await _session_cookie_header(proxied, proxied.client(proxy))
    async with start_api(sqlite_url, cookie_secure=True, **base) as forced:
        cookie = await _session_cookie_header(forced, forced.client(proxy))
        assert "Secure" in cookie and "HttpOnly" in cookie and "Path=/" in cookie
        page = await forced.client(proxy).get("/hangfire/login")
        assert "Secure" in page.headers["set-cookie"]  # the CSRF binding cookie too
