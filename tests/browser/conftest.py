"""A running system and a headless Chromium for the dashboard's browser tests.

One system for the session (API, worker, scheduler and janitor as real processes on a fresh
PostgreSQL database and a unique broker namespace) with an admin and a read API key configured,
so the dashboard asks for a key; tests share it, so each makes its own jobs and looks only at those.
Chromium runs per module. Each test gets its own browser context (cookies, storage), signed in
as admin unless it signs in itself. Screenshots go to ``test-artifacts/screenshots/`` or to
``ORCHESTRATOR_SCREENSHOTS_DIR``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest
import sqlalchemy as sa
from playwright.sync_api import (
    Browser,
    BrowserContext,
    Playwright,
    Route,
    ViewportSize,
    sync_playwright,
)

from orchestrator import Client
from orchestrator.db import create_engine
from tests.browser.ui import WAIT_MS, Dashboard, Problems, Screenshots
from tests.support.system import ROOT, System

CHROMIUM = Path("/usr/bin/chromium")
#: As root Chromium needs --no-sandbox; with no internet nothing may phone home.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
LAPTOP: ViewportSize = {"width": 1280, "height": 800}
PHONE: ViewportSize = {"width": 390, "height": 844}
SCREENSHOTS = Path(
    os.environ.get("ORCHESTRATOR_SCREENSHOTS_DIR") or ROOT / "test-artifacts" / "screenshots"
)


class Keys:
    admin = f"browser-admin-{uuid.uuid4().hex}"
    read = f"browser-read-{uuid.uuid4().hex}"


@pytest.fixture(scope="session")
def chromium() -> Path:
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is absent (make system-packages installs Debian's chromium)")
    return CHROMIUM


async def _admin(url: str, statement: str) -> None:
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
            await conn.execute(sa.text(statement))
    finally:
        await engine.dispose()


@pytest.fixture(scope="session")
def system_database(postgres_admin_url: str, postgres_template: str) -> Iterator[str]:
    """A database of the session's own, cloned from the migrated template (faster than
    migrating one)."""
    name = f"orch_browser_{uuid.uuid4().hex[:10]}"
    clone = f'CREATE DATABASE "{name}" TEMPLATE "{postgres_template}" STRATEGY FILE_COPY'
    asyncio.run(_admin(postgres_admin_url, clone))
    parts = urlsplit(postgres_admin_url)
    yield urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, parts.fragment))
    asyncio.run(_admin(postgres_admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(scope="session")
def system(
    chromium: Path, system_database: str, amqp_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[System]:
    running = System(
        database_url=system_database,
        jobs="tests.browser.jobs",
        amqp_url=amqp_url,
        log_dir=tmp_path_factory.mktemp("browser-system"),
        extra_env={"ORCHESTRATOR_API_KEYS": f"{Keys.admin}:admin,{Keys.read}:read"},
    )
    try:
        running.start("api", "api")
        running.start("worker", "worker", "--queues", "default", "--concurrency", "4")
        running.start("scheduler", "scheduler")
        running.start("janitor", "janitor")  # records dead letters for the dashboard
        running.wait_for_catalog("browser.hold", api_key=Keys.admin)
        yield running
    finally:
        running.stop_all()


@pytest.fixture
def client(system: System) -> Iterator[Client]:
    with Client(system.api_url, api_key=Keys.admin) as admin_client:
        yield admin_client


@pytest.fixture(scope="module")
def playwright(system: System) -> Iterator[Playwright]:
    # Playwright's sync API keeps an event loop running while it lives, so it starts after the
    # system (whose set-up and tear-down call asyncio.run) and ends with the module, before any
    # other module's asyncio tests run.
    with sync_playwright() as running:
        yield running


@pytest.fixture(scope="module")
def browser(playwright: Playwright, chromium: Path) -> Iterator[Browser]:
    # launch() gives every browser a fresh temporary user-data-dir of its own.
    launched = playwright.chromium.launch(
        executable_path=str(chromium), headless=True, args=CHROMIUM_ARGS
    )
    yield launched
    launched.close()


def new_context(
    browser: Browser, system: System, viewport: ViewportSize = LAPTOP, **options: Any
) -> BrowserContext:
    context = browser.new_context(viewport=viewport, **options)
    context.set_default_timeout(WAIT_MS)

    # Working offline is part of the contract: nothing may be fetched from anywhere else.
    def only_local(route: Route) -> None:
        if route.request.url.startswith(system.api_url):
            route.continue_()
        else:
            route.abort()

    context.route(re.compile(r".*"), only_local)
    return context


def sign_in(dashboard: Dashboard, key: str) -> None:
    """Through the login form, as a person would; lands on the Overview."""
    dashboard.open("/hangfire/login")
    dashboard.page.get_by_label("API key").fill(key)
    dashboard.page.get_by_label("API key").press("Enter")
    dashboard.page.wait_for_url(re.compile(r"/hangfire/?$"))


@pytest.fixture(scope="module")
def admin_session(browser: Browser, system: System) -> dict[str, Any]:
    """Cookies of an admin signed in once through the form, for every test's new context."""
    context = new_context(browser, system)
    try:
        shots = Screenshots(SCREENSHOTS, "admin-session")
        sign_in(Dashboard(context.new_page(), system.api_url, shots), Keys.admin)
        return dict(context.storage_state())
    finally:
        context.close()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    if report.when == "call":
        item.stash[_FAILED] = report.failed
    return report


_FAILED = pytest.StashKey[bool]()


class Tabs:
    """Opens dashboard tabs for one test and checks, at the end, that no page misbehaved."""

    def __init__(self, browser: Browser, system: System, request: pytest.FixtureRequest) -> None:
        self.browser = browser
        self.system = system
        self.request = request
        self.contexts: list[BrowserContext] = []
        self.dashboards: list[Dashboard] = []
        self.problems = Problems(system.api_url)

    def open(self, *, role: str = "tab", **options: Any) -> Dashboard:
        """A new tab in a context of its own; ``options`` as for ``Browser.new_context``."""
        context = new_context(self.browser, self.system, **options)
        page = context.new_page()
        self.problems.watch(page)
        page.on("dialog", lambda dialog: dialog.accept())  # "Delete this job?" — yes
        name = f"{self.request.module.__name__.rsplit('.', 1)[-1]}-{self.request.node.name}"
        shots = Screenshots(SCREENSHOTS, _prefix(name, role, len(self.contexts)))
        dashboard = Dashboard(page, self.system.api_url, shots)
        self.contexts.append(context)
        self.dashboards.append(dashboard)
        return dashboard

    def close(self) -> None:
        if self.request.node.stash.get(_FAILED, False):
            for dashboard in self.dashboards:
                with contextlib.suppress(Exception):
                    dashboard.shot("at-failure")
        for context in self.contexts:
            context.close()


def _prefix(test: str, role: str, index: int) -> str:
    base = re.sub(r"[^A-Za-z0-9]+", "-", test).strip("-").lower()
    return base if index == 0 else f"{base}-{role}"


@pytest.fixture
def tabs(browser: Browser, system: System, request: pytest.FixtureRequest) -> Iterator[Tabs]:
    opened = Tabs(browser, system, request)
    try:
        yield opened
    finally:
        opened.close()
    assert not opened.problems.found, "the dashboard misbehaved:\n" + "\n".join(
        opened.problems.found
    )


@pytest.fixture
def admin(tabs: Tabs, admin_session: dict[str, Any]) -> Dashboard:
    """A tab signed in with the admin key."""
    return tabs.open(role="admin", storage_state=admin_session)
