"""Signing in with an API key once (a session in the store, its cookie HttpOnly and
SameSite=Strict), and signing out, which ends the session on every replica.

The login form carries a CSRF token like every other form (a page elsewhere must not sign a
browser in with the attacker's key), and failed attempts are throttled per client like unknown
bearer keys.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from orchestrator_api import sessions
from orchestrator_api.auth import SESSION_COOKIE, SESSION_SECONDS, find_key
from orchestrator_api.dashboard.web import PREFIX, cookie_secure, csrf_valid, refusal, render
from orchestrator_api.runtime import runtime_of
from orchestrator_api.throttle import FailureThrottle

router = APIRouter(prefix=PREFIX)

_STALE_FORM = (
    "The form's security token is missing or wrong: reload the page and try again. "
    "Nothing was changed."
)


def _form(request: Request, status: int = 200, problem: str | None = None) -> HTMLResponse:
    return render(
        request, "login.html", status=status, title="Sign in", show_nav=False, problem=problem
    )


@router.get("/login", response_class=HTMLResponse)
async def login_form(request: Request) -> HTMLResponse:
    return _form(request)


@router.post("/login", response_class=HTMLResponse)
async def login(request: Request) -> Response:
    """Check the form field ``key``; a valid key gets a session."""
    runtime = runtime_of(request)
    keys = runtime.settings.parsed_api_keys
    if not keys:
        problem = (
            "No API keys are configured: the dashboard serves loopback clients without signing in."
        )
        return _form(request, 400, problem)
    form = await request.form()
    if not csrf_valid(request, form.get("csrf_token")):
        return _form(request, 403, _STALE_FORM)
    throttle: FailureThrottle = request.app.state.auth_throttle
    client = request.app.state.proxies.client(request.scope)
    wait = throttle.retry_after(client)
    if wait is not None:
        throttled = _form(request, 429, f"Too many failed sign-ins: try again in {wait} s.")
        throttled.headers["Retry-After"] = str(wait)
        return throttled
    presented = form.get("key")
    key = find_key(keys, presented if isinstance(presented, str) else "")
    if key is None:
        throttle.failed(client)
        return _form(request, 401, "Unknown API key.")
    token = await sessions.create(runtime.engine, key)
    response = RedirectResponse("/hangfire", status_code=303)
    # Path / so the API docs see it too; it never authorizes /api/*.
    response.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=SESSION_SECONDS,
        path="/",
        httponly=True,
        samesite="strict",
        secure=cookie_secure(request),
    )
    return response


@router.post("/logout")
async def logout(request: Request) -> Response:
    form = await request.form()
    if not csrf_valid(request, form.get("csrf_token")):
        return refusal(request, 403, _STALE_FORM)
    token = request.cookies.get(SESSION_COOKIE)
    if token:
        await sessions.revoke(runtime_of(request).engine, token)
    response = RedirectResponse("/hangfire/login", status_code=303)
    response.delete_cookie(
        SESSION_COOKIE, path="/", httponly=True, samesite="strict", secure=cookie_secure(request)
    )
    return response
