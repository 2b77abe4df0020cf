"""Signing in with an API key once: an HttpOnly, SameSite=Strict session cookie."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from orchestrator_api.auth import SESSION_COOKIE, SESSION_SECONDS, find_key, session_token
from orchestrator_api.dashboard.web import PREFIX, render
from orchestrator_api.runtime import runtime_of

router = APIRouter(prefix=PREFIX)


@router.get("/login", response_class=HTMLResponse)
async def login_form(request: Request) -> HTMLResponse:
    return render(request, "login.html", title="Sign in", show_nav=False, csrf=False, problem=None)


@router.post("/login", response_class=HTMLResponse)
async def login(request: Request) -> Response:
    """Check the form field ``key``; a valid key gets an HttpOnly, SameSite=Strict session."""
    keys = runtime_of(request).settings.parsed_api_keys
    if not keys:
        problem = (
            "No API keys are configured: the dashboard serves loopback clients without signing in."
        )
        return render(
            request,
            "login.html",
            status=400,
            title="Sign in",
            show_nav=False,
            csrf=False,
            problem=problem,
        )
    form = await request.form()
    presented = form.get("key")
    key = find_key(keys, presented if isinstance(presented, str) else "")
    if key is None:
        return render(
            request,
            "login.html",
            status=401,
            title="Sign in",
            show_nav=False,
            csrf=False,
            problem="Unknown API key.",
        )
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
