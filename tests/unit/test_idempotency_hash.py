"""An idempotency key's request hash is stored with its job, so its text never changes: a key
used before an upgrade must replay the same job after it. Digests pinned from the hash as the API
computed it (``EnqueueRequest.model_dump(mode="json")``) before the enqueue core moved into
``orchestrator.enqueueing``."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from orchestrator import JobCall, job
from orchestrator.catalog import Registration
from orchestrator.client import continuation_body, job_body, schedule_body
from orchestrator.enqueue_requests import EnqueueRequest
from orchestrator.enqueueing import HASHED_FIELDS, request_hash
from orchestrator.testing import _Request as InlineRequest


@job(name="hash.login", secret=["password"])
def login(user: str, password: str) -> None:
    del user, password


PINNED = [
    (
        {"job": "tests.jobs_for_tests.add", "args": [1, 2]},
        "50adf4b7119a77617de8f1f69edfb36272b62254f0ec8cf2aaf587c50d56202d",
    ),
    (
        {
            "job": "x.y",
            "args": [1.5, "s", {"a": [True, None]}],
            "kwargs": {"k": "v"},
            "queue": "low",
            "delay_seconds": 60,
            "retries": 3,
            "retry_delays": [1, 2.5],
            "timeout_seconds": 10,
            "expire_after_seconds": 3600,
            "idempotency_key": "abc",
        },
        "98ce20339c8bc7dd680e657664701fcadc257ddc92699e0e29257207036314c0",
    ),
    (
        {"job": "x.y", "run_at": "2030-01-01T09:00:00+02:00", "idempotency_key": "k"},
        "c976f4be1772b2d83315437407ad92ad4f5dd99028aa6e2db38bd3112fdfe49d",
    ),
    (
        {
            "job": "x.y",
            "continue_after": "8f0e6a52-7c43-4b8e-9d0e-8d7b2c1e3f4a",
            "continue_on": "finished",
        },
        "9ca950bfbb6068a9f7f5b15aaaec873fa74c6a4d52f7b81a1d4b0c9341d9380b",
    ),
]


@pytest.mark.parametrize(("body", "digest"), PINNED)
def test_the_api_requests_hash_is_unchanged(body: dict[str, Any], digest: str) -> None:
    assert request_hash(EnqueueRequest.model_validate(body), None) == digest


def test_every_field_but_the_key_is_hashed() -> None:
    assert set(HASHED_FIELDS) == set(EnqueueRequest.model_fields) - {"idempotency_key"}


def test_secret_arguments_do_not_change_the_hash() -> None:
    registration = Registration.of(login)
    first = EnqueueRequest.model_validate({"job": login.name, "args": ["ada", "one"]})
    second = EnqueueRequest.model_validate({"job": login.name, "args": ["ada", "two"]})
    assert request_hash(first, registration) == request_hash(second, registration)


@pytest.mark.parametrize(
    "body",
    [
        job_body(JobCall.named("x.y", 1, b="c"), {"idempotency_key": "k"}),
        schedule_body(
            JobCall.named("x.y", [1.5]),
            90,
            None,
            {
                "queue": "low",
                "retries": 2,
                "retry_delays": [1, 2.5],
                "timeout_seconds": 3,
                "expire_after": 60,
                "idempotency_key": "k",
            },
        ),
        schedule_body(JobCall.named("x.y"), None, datetime(2030, 1, 1, 9, tzinfo=UTC), {}),
        continuation_body(
            "8f0e6a52-7c43-4b8e-9d0e-8d7b2c1e3f4a", JobCall.named("x.y"), "finished", {}
        ),
    ],
)
def test_the_inline_client_reads_a_body_as_the_api_does(body: dict[str, Any]) -> None:
    assert request_hash(InlineRequest.of(body), None) == request_hash(
        EnqueueRequest.model_validate(json.loads(json.dumps(body))), None
    )
