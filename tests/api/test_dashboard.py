"""The dashboard's pages and its access rules: every page renders what the store holds, nothing
changes on GET, every POST needs the CSRF token, a read key sees no action and may not act."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from orchestrator.lifecycle import State
from tests.api.conftest import ADD, DOWN_AMQP_URL, ECHO, Api
from tests.api.dashboard_pages import (
    add_dead_letter,
    job_state,
    open_page,
    post,
    read,
    sign_in,
    snapshot,
)
from tests.support.dashboard_contract import ACTION_BUTTONS, NAV_LINKS, PAGES

REMOTE = ("10.0.0.5", 40000)


async def _populate(api: Api) -> dict[str, str]:
    """One job in each interesting state, a recurring job, a batch and a dead letter."""
    ids = {
        "enqueued": await api.enqueue(ECHO, args=["needle in the arguments"]),
        "scheduled": await api.enqueue(ADD, args=[1, 1], delay_seconds=3600),
        "failed": await api.enqueue(ADD, args=[2, 2]),
        "succeeded": await api.enqueue(ADD, args=[3, 3]),
    }
    ids["awaiting"] = await api.enqueue(ADD, args=[4, 4], continue_after=ids["enqueued"])
    await api.move(ids["failed"], State.PROCESSING, State.FAILED)
    await api.move(ids["succeeded"], State.PROCESSING, State.SUCCEEDED)
    put = await api.http.put(
        "/api/v1/recurring/nightly", json={"job": ADD, "args": [5, 5], "cron": "0 3 * * *"}
    )
    assert put.status_code == 201, put.text
    batch = await api.http.post("/api/v1/batches", json={"jobs": [{"job": ADD, "args": [6, 6]}]})
    assert batch.status_code == 201, batch.text
    ids["batch"] = batch.json()["id"]
    ids["dead_letter"] = str(await add_dead_letter(api, ids["enqueued"]))
    return ids


async def test_every_page_renders_with_its_heading_and_navigation(api: Api) -> None:
    ids = await _populate(api)
    for path, heading in [
        *PAGES.items(),
        ("/hangfire/jobs?state=Enqueued", "Jobs"),
        ("/hangfire/jobs?state=Failed&queue=default&sort=name", "Jobs"),
        (f"/hangfire/jobs/{ids['failed']}", "Job details"),
    ]:
        page = await open_page(api, path)
        assert page.h1 == heading, path
        assert page.nav_links == list(NAV_LINKS), path
        assert page.external == [], path  # everything is served by the API itself
    details = await open_page(api, f"/hangfire/jobs/{ids['awaiting']}")
    assert details.job_state == "Awaiting"
    assert ids["enqueued"] in details.job_links  # its parent
    assert "Enqueue now" in details.buttons
    queues = await api.http.get("/hangfire/jobs?state=Enqueued")
    assert "/hangfire/jobs?state=Enqueued&amp;queue=default" in queues.text


async def test_pages_show_what_the_store_holds(api: Api) -> None:
    ids = await _populate(api)
    failed = await api.http.get(f"/hangfire/jobs/{ids['failed']}")
    assert read(failed.text).job_state == "Failed"
    assert ADD in failed.text
    assert "<time datetime=" in failed.text and ' UTC"' in failed.text
    for state in ("Enqueued", "Processing", "Failed"):
        assert f">{state}</span>" in failed.text  # the history table
    succeeded = await api.http.get(f"/hangfire/jobs/{ids['succeeded']}")
    assert "Expires in" in succeeded.text and "59 min" in succeeded.text  # moved with 1 h
    recurring = (await api.http.get("/hangfire/recurring")).text
    assert "nightly" in recurring and "0 3 * * *" in recurring and "UTC" in recurring
    assert ids["batch"] in (await api.http.get("/hangfire/batches")).text
    dead = (await api.http.get("/hangfire/dead-letters")).text
    assert "rejected by a worker" in dead
    overview = (await api.http.get("/hangfire")).text
    assert "Jobs per hour, last 24 hours" in overview and "Jobs per day, last 7 days" in overview
    assert 'hx-get="/hangfire/realtime" hx-trigger="every 2s"' in overview
    queues = (await api.http.get("/hangfire/queues")).text
    assert ">default</a>" in queues
    assert "RabbitMQ is not connected" in queues  # this API's broker is unreachable
    servers = (await api.http.get("/hangfire/servers")).text
    assert ">api</td>" in servers and "Alive" in servers


async def test_get_never_changes_anything(api: Api) -> None:
    ids = await _populate(api)
    before = await snapshot(api)
    paths = [*PAGES, f"/hangfire/jobs/{ids['failed']}", "/hangfire/realtime"]
    # The action URLs answer GET with 405 and do nothing.
    paths += [
        f"/hangfire/jobs/{ids['failed']}/requeue",
        f"/hangfire/jobs/{ids['enqueued']}/delete",
        f"/hangfire/jobs/{ids['scheduled']}/enqueue",
        "/hangfire/actions/requeue-failed",
        "/hangfire/recurring/nightly/trigger",
        "/hangfire/recurring/nightly/pause",
        f"/hangfire/dead-letters/{ids['dead_letter']}/discard",
    ]
    for path in paths:
        response = await api.http.get(path)
        assert response.status_code in (200, 405), path
    assert await snapshot(api) == before


async def test_posts_without_the_csrf_token_are_refused(api: Api) -> None:
    ids = await _populate(api)
    await open_page(api, "/hangfire/jobs")  # the viewer has its CSRF cookie
    before = await snapshot(api)
    for data in ({}, {"csrf_token": ""}, {"csrf_token": "guessed-" * 6}):
        for path in (
            f"/hangfire/jobs/{ids['failed']}/requeue",
            f"/hangfire/jobs/{ids['enqueued']}/delete",
            "/hangfire/actions/requeue-failed",
            "/hangfire/recurring/nightly/trigger",
            f"/hangfire/dead-letters/{ids['dead_letter']}/discard",
        ):
            response = await api.http.post(path, data=data, follow_redirects=False)
            assert response.status_code == 403, (path, data)
            assert "security token" in read(response.text).status
    # The right token in the form but no cookie (another site's page cannot send it).
    token = (await open_page(api, "/hangfire/jobs")).csrf_token
    async with api.client(("127.0.0.1", 4000)) as cookieless:
        response = await cookieless.post(
            f"/hangfire/jobs/{ids['failed']}/requeue", data={"csrf_token": token}
        )
        assert response.status_code == 403
    assert await snapshot(api) == before
    assert await job_state(api, ids["failed"]) == "Failed"
    # And with the token, the same POST works.
    response = await post(api, f"/hangfire/jobs/{ids['failed']}/requeue")
    assert response.status_code == 303
    assert await job_state(api, ids["failed"]) == "Enqueued"


async def test_csrf_cookie_is_strict_and_http_only(api: Api) -> None:
    async with api.client(("127.0.0.1", 4001)) as fresh:
        response = await fresh.get("/hangfire")
    cookie = response.headers["set-cookie"]
    assert cookie.startswith("orchestrator_csrf=")
    assert "HttpOnly" in cookie and "samesite=strict" in cookie.lower()
    assert "Path=/hangfire" in cookie
    assert "script-src 'self'" in response.headers["content-security-policy"]


async def test_static_files_are_served_from_the_package(api: Api) -> None:
    htmx = await api.http.get("/hangfire/static/htmx.min.js")
    assert htmx.status_code == 200
    assert htmx.text.startswith("/*! htmx 2.") and "htmx" in htmx.text
    assert (await api.http.get("/hangfire/static/dashboard.css")).status_code == 200
    script = await api.http.get("/hangfire/static/dashboard.js")
    assert "time[datetime]" in script.text
    assert (await api.http.get("/hangfire/static/../web.py")).status_code == 404
    assert (await api.http.get("/hangfire/static/web.py")).status_code == 404


@pytest.fixture
async def keyed_api(start_api: Any, sqlite_url: str) -> AsyncIterator[Api]:
    async with start_api(
        sqlite_url,
        amqp_url=DOWN_AMQP_URL,
        api_keys=["admin-secret-0123", "read-secret-01234:read"],
        client=REMOTE,
    ) as running:
        yield running


async def _sign_in(client: Any, key: str) -> None:
    response = await sign_in(client, key)
    assert response.status_code == 303


async def test_read_key_sees_everything_and_no_action(keyed_api: Api) -> None:
    admin_bearer = {"Authorization": "Bearer admin-secret-0123"}
    created = await keyed_api.http.post(
        "/api/v1/jobs", json={"job": ADD, "args": [1, 2]}, headers=admin_bearer
    )
    job_id = created.json()["id"]
    await keyed_api.move(job_id, State.PROCESSING, State.FAILED)
    put = await keyed_api.http.put(
        "/api/v1/recurring/r1",
        json={"job": ADD, "args": [1, 1], "cron": "@daily"},
        headers=admin_bearer,
    )
    assert put.status_code == 201

    async with keyed_api.client(REMOTE) as admin:
        await _sign_in(admin, "admin-secret-0123")
        admin_page = await open_page(keyed_api, f"/hangfire/jobs/{job_id}", admin)
        assert {"Requeue", "Delete"} <= set(admin_page.buttons)
        failed_list = await open_page(keyed_api, "/hangfire/jobs?state=Failed", admin)
        assert f"Select job {job_id}" in failed_list.checkboxes
        assert "Requeue all failed" in failed_list.buttons

    async with keyed_api.client(REMOTE) as reader:
        await _sign_in(reader, "read-secret-01234")
        for path in [*PAGES, f"/hangfire/jobs/{job_id}", "/hangfire/jobs?state=Failed"]:
            page = await open_page(keyed_api, path, reader)
            assert not set(ACTION_BUTTONS) & set(page.buttons), (path, page.buttons)
            assert page.checkboxes == [], path
            assert page.nav_links == list(NAV_LINKS)
        token = (await open_page(keyed_api, "/hangfire/jobs", reader)).csrf_token
        before = await snapshot(keyed_api)
        for path in (
            f"/hangfire/jobs/{job_id}/requeue",
            f"/hangfire/jobs/{job_id}/delete",
            "/hangfire/actions/requeue-failed",
            "/hangfire/recurring/r1/pause",
        ):
            refused = await reader.post(path, data={"csrf_token": token}, follow_redirects=False)
            assert refused.status_code == 403, path
        assert await snapshot(keyed_api) == before


async def test_pages_send_a_browser_without_a_session_to_the_login_form(keyed_api: Api) -> None:
    page = await keyed_api.http.get("/hangfire/jobs", follow_redirects=False)
    assert page.status_code == 303
    assert page.headers["location"] == "/hangfire/login"
    poll = await keyed_api.http.get("/hangfire/realtime", headers={"HX-Request": "true"})
    assert poll.status_code == 401
    action = await keyed_api.http.post("/hangfire/actions/requeue-failed", data={})
    assert action.status_code == 401
    login = await keyed_api.http.get("/hangfire/login")
    assert login.status_code == 200
    assert read(login.text).nav_links == []  # nothing to navigate to before signing in
    assert (await keyed_api.http.get("/hangfire/static/dashboard.css")).status_code == 200


async def test_without_keys_only_loopback_clients_are_served(
    start_api: Any, sqlite_url: str
) -> None:
    async with start_api(sqlite_url, amqp_url=DOWN_AMQP_URL) as api:
        job_id = await api.enqueue()
        for path in [*PAGES, f"/hangfire/jobs/{job_id}"]:
            assert (await api.http.get(path)).status_code == 200, path
        async with api.client(REMOTE) as remote:
            for path in [*PAGES, f"/hangfire/jobs/{job_id}"]:
                assert (await remote.get(path)).status_code == 403, path
            response = await remote.post(f"/hangfire/jobs/{job_id}/delete", data={})
            assert response.status_code == 403
        assert await job_state(api, job_id) == "Enqueued"


