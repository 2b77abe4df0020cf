"""The API docs in Chromium with keys set: a signed-in session opens Swagger UI and ReDoc,
rendered from the package's own files with nothing fetched from anywhere else; without a
session they are refused.

Every request the pages make is recorded where it would leave the browser (the context's
route, which aborts anything not local). ReDoc's bundle hard-codes one image URL (the "API docs
by Redocly" logo on a CDN); the docs' Content-Security-Policy blocks it before any request is
made, and the page hides the broken image. That one block is expected; nothing else may be.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from playwright.sync_api import Browser, ConsoleMessage, Request, Route, expect

from tests.browser.conftest import LAPTOP, Tabs
from tests.browser.ui import WAIT_MS
from tests.support.system import System

pytestmark = pytest.mark.e2e

REDOC_LOGO = "https://cdn.redoc.ly/redoc/logo-mini.svg"


def test_swagger_ui_and_redoc_render_offline_for_a_session(
    browser: Browser, system: System, admin_session: dict[str, Any]
) -> None:
    context = browser.new_context(viewport=LAPTOP, storage_state=admin_session)  # type: ignore[arg-type]
    context.set_default_timeout(WAIT_MS)
    left: list[str] = []
    blocked: list[str] = []
    console: list[str] = []

    def only_local(route: Route) -> None:
        if route.request.url.startswith(system.api_url):
            route.continue_()
        else:
            left.append(route.request.url)
            route.abort()

    def failed(request: Request) -> None:
        if request.failure == "csp":
            blocked.append(request.url)

    def logged(message: ConsoleMessage) -> None:
        if message.type == "error" and "Content Security Policy" not in message.text:
            console.append(message.text)

    context.route(re.compile(r".*"), only_local)
    try:
        page = context.new_page()
        page.on("requestfailed", failed)
        page.on("console", logged)
        page.on("pageerror", lambda error: console.append(f"script error: {error}"))
        response = page.goto(system.api_url + "/docs")
        assert response is not None and response.status == 200
        expect(page.locator(".swagger-ui .info .title")).to_contain_text("Orchestrator")
        expect(page.get_by_text("/api/v1/jobs", exact=True).first).to_be_visible()
        response = page.goto(system.api_url + "/redoc")
        assert response is not None and response.status == 200
        expect(page.locator("h1").first).to_contain_text("Orchestrator")
        expect(page.get_by_text("/api/v1/jobs").first).to_be_attached()
    finally:
        context.close()
    assert left == [], f"the docs tried to fetch from elsewhere: {left}"
    assert set(blocked) <= {REDOC_LOGO}, blocked
    assert console == [], console


def test_docs_are_refused_without_a_session(tabs: Tabs, system: System) -> None:
    stranger = tabs.open()
    for path in ("/docs", "/redoc", "/openapi.json"):
        response = stranger.page.goto(system.api_url + path)
        assert response is not None and response.status == 401, path
