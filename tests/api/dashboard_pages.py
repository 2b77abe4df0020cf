"""Reading the dashboard's HTML in tests: headings, buttons, the status message, job rows."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from html.parser import HTMLParser
from typing import Any

import sqlalchemy as sa

from orchestrator import store
from orchestrator.models import DeadLetter
from tests.api.conftest import Api

_JOB_LINK = re.compile(r"^/hangfire/jobs/([0-9a-f-]{36})$")


@dataclass
class Page:
    """What a test needs from one rendered page."""

    h1: str = ""
    nav_links: list[str] = field(default_factory=list)
    buttons: list[str] = field(default_factory=list)
    status: str = ""
    job_state: str = ""
    job_links: list[str] = field(default_factory=list)
    checkboxes: list[str] = field(default_factory=list)
    csrf_token: str | None = None
    external: list[str] = field(default_factory=list)
    links: list[str] = field(default_factory=list)


class _Reader(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.page = Page()
        self._capture: list[tuple[str, str]] = []  # (what, tag) being read
        self._text: dict[str, str] = {}
        self._in_nav = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {k: v or "" for k, v in attrs}
        for attribute in ("src", "href", "action"):
            target = values.get(attribute, "")
            if target.startswith(("http:", "https:", "//")):
                self.page.external.append(target)
        if tag == "nav" and values.get("aria-label") == "Dashboard":
            self._in_nav += 1
        if tag == "a":
            self.page.links.append(values.get("href", ""))
            match = _JOB_LINK.match(values.get("href", ""))
            if match:
                self.page.job_links.append(match.group(1))
            self._start("nav_link" if self._in_nav else "a", tag)
        if tag == "h1":
            self._start("h1", tag)
        if tag == "button":
            self._start("button", tag)
        if values.get("role") == "status":
            self._start("status", tag)
        if values.get("data-testid") == "job-state":
            self._start("job_state", tag)
        if tag == "input" and values.get("type") == "checkbox" and "aria-label" in values:
            self.page.checkboxes.append(values["aria-label"])
        if tag == "input" and values.get("name") == "csrf_token":
            self.page.csrf_token = values.get("value")
        if tag == "meta" and values.get("name") == "csrf-token" and not self.page.csrf_token:
            self.page.csrf_token = values.get("content")

    def _start(self, what: str, tag: str) -> None:
        self._capture.append((what, tag))
        self._text[what] = ""

    def handle_endtag(self, tag: str) -> None:
        if tag == "nav" and self._in_nav:
            self._in_nav -= 1
        for index in range(len(self._capture) - 1, -1, -1):
            what, opened = self._capture[index]
            if opened == tag:
                del self._capture[index]
                text = " ".join(self._text.pop(what).split())
                if what == "h1":
                    self.page.h1 = text
                elif what == "button":
                    self.page.buttons.append(text)
                elif what == "status":
                    self.page.status = text
                elif what == "job_state":
                    self.page.job_state = text
                elif what == "nav_link":
                    self.page.nav_links.append(text)
                break

    def handle_data(self, data: str) -> None:
        for what, _ in self._capture:
            self._text[what] += data


def read(html: str) -> Page:
    reader = _Reader()
    reader.feed(html)
    return reader.page


async def open_page(api: Api, path: str, client: Any = None) -> Page:
    response = await (client or api.http).get(path)
    assert response.status_code == 200, (path, response.status_code, response.text[:500])
    return read(response.text)


async def post(api: Api, path: str, data: dict[str, Any] | None = None, client: Any = None) -> Any:
    """POST a dashboard form with the viewer's CSRF token (what every form of its pages
    carries)."""
    http = client or api.http
    token = (await open_page(api, "/hangfire", http)).csrf_token
    form = {"csrf_token": token, **(data or {})}
    return await http.post(path, data=form, follow_redirects=False)


async def act(api: Api, path: str, data: dict[str, Any] | None = None, client: Any = None) -> Page:
    """POST an action and follow its 303; the page it leads back to."""
    response = await post(api, path, data, client)
    assert response.status_code == 303, (response.status_code, read(response.text).status)
    return await open_page(api, response.headers["location"], client)


async def job_state(api: Api, job_id: str) -> str:
    async with api.runtime.engine.connect() as conn:
        return str((await store.get_job(conn, uuid.UUID(job_id))).state)


async def add_dead_letter(api: Api, job_id: str | None) -> int:
    """A dead letter as the janitor records it (its drain is tested in tests/janitor)."""
    table = DeadLetter.__table__  # type: ignore[attr-defined]
    async with api.runtime.engine.begin() as conn:
        result = await conn.execute(
            sa.insert(table)
            .values(
                fingerprint=uuid.uuid4().hex,
                message_id=None,
                job_id=uuid.UUID(job_id) if job_id else None,
                queue="default",
                source_queue="x.q.default",
                reason="rejected",
                why="rejected by a worker",
                death_count=1,
                body=b'{"job_id": "x"}',
                body_size=15,
                headers={},
                first_seen_at=datetime.now(UTC),
            )
            .returning(table.c.id)
        )
        return int(result.scalar_one())


async def snapshot(api: Api) -> list[Any]:
    """Every row a dashboard action could change."""
    rows = []
    async with api.runtime.engine.connect() as conn:
        for statement in (
            "SELECT id, state, attempt, retries_used, state_changed_at FROM jobs ORDER BY id",
            "SELECT count(*) FROM job_history",
            "SELECT count(*) FROM outbox",
            "SELECT id, paused, next_run_at, last_job_id FROM recurring_jobs ORDER BY id",
            "SELECT id FROM dead_letters ORDER BY id",
        ):
            rows.append([tuple(r) for r in (await conn.execute(sa.text(statement))).all()])
    return rows


async def sign_in(client: Any, key: str, **post_options: Any) -> Any:
    """Through the login form, as a browser would: open it (its CSRF token and binding cookie),
    then POST the key with that token. The answer (303 into the dashboard when the key is known)."""
    form = await client.get("/hangfire/login")
    assert form.status_code == 200, form.text[:300]
    token = read(form.text).csrf_token
    return await client.post(
        "/hangfire/login",
        data={"key": key, "csrf_token": token},
        follow_redirects=False,
        **post_options,
    )
