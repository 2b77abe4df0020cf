"""Who may see and do what in the dashboard, signed in through its login form in Chromium."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import expect

from orchestrator import Client
from orchestrator_api.auth import SESSION_COOKIE
from tests.browser import jobs
from tests.browser.conftest import Keys, Tabs, sign_in
from tests.browser.ui import Dashboard
from tests.support.dashboard_contract import ACTION_BUTTONS, PAGES
from tests.support.system import System

pytestmark = pytest.mark.e2e


def test_without_a_session_the_dashboard_asks_for_a_key(tabs: Tabs, system: System) -> None:
    stranger = tabs.open()
    response = stranger.page.goto(system.api_url + "/hangfire")
    assert response is not None
    if response.status == 200:  # sent to the login form rather than refused outright
        assert stranger.page.url.endswith("/hangfire/login")
    else:
        assert response.status == 401
    stranger.shot("refused")
    stranger.open("/hangfire/login")
    expect(stranger.page.get_by_label("API key")).to_be_visible()
    expect(stranger.page.get_by_role("link", name="Jobs", exact=True)).to_have_count(0)

    stranger.page.get_by_label("API key").fill("not-a-key")
    stranger.page.get_by_label("API key").press("Enter")
    expect(stranger.page.get_by_label("API key")).to_be_visible()  # still asked
    stranger.shot("unknown-key")
    assert stranger.page.request.get(system.api_url + "/hangfire", max_redirects=0).status in (
        303,
        307,
        401,
    )


def test_admin_key_signs_in_with_a_strict_http_only_session(tabs: Tabs) -> None:
    admin = tabs.open()
    sign_in(admin, Keys.admin)
    admin.shot("signed-in")
    expect(admin.page.locator("h1")).to_have_text("Overview")
    session = [c for c in admin.page.context.cookies() if c["name"] == SESSION_COOKIE]
    assert len(session) == 1 and session[0]["httpOnly"], session
    assert session[0]["sameSite"] == "Strict", session
    for heading in PAGES.values():
        expect(admin.page.get_by_role("link", name=heading, exact=True)).to_be_visible()


def test_read_key_sees_every_page_and_no_action(
    tabs: Tabs, admin: Dashboard, client: Client, tmp_path: Path
) -> None:
    failed = client.enqueue(jobs.flaky.call(str(tmp_path / "never-created")))
    admin.wait_for_job_state(failed, "Failed")
    expect(admin.button("Requeue")).to_be_visible()  # the reader lacks it for its role alone
    url, fields = admin.form_of("Requeue")

    reader = tabs.open(role="reader")
    sign_in(reader, Keys.read)
    for path, heading in [*PAGES.items(), (f"/hangfire/jobs/{failed}", None)]:
        reader.open(path, heading)
        for name in ACTION_BUTTONS:
            expect(reader.button(name)).to_have_count(0)

    # Posted with the reader's own cookies and token: refused for the role alone.
    reader.open("/hangfire/jobs", PAGES["/hangfire/jobs"])
    reader_token = reader.page.locator("meta[name=csrf-token]").get_attribute("content")
    assert reader_token and fields["csrf_token"] != reader_token  # bound to each session
    refused = reader.page.request.post(url, form={**fields, "csrf_token": reader_token})
    assert refused.status == 403, refused.text()
    assert client.get(failed)["state"] == "Failed"


def test_an_admin_post_without_the_pages_token_changes_nothing(
    admin: Dashboard, client: Client, tmp_path: Path
) -> None:
    failed = client.enqueue(jobs.flaky.call(str(tmp_path / "never-created")))
    admin.wait_for_job_state(failed, "Failed")
    url, fields = admin.form_of("Requeue")
    assert fields.get("csrf_token"), "the form carries no per-session token"
    forged = {**fields, "csrf_token": "forged"}
    missing = {name: value for name, value in fields.items() if name != "csrf_token"}
    for sent in (forged, missing):
        refused = admin.page.request.post(url, form=sent)
        assert refused.status == 403, refused.text()
    # What another port of the same host can do: plant the CSRF cookie and post its value.
    planted = "p" * 43
    host = urlsplit(url).hostname or ""
    admin.page.context.add_cookies(
        [{"name": "orchestrator_csrf", "value": planted, "domain": host, "path": "/hangfire"}]
    )
    refused = admin.page.request.post(url, form={**fields, "csrf_token": planted})
    assert refused.status == 403, refused.text()
    assert admin.page.request.get(url).status in (404, 405)  # a GET never acts
    assert client.get(failed)["state"] == "Failed"
    accepted = admin.page.request.post(url, form=fields, max_redirects=0)
    assert accepted.status == 303
    assert client.get(failed)["state"] != "Failed"
