"""What every dashboard page shares: templates, the viewer's role, CSRF, result messages.

CSRF: every form carries ``csrf_token``, bound to the viewer's session (``dashboard.csrf``); a
POST without the right one is refused with 403 before anything is read or changed. The Origin
of every POST was already checked (``guards``), and the cookies are SameSite=Strict.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Literal
from urllib.parse import quote, unquote

import jinja2
from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from markupsafe import Markup
from sqlalchemy.ext.asyncio import AsyncConnection

from orchestrator.outcomes import showable, showable_arguments
from orchestrator.redaction import redact_for
from orchestrator.store import search as store_search
from orchestrator_api import auth
from orchestrator_api.dashboard import csrf
from orchestrator_api.middleware import DASHBOARD_CSP
from orchestrator_api.runtime import runtime_of

PACKAGE = Path(__file__).parent
CSRF_COOKIE = csrf.CSRF_COOKIE
FLASH_COOKIE = "orchestrator_flash"
PREFIX = "/hangfire"
#: The navigation, in order: (link text, path).
NAV = (
    ("Overview", ""),
    ("Jobs", "/jobs"),
    ("Retries", "/retries"),
    ("Recurring", "/recurring"),
    ("Queues", "/queues"),
    ("Servers", "/servers"),
    ("Batches", "/batches"),
    ("Dead letters", "/dead-letters"),
)
#: Served with every page (also added by SecurityHeadersMiddleware to any other answer).
CSP = DASHBOARD_CSP
Role = Literal["admin", "read"]


#: Counts per state are shared by every page of one API process for this long: the list pages
#: show them on their tabs, and seven bounded counts per request would cost more than the list.
COUNTS_MAX_AGE = 2.0


async def state_counts(request: Request, conn: AsyncConnection) -> dict[str, tuple[int, bool]]:
    """Bounded counts per state (``store.search.state_counts``), at most COUNTS_MAX_AGE old."""
    state = request.app.state
    cached: tuple[float, dict[str, tuple[int, bool]]] | None = getattr(
        state, "dashboard_counts", None
    )
    now = time.monotonic()
    if cached is not None and now - cached[0] < COUNTS_MAX_AGE:
        return cached[1]
    counts = await store_search.state_counts(conn)
    state.dashboard_counts = (now, counts)
    return counts


def time_tag(value: datetime | None) -> Markup:
    """A time in UTC that the page's script shows in the viewer's zone (UTC stays on hover)."""
    if value is None:
        return Markup("—")
    utc = value.astimezone(UTC)
    text = utc.strftime("%Y-%m-%d %H:%M:%S UTC")
    iso = utc.isoformat().replace("+00:00", "Z")
    return Markup('<time datetime="{}" title="{}">{}</time>').format(iso, text, text)


def duration_text(seconds: float) -> str:
    """A short human duration: ``2 d 3 h``, ``5 h 4 min``, ``12 min``, ``40 s``."""
    seconds = int(max(0, seconds))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days} d {hours} h"
    if hours:
        return f"{hours} h {minutes} min"
    if minutes:
        return f"{minutes} min"
    return f"{secs} s"


def took_text(seconds: float) -> str:
    """How long a job ran, as precise as it is short: ``0.04 s``, ``12.3 s``, ``2 min 5 s``,
    then as :func:`duration_text`."""
    seconds = max(0.0, seconds)
    if seconds < 10:
        return f"{seconds:.2f} s"
    if seconds < 60:
        return f"{seconds:.1f} s"
    if seconds < 3600:
        minutes, secs = divmod(int(seconds), 60)
        return f"{minutes} min {secs} s" if secs else f"{minutes} min"
    return duration_text(seconds)


def count_text(count: tuple[int, bool]) -> str:
    number, more = count
    return f"{number:,}+" if more else f"{number:,}"


def plural(count: int | tuple[int, bool], noun: str, nouns: str | None = None) -> str:
    """A count with its noun in the right number: ``1 job``, ``0 jobs``, ``10,000+ jobs``
    (a bounded count, as :func:`count_text` shows it, is always plural when capped)."""
    number, more = count if isinstance(count, tuple) else (count, False)
    word = noun if number == 1 and not more else (nouns or noun + "s")
    return f"{count_text((number, more))} {word}"


def short_id(value: Any) -> str:
    return str(value)[:8]


def display_arguments(registrations: Mapping[str, Any], name: str, args: Any, kwargs: Any) -> str:
    """The one place the dashboard turns a job's arguments into text: secret parameters (from
    the catalog, ``orchestrator.redaction``) are redacted first."""
    args, kwargs = showable_arguments(args, kwargs)  # as stored, maybe by an older version
    shown_args, shown_kwargs = redact_for(registrations.get(name), args, kwargs)
    parts = [json.dumps(value, ensure_ascii=False) for value in shown_args]
    parts += [
        f"{key}={json.dumps(value, ensure_ascii=False)}" for key, value in shown_kwargs.items()
    ]
    return ", ".join(parts)


def pretty_json(value: Any) -> str:
    # showable: a stored value may hold what JSON (or UTF-8) cannot write.
    return json.dumps(showable(value), indent=2, ensure_ascii=False, sort_keys=True, default=str)


def shown(row: Any) -> SimpleNamespace:
    """A stored row for a template: its text and JSON made showable (lone surrogates would
    fail the page's UTF-8 encoding), its other values as they are."""
    return SimpleNamespace(
        **{key: showable(v) if isinstance(v, _SHOWN) else v for key, v in row._mapping.items()}
    )


_SHOWN = (str, list, dict, float, int)


@cache
def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(PACKAGE / "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["time"] = time_tag
    env.filters["count"] = count_text
    env.filters["plural"] = plural
    env.filters["short"] = short_id
    env.filters["pretty"] = pretty_json
    env.filters["duration"] = duration_text
    env.filters["took"] = took_text
    env.globals["nav"] = NAV
    env.globals["prefix"] = PREFIX
    return env


def viewer_role(request: Request) -> Role:
    """What the viewer may do: ``admin`` (acts) or ``read`` (sees), as the auth middleware found
    (with no keys configured only loopback clients get here, as admins)."""
    viewer = auth.viewer_of(request.state)
    return viewer.role if viewer is not None else "read"


def signed_in(request: Request) -> bool:
    viewer = auth.viewer_of(request.state)
    return viewer is not None and viewer.session is not None


def _csrf_token(request: Request) -> tuple[str, str | None]:
    """The viewer's token, and a new binding cookie to set when it has none yet."""
    secret: bytes = request.app.state.csrf_secret
    bound_to = csrf.binding(request.cookies)
    if bound_to is not None:
        return csrf.token_for(secret, bound_to), None
    nonce = csrf.new_nonce()
    return csrf.token_for(secret, f"browser:{nonce}"), nonce


def csrf_valid(request: Request, presented: object) -> bool:
    return csrf.valid(request.app.state.csrf_secret, request.cookies, presented)


def cookie_secure(request: Request) -> bool:
    """``ORCHESTRATOR_COOKIE_SECURE`` when set, else whether the browser used https (directly,
    or as a trusted proxy's ``X-Forwarded-Proto`` says)."""
    configured = runtime_of(request).settings.cookie_secure
    if configured is not None:
        return configured
    return bool(request.app.state.proxies.scheme(request.scope) == "https")


def _cookie_options(request: Request) -> dict[str, Any]:
    return {
        "path": PREFIX,
        "httponly": True,
        "samesite": "strict",
        "secure": cookie_secure(request),
    }


def current_nav(path: str) -> str | None:
    """The navigation entry a page belongs to (job details belong to Jobs)."""
    if path.rstrip("/") == PREFIX:
        return "Overview"
    for text, sub in NAV[1:]:
        if path == PREFIX + sub or path.startswith(PREFIX + sub + "/"):
            return text
    return None


def render(request: Request, template: str, status: int = 200, **context: Any) -> HTMLResponse:
    """A full page (or, for names starting with ``_``, a fragment) with the shared context."""
    token, nonce = _csrf_token(request)
    flash = _read_flash(request)
    values = {
        "request": request,
        "path": request.url.path,
        "current_nav": current_nav(request.url.path),
        "csrf_token": token,
        "can_act": viewer_role(request) == "admin",
        "signed_in": signed_in(request),
        "flash": flash,
        **context,
    }
    html = environment().get_template(template).render(values)
    response = HTMLResponse(html, status_code=status)
    response.headers["Content-Security-Policy"] = CSP
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Cache-Control"] = "no-store"
    if nonce is not None:
        response.set_cookie(CSRF_COOKIE, nonce, **_cookie_options(request))
    if flash is not None:
        response.delete_cookie(FLASH_COOKIE, **_cookie_options(request))
    return response


class CsrfError(Exception):
    """A POST without the viewer's token (answered 403, nothing changed)."""


class ReadOnlyError(Exception):
    """A read key tried to act (answered 403, nothing changed)."""


async def checked_form(request: Request) -> dict[str, Any]:
    """The POSTed form after the CSRF and role checks; raises before anything is changed."""
    form = await request.form()
    if not csrf_valid(request, form.get("csrf_token")):
        raise CsrfError
    if viewer_role(request) != "admin":
        raise ReadOnlyError
    values: dict[str, Any] = {}
    for key in form:
        items = [v for v in form.getlist(key) if isinstance(v, str)]
        values[key] = items if key == "job" else (items[0] if items else "")
    return values


def safe_next(value: Any, default: str) -> str:
    """Where to go after an action: a dashboard path only (never another site)."""
    if (
        isinstance(value, str)
        and (value == PREFIX or value.startswith(PREFIX + "/") or value.startswith(PREFIX + "?"))
        and "//" not in value
        and "\\" not in value
    ):
        return value
    return default


def done(request: Request, to: str, message: str, ok: bool = True) -> Response:
    """303 back to ``to``; the next page shows ``message`` in its status element."""
    response = RedirectResponse(to, status_code=303)
    payload = quote(json.dumps({"ok": ok, "text": message[:500]}), safe="")
    response.set_cookie(FLASH_COOKIE, payload, max_age=60, **_cookie_options(request))
    return response


def _read_flash(request: Request) -> dict[str, Any] | None:
    raw = request.cookies.get(FLASH_COOKIE)
    if not raw:
        return None
    try:
        value = json.loads(unquote(raw))
    except ValueError:
        return None
    if not isinstance(value, dict) or not isinstance(value.get("text"), str):
        return None
    return {"ok": bool(value.get("ok")), "text": value["text"]}


def refusal(request: Request, status: int, message: str) -> HTMLResponse:
    return render(request, "refused.html", status=status, title="Refused", problem=message)


def not_found(request: Request, heading: str, message: str) -> HTMLResponse:
    """A 404 page headed by what is missing (``Job not found``), the message naming it."""
    return render(request, "refused.html", status=404, title=heading, problem=message)
