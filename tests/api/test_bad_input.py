"""Issue point 8: every bad input gets a clear 4xx, an error body, and changes nothing."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from orchestrator.lifecycle import State
from tests.api.conftest import ADD, ECHO, Api

BAD_BODIES: list[tuple[str, dict[str, Any], str]] = [
    ("unknown job", {"job": "nope.missing"}, "nope.missing"),
    ("wrong argument type", {"job": ADD, "args": [1, "x"]}, "'b'"),
    ("missing argument", {"job": ADD, "args": [1]}, "'b'"),
    ("unexpected argument", {"job": ADD, "kwargs": {"a": 1, "b": 2, "c": 3}}, "'c'"),
    ("too many positional", {"job": ADD, "args": [1, 2, 3]}, "takes 2"),
    ("missing job", {"args": [1]}, "job"),
    ("negative delay", {"job": ADD, "args": [1, 2], "delay_seconds": -1}, "delay_seconds"),
    ("invalid queue", {"job": ADD, "args": [1, 2], "queue": "No Spaces!"}, "queue"),
    ("naive run_at", {"job": ADD, "args": [1, 2], "run_at": "2030-01-01T00:00:00"}, "run_at"),
    (
        "delay and run_at",
        {"job": ADD, "args": [1, 2], "delay_seconds": 1, "run_at": "2030-01-01T00:00:00Z"},
        "run_at",
    ),
    ("retries too high", {"job": ADD, "args": [1, 2], "retries": 101}, "retries"),
    ("negative retries", {"job": ADD, "args": [1, 2], "retries": -1}, "retries"),
    ("unknown option", {"job": ADD, "args": [1, 2], "priority": 5}, "priority"),
    ("args not a list", {"job": ADD, "args": {"a": 1}}, "args"),
    (
        "continue_after not an id",
        {"job": ADD, "args": [1, 2], "continue_after": "x"},
        "continue_after",
    ),
    ("date-time format", {"job": ECHO, "kwargs": {"text": "a", "when": "soon"}}, "when"),
]


@pytest.fixture
async def empty_after(api: Api) -> AsyncIterator[Api]:
    yield api
    assert await api.count() == 0
    assert await api.count("outbox") == 0
    assert await api.count("job_history") == 0


@pytest.mark.parametrize(
    ("body", "named"), [(b, n) for _, b, n in BAD_BODIES], ids=[case for case, _, _ in BAD_BODIES]
)
async def test_bad_enqueue_is_422_naming_the_problem(
    empty_after: Api, body: dict[str, Any], named: str
) -> None:
    response = await empty_after.http.post("/api/v1/jobs", json=body)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] in ("invalid_request", "invalid_job")
    assert named in error["message"]


@pytest.mark.parametrize(
    "raw",
    [b"{not json", b"", b'{"job": "x",}', b"\xff\xfe"],
    ids=["broken", "empty", "comma", "binary"],
)
async def test_malformed_json_is_400(empty_after: Api, raw: bytes) -> None:
    response = await empty_after.http.post(
        "/api/v1/jobs", content=raw, headers={"content-type": "application/json"}
    )
    assert response.status_code in (400, 422), response.text
    assert response.json()["error"]["code"] in ("malformed_json", "invalid_request")
    if raw == b"{not json":
        assert response.status_code == 400


async def test_non_object_body_is_422(empty_after: Api) -> None:
    response = await empty_after.http.post("/api/v1/jobs", json=[1, 2])
    assert response.status_code == 422
    assert "error" in response.json()


async def test_body_over_the_limit_is_413(start_api: Any, sqlite_url: str) -> None:
    async with start_api(sqlite_url, max_body_bytes=1000) as api:
        big = {"job": ECHO, "kwargs": {"text": "x" * 2000}}
        response = await api.http.post("/api/v1/jobs", json=big)
        assert response.status_code == 413
        assert response.json()["error"]["code"] == "body_too_large"
        small = await api.http.post("/api/v1/jobs", json={"job": ECHO, "kwargs": {"text": "x"}})
        assert small.status_code == 201
        assert await api.count() == 1


async def test_chunked_body_over_the_limit_is_413_while_reading(
    start_api: Any, sqlite_url: str
) -> None:
    chunks_read = 0

    async def chunks() -> AsyncIterator[bytes]:
        nonlocal chunks_read
        yield b'{"job": "tests.jobs_for_tests.echo", "kwargs": {"text": "'
        for _ in range(1000):
            chunks_read += 1
            yield b"x" * 100
        yield b'"}}'

    async with start_api(sqlite_url, max_body_bytes=1000) as api:
        response = await api.http.post(
            "/api/v1/jobs", content=chunks(), headers={"content-type": "application/json"}
        )
        assert "content-length" not in response.request.headers
        assert response.status_code == 413
        assert await api.count() == 0
    # Refused at the limit, not after reading everything.
    assert chunks_read < 1000


async def test_declared_length_over_the_limit_is_refused_before_reading(
    start_api: Any, sqlite_url: str
) -> None:
    async with start_api(sqlite_url, max_body_bytes=100) as api:
        response = await api.http.post(
            "/api/v1/jobs/bulk",
            content=b"{" + b" " * 200 + b"}",
            headers={"content-type": "application/json"},
        )
        assert response.status_code == 413


async def test_unknown_and_invalid_ids_are_404(api: Api) -> None:
    for path in (f"/api/v1/jobs/{uuid.uuid4()}", "/api/v1/jobs/not-a-uuid"):
        response = await api.http.get(path)
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "not_found"
    for method, suffix in (("DELETE", ""), ("POST", "/requeue")):
        response = await api.http.request(method, f"/api/v1/jobs/{uuid.uuid4()}{suffix}")
        assert response.status_code == 404


@pytest.mark.parametrize("state", [State.ENQUEUED, State.PROCESSING])
async def test_requeue_from_enqueued_or_processing_is_409(api: Api, state: State) -> None:
    job_id = await api.enqueue()
    if state is State.PROCESSING:
        await api.move(job_id, State.PROCESSING)
    response = await api.http.post(f"/api/v1/jobs/{job_id}/requeue")
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "conflict"
    job = (await api.http.get(f"/api/v1/jobs/{job_id}")).json()
    assert job["state"] == state.value
    assert len(await api.outbox_for(job_id)) == 1


@pytest.mark.parametrize(
    "query",
    ["state=Running", "limit=0", "limit=501", "limit=x", "cursor=%%%", "cursor=bm90LWEtY3Vyc29y"],
)
async def test_bad_list_queries_are_422(api: Api, query: str) -> None:
    response = await api.http.get(f"/api/v1/jobs?{query}")
    assert response.status_code == 422, response.text
    assert "error" in response.json()


async def test_unknown_route_and_method_are_json_errors(api: Api) -> None:
    missing = await api.http.get("/api/v1/nothing-here")
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "not_found"
    wrong = await api.http.put("/api/v1/jobs")
    assert wrong.status_code == 405
    assert wrong.json()["error"]["code"] == "method_not_allowed"
