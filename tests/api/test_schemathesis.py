"""Schemathesis over the API's own OpenAPI schema, against a real API process on PostgreSQL
and on SQLite.

Every operation gets generated requests that fit the schema and requests that do not, without
keys (a loopback client), with an admin key and with a read key. No answer may be a server
error, every status must be one the schema documents for that operation (the error statuses with
the ``{"error": {"code", "message"}}`` schema), and every body must fit its documented schema.
Job names come from the real catalog so that enqueues succeed and reach the store.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.api.conftest import ADD, BOUNDS_JOBS, ECHO, FAIL, TEST_JOBS, URGENT
from tests.support.system import System, remove_namespace

#: Examples per operation and generation mode: small, so the runs take a few minutes in all.
EXAMPLES = 4
ADMIN_KEY = "schemathesis-admin-key-0123456789"
READ_KEY = "schemathesis-read-key-0123456789"
CATALOG = [ADD, ECHO, FAIL, URGENT, f"{BOUNDS_JOBS}.keep", f"{BOUNDS_JOBS}.sign_in"]
QUEUES = ["default", "critical", "mail", "low", "other"]
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


def _with_real_names(raw: dict[str, Any]) -> dict[str, Any]:
    """The schema with ``job`` and ``queue`` drawn from the real catalog and queues (otherwise
    nearly every generated enqueue would be an unknown job, refused before the store)."""
    text = json.dumps(raw)
    schema: dict[str, Any] = json.loads(text)
    for model in schema.get("components", {}).get("schemas", {}).values():
        properties = model.get("properties", {})
        if "job" in properties and "args" in properties:
            properties["job"] = {"type": "string", "enum": CATALOG}
        if "queue" in properties:
            properties["queue"] = {"anyOf": [{"type": "string", "enum": QUEUES}, {"type": "null"}]}
    return schema


def _run(
    base_url: str, headers: dict[str, str], raw: dict[str, Any], examples: int = EXAMPLES
) -> list[str]:
    schema = schemathesis.openapi.from_dict(_with_real_names(raw))
    failures: list[str] = []
    for result in schema.get_all_operations():
        operation = result.ok()
        for mode in (schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE):

            @settings(
                max_examples=examples,
                deadline=None,
                database=None,
                phases=[Phase.explicit, Phase.generate],
                suppress_health_check=list(HealthCheck),
            )
            @given(case=operation.as_strategy(generation_mode=mode))
            def exercise(case: Any) -> None:
                case.call_and_validate(base_url=base_url, headers=headers, checks=CHECKS)

            try:
                exercise()
            except Unsatisfiable:  # nothing in the operation can be made invalid (no fields)
                assert mode is schemathesis.GenerationMode.NEGATIVE, operation.label
            except (Exception, BaseExceptionGroup) as exc:  # a failed check: report them all
                failures.append(f"{operation.label} ({mode}): {exc}"[:3000])
                print(failures[-1][:600], flush=True)
    return failures


@pytest.fixture
def system(database_url: str, amqp_url: str, tmp_path: Path) -> Iterator[System]:
    running = System(
        database_url=database_url,
        jobs=f"{TEST_JOBS},{BOUNDS_JOBS}",
        amqp_url=amqp_url,
        log_dir=tmp_path,
        extra_env={"ORCHESTRATOR_API_KEYS": f"{ADMIN_KEY}:admin,{READ_KEY}:read"},
    )
    try:
        yield running
    finally:
        running.stop_all()
        remove_namespace(amqp_url, running.namespace, tuple(QUEUES))


def _start(system: System, **env: str) -> dict[str, Any]:
    system.start("api", "api", **env)
    system.wait_for_api()
    headers = {"authorization": f"Bearer {ADMIN_KEY}"} if "ORCHESTRATOR_API_KEYS" not in env else {}
    return dict(httpx.get(f"{system.api_url}/openapi.json", headers=headers).json())


@pytest.mark.timeout(600)
def test_no_server_error_and_only_documented_answers_with_keys(system: System) -> None:
    raw = _start(system)
    failures = []
    failures += _run(system.api_url, {"authorization": f"Bearer {ADMIN_KEY}"}, raw)
    # A read key: every write is 403, so fewer examples say as much.
    failures += _run(system.api_url, {"authorization": f"Bearer {READ_KEY}"}, raw, examples=2)
    assert not failures, "\n\n".join(failures)


@pytest.mark.timeout(600)
def test_no_server_error_and_only_documented_answers_without_keys(system: System) -> None:
    raw = _start(system, ORCHESTRATOR_API_KEYS="")
    failures = _run(system.api_url, {}, raw)
    assert not failures, "\n\n".join(failures)
