"""The dashboard at ``/hangfire``: server-rendered Jinja2 pages with htmx (vendored), every
action a CSRF-checked POST that calls the HTTP API's own functions."""

from __future__ import annotations

from fastapi import APIRouter

from orchestrator_api.dashboard import (
    actions,
    batches,
    dead_letters,
    infra,
    jobs,
    login,
    overview,
    recurring,
    static_files,
)

router = APIRouter(tags=["dashboard"], include_in_schema=False)
for _module in (
    static_files,
    login,
    overview,
    jobs,
    recurring,
    infra,
    batches,
    dead_letters,
    actions,
):
    router.include_router(_module.router)
