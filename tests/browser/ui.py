"""Driving the dashboard from a test: open pages, act, wait for states, take screenshots.

The tests speak the dashboard's user-facing contract (headings, link and button names, labels,
``role="status"`` and ``data-testid="job-state"``), never its markup.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urljoin

from playwright.sync_api import Locator, Page, Request, Response, expect

STATES = (
    "Enqueued",
    "Scheduled",
    "Awaiting",
    "Processing",
    "Succeeded",
    "Failed",
    "Deleted",
)
UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
#: Generous: CI machines are slow and shared; expect() returns as soon as the condition holds.
WAIT_MS = 30_000


@dataclass
class Screenshots:
    """Full-page PNGs of one test, numbered in the order the test saw the pages."""

    directory: Path
    prefix: str
    taken: list[Path] = field(default_factory=list)

    def __post_init__(self) -> None:
        # A rerun starts afresh: no picture left over from an earlier run of the same test.
        for stale in self.directory.glob(f"{self.prefix}-[0-9][0-9]-*.png"):
            stale.unlink()

    def save(self, page: Page, name: str) -> Path:
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.directory / f"{self.prefix}-{len(self.taken) + 1:02d}-{_slug(name)}.png"
        page.screenshot(path=str(path), full_page=True)
        self.taken.append(path)
        return path


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "page"


@dataclass
class Problems:
    """What a page did wrong while a test watched: script errors, failed or foreign requests."""

    origin: str
    found: list[str] = field(default_factory=list)

    def watch(self, page: Page) -> None:
        page.on("pageerror", lambda error: self.found.append(f"script error: {error}"))
        page.on("response", self._response)
        page.on("requestfailed", self._failed)

    def _response(self, response: Response) -> None:
        # Documents are checked where they are opened (a 403 may be the point of a test).
        if response.status >= 400 and response.request.resource_type != "document":
            self.found.append(f"{response.status} for {response.url}")

    def _failed(self, request: Request) -> None:
        failure = request.failure or ""
        # A poll cut short by the next navigation is not a fault of the page.
        if "ERR_ABORTED" not in failure or not request.url.startswith(self.origin):
            self.found.append(f"request failed ({failure}): {request.url}")


class Dashboard:
    """One browser tab on the dashboard."""

    def __init__(self, page: Page, base_url: str, shots: Screenshots) -> None:
        self.page = page
        self.base_url = base_url
        self.shots = shots

    def open(self, path: str, heading: str | None = None) -> Page:
        """Open ``path``, check it rendered (2xx, its <h1>, the navigation), screenshot it."""
        response = self.page.goto(self.base_url + path)
        assert response is not None, path
        assert response.ok, f"{path}: HTTP {response.status}\n{response.text()[:2000]}"
        if heading is not None:
            expect(self.page.locator("h1")).to_have_text(heading, timeout=WAIT_MS)
        else:
            expect(self.page.locator("h1")).to_be_visible(timeout=WAIT_MS)
        self.shot(path.removeprefix("/hangfire").split("?")[0] or "overview")
        return self.page

    def shot(self, name: str) -> Path:
        return self.shots.save(self.page, name)

    def button(self, name: str, within: Locator | None = None) -> Locator:
        scope = within if within is not None else self.page
        return scope.get_by_role("button", name=name, exact=True)

    def act(self, name: str, within: Locator | None = None) -> str:
        """Press an action button; returns the result message the page it leads back to shows
        (every action is a form POST answered 303 to a page with a ``role="status"``)."""
        with (
            self.page.expect_navigation(timeout=WAIT_MS),
            self.page.expect_response(lambda r: r.request.method == "POST") as posted,
        ):
            self.button(name, within).click()
        assert posted.value.status == 303, f"{name}: HTTP {posted.value.status}"
        status = self.page.get_by_role("status").filter(has_text=re.compile(r"\S"))
        expect(status.first).to_be_visible(timeout=WAIT_MS)
        self.shot(f"after-{name}")
        return status.first.inner_text()

    def form_of(self, name: str) -> tuple[str, dict[str, str]]:
        """Where the button ``name`` posts and the hidden fields it sends, to replay by hand."""
        button = self.button(name)
        form = button.locator("xpath=ancestor::form[1]")
        action = button.get_attribute("formaction") or form.get_attribute("action") or ""
        fields = {
            field.get_attribute("name") or "": field.get_attribute("value") or ""
            for field in form.locator("input[type=hidden][name]").all()
        }
        return urljoin(self.page.url, action), fields

    def item(self, text: str, button: str) -> Locator:
        """The innermost element showing ``text`` that holds the button ``button``: the row
        (or card) of one job, recurring job or dead letter, whatever its markup. A result
        message naming the same thing does not count."""
        shown = f".//text()[contains(., {_xpath_literal(text)})][not(ancestor::*[@role='status'])]"
        xpath = f"xpath=//*[{shown}][.//button[normalize-space(.)={_xpath_literal(button)}]]"
        return self.page.locator(xpath).last

    def job_state(self) -> Locator:
        return self.page.get_by_test_id("job-state")

    def wait_for_job_state(self, job_id: str, state: str, timeout: float = 60) -> None:
        """Reload the job's details page until it shows ``state`` (the page may not poll)."""
        path = f"/hangfire/jobs/{job_id}"
        deadline = time.monotonic() + timeout
        while True:
            self.page.goto(self.base_url + path)
            shown = self.job_state().inner_text(timeout=WAIT_MS).strip()
            if shown == state:
                self.shot(f"job-{state}")
                return
            if time.monotonic() > deadline:
                self.shot(f"job-not-{state}")
                raise AssertionError(f"job {job_id} still shows {shown!r}, not {state!r}")
            self.page.wait_for_timeout(300)

    def set_field(self, label: str, value: str) -> None:
        """Fill a filter field by its label, whether it is a text box or a list to choose from."""
        field = self.page.get_by_label(label, exact=True)
        if field.evaluate("(el) => el.tagName") == "SELECT":
            field.select_option(value)
        else:
            field.fill(value)

    def history_states(self) -> list[str]:
        """The states of the job's history table in page order (the state named first in each
        row; the reason may name another)."""
        table = self.page.locator("table").filter(has_text="Processing").last
        states = []
        for row in table.locator("tr").all():
            text = row.inner_text()
            found = sorted((text.find(s), s) for s in STATES if s in text)
            if found:
                states.append(found[0][1])
        return states

    def listed_job_ids(self) -> set[str]:
        """The ids of the jobs this page links to (list rows link to their details page)."""
        return set(self.listed_job_ids_in_order())

    def listed_job_ids_in_order(self) -> list[str]:
        hrefs = self.page.eval_on_selector_all("a[href]", "(links) => links.map(a => a.href)")
        pattern = re.compile(f"/hangfire/jobs/({UUID})(?:[?#]|$)")
        ids = [m.group(1) for href in hrefs if (m := pattern.search(href))]
        return list(dict.fromkeys(ids))

    def off_screen(self, target: Locator) -> list[str]:
        """Each element of ``target`` that a person could not see and press where it is: after
        scrolling the page vertically only (never sideways, never a box inside it), its box
        must lie within the window and the element must be what is drawn at its centre (not
        clipped by a box that scrolls, nor covered)."""
        problems = []
        for element in target.all():
            found = element.evaluate(_ON_SCREEN)
            if found:
                problems.append(f"{element.inner_text().strip() or element}: {found}")
        return problems

    def page_width(self) -> int:
        """How wide the page is drawn (wider than the window: it scrolls sideways)."""
        return int(self.page.evaluate("document.documentElement.scrollWidth"))

    def select_job(self, job_id: str) -> None:
        self.page.get_by_role("checkbox", name=f"Select job {job_id}", exact=True).check()


_ON_SCREEN = """(el) => {
  const before = el.getBoundingClientRect();
  window.scrollBy(0, before.top - window.innerHeight / 2);
  const box = el.getBoundingClientRect();
  const width = document.documentElement.clientWidth, height = window.innerHeight;
  if (box.left < 0 || box.right > width || box.top < 0 || box.bottom > height) {
    return `box ${Math.round(box.left)}..${Math.round(box.right)} px in a ${width} px window`;
  }
  const hit = document.elementFromPoint(box.left + box.width / 2, box.top + box.height / 2);
  return hit === el || el.contains(hit) ? "" : "hidden under or clipped by another element";
}"""


def _xpath_literal(text: str) -> str:
    if "'" not in text:
        return f"'{text}'"
    if '"' not in text:
        return f'"{text}"'
    parts = text.split("'")
    return "concat(" + ', "\'", '.join(f"'{part}'" for part in parts) + ")"
