"""The API docs (``/docs``, ``/redoc``, ``/openapi.json``): guarded like the dashboard, and
served from the package's own files (issue 11, "What was seen" 11: public with keys, CDN assets)."""

from __future__ import annotations

import re
from typing import Any

from orchestrator_api.auth import SESSION_COOKIE
from tests.api.conftest import DOWN_AMQP_URL, Api
from tests.api.dashboard_pages import sign_in

ADMIN = "docs-admin-key-0123456789"
READ = "docs-read-key-0123456789"
REMOTE = ("10.0.0.5", 40000)
_REFERENCE = re.compile(r"""(?:src|href|url)\s*[=:(]\s*['"]?([^'" )>]+)""")


def _references(html: str) -> list[str]:
    return [ref for ref in _REFERENCE.findall(html) if not ref.startswith("#")]


async def _assets_of(api: Api, client: Any, page: str) -> list[str]:
    response = await client.get(page)
    assert response.status_code == 200, (page, response.text[:300])
    references = _references(response.text)
    assert references, page
    external = [ref for ref in references if re.match(r"^(https?:)?//", ref)]
    assert external == [], (page, external)
    policy = response.headers["content-security-policy"]
    assert "default-src 'self'" in policy and "frame-ancestors 'none'" in policy
    return references


async def test_docs_load_only_local_files(api: Api) -> None:
    swagger = await _assets_of(api, api.http, "/docs")
    redoc = await _assets_of(api, api.http, "/redoc")
    assert "/docs/static/swagger-ui-bundle.js" in swagger
    assert "/docs/static/swagger-ui.css" in swagger
    assert "/docs/static/redoc.standalone.js" in redoc
    for path in (
        "/docs/static/swagger-ui-bundle.js",
        "/docs/static/swagger-ui.css",
        "/docs/static/redoc.standalone.js",
    ):
        asset = await api.http.get(path)
        assert asset.status_code == 200 and len(asset.content) > 10_000, path
    page = (await api.http.get("/docs")).text
    assert '"validatorUrl": null' in page  # Swagger UI's badge would call another site
    assert "fonts.googleapis" not in (await api.http.get("/redoc")).text
    assert (await api.http.get("/openapi.json")).json()["info"]["title"] == "Orchestrator"


async def test_without_keys_docs_serve_loopback_only(api: Api) -> None:
    async with api.client(REMOTE) as remote:
        for path in ("/docs", "/redoc", "/openapi.json", "/docs/static/swagger-ui-bundle.js"):
            assert (await remote.get(path)).status_code == 403, path


async def test_with_keys_docs_need_a_key_or_a_session(start_api: Any, sqlite_url: str) -> None:
    async with start_api(
        sqlite_url, amqp_url=DOWN_AMQP_URL, api_keys=[ADMIN, f"{READ}:read"], client=REMOTE
    ) as api:
        paths = ("/docs", "/redoc", "/openapi.json", "/docs/static/swagger-ui-bundle.js")
        for path in paths:
            refused = await api.http.get(path)
            assert refused.status_code == 401, path
            assert refused.json()["error"]["code"] == "unauthorized"
            read_key = {"Authorization": f"Bearer {READ}"}
            assert (await api.http.get(path, headers=read_key)).status_code == 200, path
        async with api.client(REMOTE) as browser:
            assert (await sign_in(browser, READ)).status_code == 303
            assert SESSION_COOKIE in browser.cookies
            for path in paths:
                assert (await browser.get(path)).status_code == 200, path
