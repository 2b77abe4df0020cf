"""``/hangfire``: an honest server-rendered status page (the full dashboard is its own issue),
and the login that sets the dashboard's session cookie."""

from __future__ import annotations

from html import escape
from typing import Any
from urllib.parse import parse_qs

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from orchestrator import store
from orchestrator_api.auth import SESSION_COOKIE, SESSION_SECONDS, find_key, session_token
from orchestrator_api.routes_info import collect_servers, collect_stats
from orchestrator_api.runtime import runtime_of

router = APIRouter(prefix="/hangfire", tags=["dashboard"], include_in_schema=False)

_STYLE = (
    "body{font-family:system-ui,sans-serif;margin:2rem;color:#222}"
    "table{border-collapse:collapse;margin-bottom:1.5rem}"
    "td,th{border:1px solid #ccc;padding:.3rem .6rem;text-align:left}th{background:#f3f3f3}"
    ".note{background:#fff8dc;padding:.6rem;border:1px solid #e5d9a8}"
)


def _page(title: str, body: str, status: int = 200) -> HTMLResponse:
    html = (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{escape(title)}</title>"
        f"<style>{_STYLE}</style></head><body><h1>{escape(title)}</h1>{body}</body></html>"
    )
    return HTMLResponse(html, status_code=status)


def _table(headers: list[str], rows: list[list[Any]], empty: str) -> str:
    if not rows:
        return f"<p>{escape(empty)}</p>"
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = "".join(
        "<tr>" + "".join(f"<td>{escape('—' if v is None else str(v))}</td>" for v in row) + "</tr>"
        for row in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


@router.get("", response_class=HTMLResponse)
async def status_page(request: Request) -> HTMLResponse:
    runtime = runtime_of(request)
    stats = await collect_stats(runtime)
    servers = await collect_servers(runtime)
    async with runtime.engine.connect() as conn:
        recent, _ = await store.list_jobs(conn, store.JobFilter(), limit=20, cursor=None)
    broker = "connected" if runtime.broker.connected else "not connected (ready counts unknown)"
    parts = [
        "<p class='note'>This is a plain status page. The full dashboard (job lists per state, "
        "job details, retries and actions) is coming; until then use the HTTP API under "
        "<code>/api/v1</code>.</p>",
        f"<p>RabbitMQ: {escape(broker)}</p>",
        "<h2>Jobs by state</h2>",
        _table(["State", "Jobs"], [[k, v] for k, v in stats["states"].items()], "No jobs."),
        "<h2>Queues</h2>",
        _table(
            ["Queue", "Ready (RabbitMQ)", "Consumers", "Processing"],
            [[q["name"], q["ready"], q["consumers"], q["processing"]] for q in stats["queues"]],
            "No queues yet.",
        ),
        "<h2>Servers</h2>",
        _table(
            ["Id", "Role", "Host", "PID", "Queues", "Concurrency", "Started", "Heartbeat"],
            [
                [
                    s["id"],
                    s["role"],
                    s["host"],
                    s["pid"],
                    ", ".join(s["queues"]),
                    s["concurrency"],
                    s["started_at"],
                    s["heartbeat_at"],
                ]
                for s in servers
            ],
            "No service instance has announced itself.",
        ),
        "<h2>Recent jobs</h2>",
        _table(
            ["Id", "Job", "Queue", "State", "Attempt", "Created"],
            [[r.id, r.name, r.queue, r.state, r.attempt, r.created_at.isoformat()] for r in recent],
            "No jobs yet.",
        ),
    ]
    return _page("Orchestrator", "".join(parts))


_FORM = (
    "<form method='post' action='/hangfire/login'><label>API key "
    "<input type='password' name='key' autocomplete='current-password'></label> "
    "<button type='submit'>Sign in</button></form>"
)


@router.get("/login", response_class=HTMLResponse)
async def login_form() -> HTMLResponse:
    return _page("Orchestrator — sign in", _FORM)


@router.post("/login", response_class=HTMLResponse)
async def login(request: Request) -> Response:
    """Check the form field ``key``; a valid key gets an HttpOnly, SameSite=Strict session."""
    keys = runtime_of(request).settings.parsed_api_keys
    if not keys:
        return _page(
            "Orchestrator — sign in",
            "<p>No API keys are configured: the dashboard "
            "serves loopback clients without signing in.</p>",
            status=400,
        )
    form = parse_qs((await request.body()).decode("utf-8", "replace"))
    key = find_key(keys, (form.get("key") or [""])[0])
    if key is None:
        return _page("Orchestrator — sign in", f"<p>Unknown API key.</p>{_FORM}", status=401)
    response = RedirectResponse("/hangfire", status_code=303)
    response.set_cookie(
        SESSION_COOKIE,
        session_token(key),
        max_age=SESSION_SECONDS,
        path="/hangfire",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    return response


@router.post("/logout")
async def logout() -> Response:
    response = RedirectResponse("/hangfire/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/hangfire", httponly=True, samesite="strict")
    return response
