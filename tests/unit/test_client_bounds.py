"""The Python client refuses, before sending, what the API's bounds would refuse whatever its
settings (``orchestrator.bounds``): the same rule at both ends of the wire."""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from orchestrator import JobCall
from orchestrator.client import job_body
from orchestrator.client_recurring import recurring_body

CALLS: list[tuple[str, JobCall, str]] = [
    ("NaN", JobCall.named("j", math.nan), "args[0]"),
    ("inf nested", JobCall.named("j", data={"x": [math.inf]}), "kwargs.data"),
    ("NUL", JobCall.named("j", "a\x00"), "args[0]"),
    ("NUL key", JobCall("j", [], {"k\x00": 1}), "kwargs"),
    ("lone surrogate", JobCall.named("j", text="\ud800"), "kwargs.text"),
]


@pytest.mark.parametrize(
    ("call", "named"), [(c, n) for _, c, n in CALLS], ids=[i for i, _, _ in CALLS]
)
def test_arguments_no_store_holds_are_refused_before_sending(call: JobCall, named: str) -> None:
    with pytest.raises(ValueError, match=re.escape(named)):
        job_body(call, {})
    with pytest.raises(ValueError, match=re.escape(named)):
        recurring_body(call, "@daily", "UTC", {})


@pytest.mark.parametrize(
    ("options", "error"),
    [
        ({"retries": True}, TypeError),
        ({"expire_after": timedelta(days=365 * 11)}, ValueError),
        ({"expire_after": math.inf}, ValueError),
        ({"delay": math.nan}, ValueError),
        ({"delay": True}, TypeError),
        ({"run_at": datetime(9999, 12, 31, 23, tzinfo=timezone(timedelta(hours=-14)))}, ValueError),
    ],
)
def test_options_out_of_bounds_are_refused_before_sending(
    options: dict[str, Any], error: type[Exception]
) -> None:
    with pytest.raises(error):
        job_body(JobCall.named("j"), options, "schedule", frozenset(options))


def test_values_inside_the_bounds_are_sent() -> None:
    call = JobCall.named("j", 1.5e308, "\u00e9\U0001f600", nested={"a": [None, True, -1]})
    body = job_body(
        call,
        {"retries": 3, "delay": 0.5, "run_at": None, "expire_after": timedelta(days=1)},
        "schedule",
        frozenset({"retries", "delay", "run_at", "expire_after"}),
    )
    assert body["args"] == [1.5e308, "\u00e9\U0001f600"]
    assert body["retries"] == 3
    assert body["expire_after_seconds"] == 86400
    late = {"run_at": datetime(9999, 1, 1, tzinfo=UTC)}
    assert job_body(JobCall.named("j"), late, "schedule", frozenset(late))["run_at"]
