"""Jobs for the input-bounds and secret tests: free-form arguments, and secret parameters."""

from __future__ import annotations

from typing import Any

from orchestrator import job


@job
def keep(data: Any = None, number: float = 0.0) -> None:
    """Takes any JSON value, so only the edge's own bounds can refuse one."""


@job(secret=["password"])
def sign_in(user: str, password: str) -> str:
    return user


@job(secret=["pin"])
def unlock(door: str, pin: int) -> str:
    return door


@job(queue="mail")
def send(to: str) -> str:
    return to
