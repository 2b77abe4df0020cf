"""The screenshots in docs/screenshots/, taken from a running system with a little of everything.

Refresh them with::

    ORCHESTRATOR_DOCS_SCREENSHOTS_DIR=docs/screenshots \
        .venv/bin/pytest tests/browser/test_screenshots.py

Run alone, so the system holds only the jobs made here. Without the variable they go beside the
other tests' screenshots, under ``docs/`` there.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from orchestrator import Client
from tests.browser import jobs
from tests.browser.conftest import PHONE, SCREENSHOTS, Tabs
from tests.browser.ui import Dashboard

pytestmark = pytest.mark.e2e


DOCS_SCREENSHOTS = Path(os.environ.get("ORCHESTRATOR_DOCS_SCREENSHOTS_DIR") or SCREENSHOTS / "docs")


def _save(page: Page, name: str) -> Path:
    """Under a fixed name, so a refresh replaces the picture the docs show."""
    DOCS_SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = DOCS_SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def _some_of_everything(client: Client, tmp_path: Path) -> tuple[str, str]:
    """Jobs in most states and two recurring jobs; returns a failed job and a running one."""
    done = [client.enqueue(jobs.quick.call(f"report {i}")) for i in range(6)]
    done += [client.enqueue(jobs.other.call(f"invoice {i}")) for i in range(3)]
    missing = Path("/srv/reports/settings.toml")  # a plausible file that is not there
    assert not missing.exists()
    failed = client.enqueue(jobs.flaky.call(str(missing)))
    running = client.enqueue(jobs.hold.call(str(tmp_path / "export.log"), seconds=120.0))
    client.schedule(jobs.quick.call("tomorrow's digest"), delay=86_400)
    client.add_or_update("nightly-report", jobs.quick.call("nightly"), "0 3 * * *")
    client.add_or_update(
        "invoices", jobs.other.call("monthly"), "0 6 1 * *", timezone="Europe/Berlin"
    )
    client.pause("invoices")
    done.append(client.trigger("nightly-report"))  # so it shows a last run and its job
    for job_id in done:
        client.wait(job_id, timeout=60)
    deadline = time.monotonic() + 60
    while client.get(failed)["state"] != "Failed" or client.get(running)["state"] != "Processing":
        assert time.monotonic() < deadline, "the example jobs never settled"
        time.sleep(0.1)
    return failed, running


def test_docs_screenshots(
    tabs: Tabs, admin: Dashboard, admin_session: dict[str, object], client: Client, tmp_path: Path
) -> None:
    failed, running = _some_of_everything(client, tmp_path)
    try:
        pages = {
            "overview": ("/hangfire", "Overview"),
            "jobs": ("/hangfire/jobs", "Jobs"),
            "job-details": (f"/hangfire/jobs/{failed}", None),
            "recurring": ("/hangfire/recurring", "Recurring"),
            "servers": ("/hangfire/servers", "Servers"),
        }
        for name, (path, heading) in pages.items():
            admin.open(path, heading)
            if name == "job-details":
                expect(admin.job_state()).to_have_text("Failed")
            _save(admin.page, name)

        phone = tabs.open(role="phone", viewport=PHONE, storage_state=admin_session)
        phone.open("/hangfire", "Overview")
        width = phone.page.evaluate("document.documentElement.scrollWidth")
        assert width <= PHONE["width"], f"the overview is {width}px wide on a phone"
        _save(phone.page, "overview-phone")

        dark = tabs.open(role="dark", storage_state=admin_session, color_scheme="dark")
        dark.open("/hangfire", "Overview")
        _save(dark.page, "overview-dark")
    finally:
        client.delete(running)
