"""Acting on jobs from the dashboard in Chromium, and watching the system carry it out."""

from __future__ import annotations

import re
import time
import uuid
from pathlib import Path

import pytest
from playwright.sync_api import expect

from orchestrator import Client
from tests.browser import jobs
from tests.browser.conftest import Tabs
from tests.browser.ui import UUID, WAIT_MS, Dashboard

pytestmark = pytest.mark.e2e

REQUEUED = ["Enqueued", "Processing", "Failed", "Enqueued", "Processing", "Succeeded"]


def wait_for_line(path: Path, word: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not (path.exists() and any(x.startswith(word) for x in path.read_text().splitlines())):
        assert time.monotonic() < deadline, f"{path} never said {word!r}"
        time.sleep(0.05)


def test_requeue_a_failed_job_and_watch_it_succeed(
    admin: Dashboard, client: Client, tmp_path: Path
) -> None:
    flag = tmp_path / "flag"
    job_id = client.enqueue(jobs.flaky.call(str(flag)))
    admin.wait_for_job_state(job_id, "Failed")
    expect(admin.page.get_by_text("RuntimeError").first).to_be_visible()
    flag.touch()  # the cause is fixed; the operator retries

    admin.act("Requeue")
    admin.wait_for_job_state(job_id, "Succeeded")
    expect(admin.page.get_by_text("flag found").first).to_be_visible()
    assert admin.history_states() in (REQUEUED, REQUEUED[::-1])
    assert client.get(job_id)["attempt"] == 2


def test_delete_a_processing_job_and_watch_it_cancelled(
    admin: Dashboard, client: Client, tmp_path: Path
) -> None:
    marks = tmp_path / "marks"
    job_id = client.enqueue(jobs.hold.call(str(marks)))
    admin.wait_for_job_state(job_id, "Processing")
    wait_for_line(marks, "started")

    admin.act("Delete")
    admin.wait_for_job_state(job_id, "Deleted")
    wait_for_line(marks, "cancelled")  # the running job saw its token fire
    assert client.get(job_id)["state"] == "Deleted"


def test_enqueue_a_scheduled_or_awaiting_job_now(admin: Dashboard, client: Client) -> None:
    job_id = client.schedule(jobs.quick.call("not tomorrow"), delay=86_400)
    child = client.continue_with(job_id, jobs.quick.call("not after its parent"))
    admin.wait_for_job_state(child, "Awaiting")
    admin.act("Enqueue now")
    admin.wait_for_job_state(child, "Succeeded")

    admin.wait_for_job_state(job_id, "Scheduled")
    admin.act("Enqueue now")
    admin.wait_for_job_state(job_id, "Succeeded")


def test_bulk_requeue_and_delete_of_selected_jobs(
    admin: Dashboard, client: Client, tmp_path: Path
) -> None:
    flag = tmp_path / "flag"
    failed = [client.enqueue(jobs.flaky.call(str(flag))) for _ in range(2)]
    later = [client.schedule(jobs.quick.call(f"later {i}"), delay=86_400) for i in range(2)]
    for job_id in failed:
        admin.wait_for_job_state(job_id, "Failed")
    flag.touch()

    admin.open("/hangfire/jobs?state=Failed&name=browser.flaky", "Jobs")
    for job_id in failed:
        admin.select_job(job_id)
    admin.act("Requeue selected")
    admin.open("/hangfire/jobs?state=Scheduled&name=browser.quick", "Jobs")
    for job_id in later:
        admin.select_job(job_id)
    admin.act("Delete selected")

    for job_id in failed:
        admin.wait_for_job_state(job_id, "Succeeded")
    for job_id in later:
        admin.wait_for_job_state(job_id, "Deleted")


def test_requeue_all_failed(admin: Dashboard, client: Client, tmp_path: Path) -> None:
    flag = tmp_path / "flag"
    job_id = client.enqueue(jobs.flaky.call(str(flag)))
    admin.wait_for_job_state(job_id, "Failed")
    flag.touch()
    admin.open("/hangfire/jobs?state=Failed", "Jobs")
    admin.act("Requeue all failed")
    admin.wait_for_job_state(job_id, "Succeeded")


def test_trigger_pause_resume_and_delete_a_recurring_job(admin: Dashboard, client: Client) -> None:
    recurring_id = f"browser-nightly-{uuid.uuid4().hex[:8]}"
    client.add_or_update(recurring_id, jobs.quick.call("nightly"), "0 3 * * *")
    admin.open("/hangfire/recurring", "Recurring")
    expect(admin.item(recurring_id, "Trigger now")).to_contain_text("0 3 * * *")

    admin.act("Trigger now", within=admin.item(recurring_id, "Trigger now"))
    run = admin.item(recurring_id, "Trigger now").locator("a[href*='/hangfire/jobs/']").first
    expect(run).to_be_visible()  # the run it started
    href = run.get_attribute("href") or ""
    match = re.search(UUID, href)
    assert match, href
    assert client.get(match.group(0))["recurring_id"] == recurring_id
    run.click()
    admin.wait_for_job_state(match.group(0), "Succeeded")

    admin.open("/hangfire/recurring", "Recurring")
    admin.act("Pause", within=admin.item(recurring_id, "Pause"))
    paused = admin.item(recurring_id, "Resume")
    expect(paused).to_contain_text(re.compile("paused", re.IGNORECASE))
    assert client.get_recurring(recurring_id)["paused"] is True

    admin.act("Resume", within=paused)
    expect(admin.item(recurring_id, "Pause")).to_be_visible()
    assert client.get_recurring(recurring_id)["paused"] is False

    admin.act("Delete", within=admin.item(recurring_id, "Delete"))
    expect(admin.item(recurring_id, "Trigger now")).to_have_count(0)
    assert recurring_id not in {d["id"] for d in client.list_recurring()}


def test_filter_by_name_and_text_with_a_shareable_url(
    tabs: Tabs, admin: Dashboard, client: Client, admin_session: dict[str, object]
) -> None:
    token = uuid.uuid4().hex[:10]
    quick = [client.enqueue(jobs.quick.call(f"{token}-{i}")) for i in range(3)]
    other = [client.enqueue(jobs.other.call(f"{token}-{i}")) for i in range(3)]
    for job_id in quick + other:
        client.wait(job_id, timeout=60)

    admin.open("/hangfire/jobs", "Jobs")
    admin.set_field("Job name", "browser.other")
    admin.page.get_by_role("button", name="Filter", exact=True).click()
    admin.page.wait_for_url(re.compile(r"name=browser\.other"))
    admin.shot("filtered-by-name")
    shown = admin.listed_job_ids()
    assert set(other) <= shown and not shown & set(quick)
    assert {client.get(job_id)["job"] for job_id in shown} == {"browser.other"}

    admin.set_field("Job name", "")
    admin.set_field("Text in arguments", f"{token}-1")
    admin.page.get_by_role("button", name="Filter", exact=True).click()
    admin.page.wait_for_url(re.compile(r"q=" + token))
    admin.shot("filtered-by-text")
    assert admin.listed_job_ids() == {quick[1], other[1]}

    shared = tabs.open(role="colleague", storage_state=admin_session)
    shared.page.goto(admin.page.url)  # the filtered view is its URL
    expect(shared.page.locator("h1")).to_have_text("Jobs", timeout=WAIT_MS)
    shared.shot("shared-url")
    assert shared.listed_job_ids() == {quick[1], other[1]}


def test_pages_and_sorts_of_a_filtered_list(admin: Dashboard, client: Client) -> None:
    token = uuid.uuid4().hex[:10]
    many = client.enqueue_many([jobs.quick.call(f"{token} page {i}") for i in range(53)])
    named = [client.enqueue(jobs.other.call(f"{token} named")) for _ in range(2)]
    for job_id in many + named:
        client.wait(job_id, timeout=60)

    admin.open(f"/hangfire/jobs?q={token}", "Jobs")
    first = admin.listed_job_ids_in_order()
    admin.page.get_by_role("link", name="Next page").click()
    admin.page.wait_for_url(re.compile("after="))
    admin.shot("next-page")
    second = admin.listed_job_ids_in_order()
    assert first and second and not set(first) & set(second)
    assert set(first) | set(second) == set(many + named)  # every job once, over two pages

    admin.open(f"/hangfire/jobs?q={token}", "Jobs")
    admin.set_field("Sort", "name")
    admin.page.get_by_role("button", name="Filter", exact=True).click()
    admin.page.wait_for_url(re.compile("sort=name"))
    admin.shot("sorted-by-name")
    assert set(admin.listed_job_ids_in_order()[:2]) == set(named)  # browser.other < browser.quick
    admin.set_field("Sort", "-name")
    admin.page.get_by_role("button", name="Filter", exact=True).click()
    admin.page.wait_for_url(re.compile("sort=-name"))
    assert not set(admin.listed_job_ids_in_order()[:50]) & set(named)  # last, on the next page
