"""Every dashboard page renders in Chromium and shows what the system holds."""

from __future__ import annotations

import re
import time
from datetime import datetime
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo

import pytest
from playwright.sync_api import expect

from orchestrator import Client
from tests.browser import jobs
from tests.browser.conftest import PHONE, Tabs
from tests.browser.ui import Dashboard
from tests.support.dashboard_contract import NAV_LINKS, PAGES

pytestmark = pytest.mark.e2e


def wait_for(client: Client, job_id: str, state: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while (shown := client.get(job_id)["state"]) != state:
        assert time.monotonic() < deadline, f"{job_id} is {shown}, never {state}"
        time.sleep(0.1)


def test_every_page_has_its_heading_and_the_navigation(admin: Dashboard) -> None:
    for path, heading in [*PAGES.items(), ("/hangfire/jobs?state=Failed", "Jobs")]:
        admin.open(path, heading)
        navigation = admin.page.get_by_role("navigation")
        for link in NAV_LINKS:
            expect(navigation.get_by_role("link", name=link, exact=True).first).to_be_visible()
    admin.page.get_by_role("navigation").get_by_role("link", name="Recurring", exact=True).click()
    expect(admin.page.locator("h1")).to_have_text("Recurring")


def test_pages_show_jobs_queues_servers_and_batches(
    admin: Dashboard, client: Client, tmp_path: Path
) -> None:
    done = client.enqueue(jobs.quick.call("shown"))
    assert client.wait(done, timeout=60) == "done: shown"
    retrying = client.enqueue(
        jobs.flaky.call(str(tmp_path / "missing")), retries=2, retry_delays=[3600]
    )
    batch = client.batch([jobs.quick.call("in a batch"), jobs.quick.call("also")])
    wait_for(client, retrying, "Scheduled")

    admin.open(f"/hangfire/jobs/{done}")
    expect(admin.job_state()).to_have_text("Succeeded")
    expect(admin.page.get_by_text("browser.quick").first).to_be_visible()
    expect(admin.page.get_by_text("done: shown").first).to_be_visible()
    assert admin.history_states() in (
        ["Enqueued", "Processing", "Succeeded"],
        ["Succeeded", "Processing", "Enqueued"],
    )

    admin.open("/hangfire/jobs?state=Succeeded", "Jobs")
    assert done in admin.listed_job_ids()
    admin.open("/hangfire/retries", "Retries")
    assert retrying in admin.listed_job_ids()
    admin.open(f"/hangfire/jobs/{retrying}")
    expect(admin.job_state()).to_have_text("Scheduled")
    expect(admin.page.get_by_text("flag file").first).to_be_visible()  # the exception

    admin.open("/hangfire", "Overview")
    for state in ("Succeeded", "Scheduled"):
        expect(admin.page.get_by_text(state).first).to_be_visible()
    admin.open("/hangfire/queues", "Queues")
    expect(admin.page.get_by_text("default", exact=True).first).to_be_visible()
    admin.open("/hangfire/servers", "Servers")
    for role in ("api", "worker", "scheduler"):
        expect(admin.page.get_by_text(role, exact=True).first).to_be_visible()
    admin.open("/hangfire/batches", "Batches")
    admin.page.get_by_role("link", name=str(batch["id"])[:8], exact=True).click()
    expect(admin.page.locator("h1")).to_have_text("Batch")
    expect(admin.page.get_by_text(str(batch["id"])).first).to_be_visible()
    assert {str(j) for j in batch["job_ids"]} <= admin.listed_job_ids()
    admin.shot("batch")


def test_times_are_shown_in_the_viewers_zone_with_utc_on_hover(
    tabs: Tabs, admin_session: dict[str, object], client: Client
) -> None:
    job_id = client.enqueue(jobs.quick.call("in Tokyo"))
    client.wait(job_id, timeout=60)
    viewer = tabs.open(role="tokyo", storage_state=admin_session, timezone_id="Asia/Tokyo")
    viewer.open(f"/hangfire/jobs/{job_id}")
    first = viewer.page.locator("time[datetime]").first
    expect(first).to_have_attribute("title", re.compile("UTC"))
    utc = datetime.fromisoformat(first.get_attribute("datetime") or "")
    tokyo = utc.astimezone(ZoneInfo("Asia/Tokyo"))
    # 9 hours ahead of the title, in the browser's 12- or 24-hour clock.
    expect(first).to_contain_text(re.compile(f"({tokyo:%H}|{tokyo:%I}):{tokyo:%M:%S}"))
    expect(first).not_to_contain_text("UTC")


def _luminance(css_color: str) -> float:
    red, green, blue = (int(v) for v in re.findall(r"\d+", css_color)[:3])
    return (0.2126 * red + 0.7152 * green + 0.0722 * blue) / 255


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_light_and_dark_at_phone_width(
    tabs: Tabs, admin_session: dict[str, object], scheme: Literal["light", "dark"]
) -> None:
    phone = tabs.open(role=scheme, storage_state=admin_session, viewport=PHONE, color_scheme=scheme)
    for path, heading in (("/hangfire", "Overview"), ("/hangfire/jobs", "Jobs")):
        phone.open(path, heading)
        width = phone.page.evaluate("document.documentElement.scrollWidth")
        assert width <= PHONE["width"], f"{path} is {width}px wide on a phone"
        colors = phone.page.evaluate(
            "() => { const s = getComputedStyle(document.body);"
            " return [s.backgroundColor, s.color]; }"
        )
        background, text = (_luminance(c) for c in colors)
        if scheme == "dark":
            assert background < 0.3 < text, colors
        else:
            assert text < 0.3 < background, colors
