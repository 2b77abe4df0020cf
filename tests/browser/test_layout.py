"""The dashboard at a laptop's 1280 px and a phone's 390 px (issue 14, point 11): every column
and every action button of the Recurring page and the job lists is on screen where it is drawn,
without scrolling sideways, and no main page is wider than a phone."""

from __future__ import annotations

import re
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import ViewportSize, expect

from orchestrator import Client
from tests.browser import jobs
from tests.browser.conftest import LAPTOP, PHONE, Tabs
from tests.browser.ui import Dashboard
from tests.support.dashboard_contract import PAGES

pytestmark = pytest.mark.e2e

VIEWPORTS: dict[str, ViewportSize] = {"laptop": LAPTOP, "phone": PHONE}
RECURRING_BUTTONS = ("Trigger now", "Pause", "Resume", "Delete")


def _state(client: Client, job_id: str, state: str, timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while (job := client.get(job_id))["state"] != state:
        assert time.monotonic() < deadline, f"{job_id} is {job['state']}, never {state}"
        time.sleep(0.1)
    return job


def _wide_recurring_jobs(client: Client) -> str:
    """Two recurring jobs with everything long: ids, arguments, a cron in words, a zone, a last
    run; one paused (its button says Resume). Returns the first one's id."""
    tag = uuid.uuid4().hex[:8]
    wide = f"layout-{tag}-monthly-invoices-for-every-customer-account"
    label = "invoice run for every customer account of the northern region " * 2
    zone = "America/Argentina/Buenos_Aires"
    client.add_or_update(wide, jobs.quick.call(label), "15 4 1,15 * MON-FRI", timezone=zone)
    paused = f"layout-{tag}-weekly-reconciliation-of-payment-provider-ledgers"
    client.add_or_update(paused, jobs.other.call(label), "30 0 9 * * 1", timezone=zone)
    client.pause(paused)
    client.wait(client.trigger(wide), timeout=60)  # a last run and its job, shown beside it
    return wide


def _open(tabs: Tabs, session: dict[str, Any], viewport: str) -> Dashboard:
    return tabs.open(role=viewport, storage_state=session, viewport=VIEWPORTS[viewport])


@pytest.mark.parametrize("viewport", VIEWPORTS)
def test_recurring_columns_and_buttons_are_on_screen(
    tabs: Tabs, admin_session: dict[str, Any], client: Client, viewport: str
) -> None:
    wide = _wide_recurring_jobs(client)
    tab = _open(tabs, admin_session, viewport)
    tab.open("/hangfire/recurring", "Recurring")
    row = tab.item(wide, "Trigger now")
    expect(row).to_contain_text("At 04:15, on day 1 and 15 of the month, or Monday through Friday")
    expect(row).to_contain_text("America/Argentina/Buenos_Aires")
    tab.shot(f"recurring-{viewport}")

    problems = []
    for name in RECURRING_BUTTONS:
        buttons = tab.page.get_by_role("button", name=name, exact=True)
        assert buttons.count() > 0, name
        problems += tab.off_screen(buttons)
    if viewport == "laptop":  # on a phone each row is a card, its labels beside the values
        problems += tab.off_screen(tab.page.get_by_role("columnheader"))
    assert not problems, "\n".join(problems)
    assert tab.page_width() <= VIEWPORTS[viewport]["width"]


@pytest.mark.parametrize("viewport", VIEWPORTS)
def test_job_lists_with_run_columns_fit(
    tabs: Tabs, admin_session: dict[str, Any], client: Client, tmp_path: Path, viewport: str
) -> None:
    done = client.enqueue(jobs.quick.call("listed with its run"))
    client.wait(done, timeout=60)
    ran = _state(client, done, "Succeeded")
    worker = next(h["data"]["worker"] for h in ran["history"] if h["state"] == "Processing")
    running = client.enqueue(jobs.hold.call(str(tmp_path / "marks"), seconds=120.0))
    try:
        _state(client, running, "Processing")
        tab = _open(tabs, admin_session, viewport)
        for state, took, job_id in (
            ("Succeeded", "Duration", done),
            ("Processing", "Running for", running),
        ):
            tab.open(f"/hangfire/jobs?state={state}", "Jobs")
            row = tab.item(job_id[:8], "Delete")
            expect(row).to_contain_text(worker)
            expect(row).to_contain_text(re.compile(r"\d(\.\d\d)? (s|min)"))
            expect(tab.page.get_by_text(took, exact=True).first).to_be_attached()
            problems = tab.off_screen(tab.page.get_by_role("button", name="Delete", exact=True))
            if viewport == "laptop":
                problems += tab.off_screen(tab.page.get_by_role("columnheader"))
            assert not problems, f"{state}:\n" + "\n".join(problems)
            assert tab.page_width() <= VIEWPORTS[viewport]["width"], state
    finally:
        client.delete(running)


def test_no_main_page_is_wider_than_a_phone(
    tabs: Tabs, admin_session: dict[str, Any], client: Client, tmp_path: Path
) -> None:
    """Every page of the navigation, a job's details, a batch's page, with something on each."""
    failed = client.enqueue(jobs.flaky.call(str(tmp_path / ("missing-flag-file-" * 3))))
    batch = client.batch([jobs.quick.call("phone batch")], on_complete=jobs.quick.call("done"))
    _wide_recurring_jobs(client)
    _state(client, failed, "Failed")
    phone = _open(tabs, admin_session, "phone")
    paths = [
        *PAGES.items(),
        ("/hangfire/jobs?state=Failed", "Jobs"),
        (f"/hangfire/jobs/{failed}", "Job details"),
        (f"/hangfire/batches/{batch['id']}", "Batch"),
    ]
    for path, heading in paths:
        phone.open(path, heading)
        width = phone.page_width()
        assert width <= PHONE["width"], f"{path} is {width} px wide on a {PHONE['width']} px phone"
