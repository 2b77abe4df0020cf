"""What the clients send and how they read answers, against ``httpx.MockTransport``."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import httpx
import pytest

from orchestrator import AsyncClient, Client, JobCall, job
from orchestrator.errors import ApiError, JobFailedError


@job(name="shape.send")
def send(to: str, queue: str = "inbox", retries: int = 0) -> str:
    """Its parameters are named like enqueue options on purpose."""
    return to


Handler = Callable[[httpx.Request], httpx.Response]


class Recorder:
    """A mock API: records every request and answers with the given handler."""

    def __init__(self, handler: Handler | None = None) -> None:
        self.requests: list[httpx.Request] = []
        self.handler = handler or (lambda _: httpx.Response(201, json={"id": "j1", "state": "x"}))

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return self.handler(request)

    def client(self, api_key: str | None = None) -> Client:
        transport = httpx.MockTransport(self)
        return Client("http://api.test", api_key, transport=transport)

    def async_client(self) -> AsyncClient:
        return AsyncClient("http://api.test", transport=httpx.MockTransport(self))

    @property
    def body(self) -> Any:
        return json.loads(self.requests[-1].content)


def test_enqueue_sends_arguments_and_options_apart() -> None:
    api = Recorder()
    call = send.call("a@b.c", queue="spam", retries=3)
    job_id = api.client().enqueue(
        call, queue="critical", retries=5, timeout_seconds=30, expire_after=timedelta(hours=1),
        idempotency_key="k-1",
    )
    assert job_id == "j1"
    request = api.requests[0]
    assert (request.method, request.url.path) == ("POST", "/api/v1/jobs")
    assert api.body == {
        "job": "shape.send",
        "args": ["a@b.c"],
        "kwargs": {"queue": "spam", "retries": 3},
        "queue": "critical",
        "retries": 5,
        "timeout_seconds": 30,
        "expire_after_seconds": 3600.0,
        "idempotency_key": "k-1",
    }


def test_enqueue_without_options_sends_only_the_call() -> None:
    api = Recorder()
    api.client().enqueue(JobCall.named("other.job", 1, when=datetime(2024, 1, 1, tzinfo=UTC)))
    assert api.body == {
        "job": "other.job", "args": [1], "kwargs": {"when": "2024-01-01T00:00:00Z"}
    }


def test_api_key_is_a_bearer_token() -> None:
    api = Recorder()
    api.client("s3cret").enqueue(send.call("x"))
    assert api.requests[0].headers["authorization"] == "Bearer s3cret"
    Recorder.client(api).enqueue(send.call("x"))
    assert "authorization" not in api.requests[1].headers


def test_schedule_with_delay_or_aware_run_at() -> None:
    api = Recorder()
    client = api.client()
    client.schedule(send.call("x"), delay=timedelta(minutes=2), queue="low")
    assert api.body["delay_seconds"] == 120.0
    assert api.body["queue"] == "low"
    assert "run_at" not in api.body
    at = datetime(2030, 5, 1, 12, 0, tzinfo=timezone(timedelta(hours=2)))
    client.schedule(send.call("x"), run_at=at)
    assert api.body["run_at"] == "2030-05-01T12:00:00+02:00"
    assert "delay_seconds" not in api.body


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, "exactly one of delay or run_at"),
        ({"delay": 1, "run_at": datetime.now(UTC)}, "exactly one of delay or run_at"),
        ({"run_at": datetime(2030, 1, 1)}, "timezone-aware"),
        ({"delay": timedelta(seconds=-1)}, "must not be negative"),
    ],
)
def test_schedule_refuses_bad_timing_before_sending(kwargs: dict[str, Any], message: str) -> None:
    api = Recorder()
    with pytest.raises(ValueError, match=message):
        api.client().schedule(send.call("x"), **kwargs)
    assert api.requests == []


def test_continue_with_names_the_parent() -> None:
    api = Recorder()
    parent = uuid.uuid4()
    api.client().continue_with(parent, send.call("x"), retries=0)
    assert api.body["continue_after"] == str(parent)
    assert api.body["retries"] == 0
    assert "continue_on" not in api.body  # "succeeded" is the server's default
    api.client().continue_with("p-1", send.call("x"), on="finished")
    assert api.body["continue_on"] == "finished"


def test_enqueue_many_takes_calls_or_call_option_pairs() -> None:
    api = Recorder(lambda _: httpx.Response(201, json={"ids": ["a", "b", "c"]}))
    ids = api.client().enqueue_many(
        [send.call("1"), (send.call("2"), {"queue": "low"}), (send.call("3"), {"delay": 5})]
    )
    assert ids == ["a", "b", "c"]
    assert api.requests[0].url.path == "/api/v1/jobs/bulk"
    jobs = api.body["jobs"]
    assert [j["args"] for j in jobs] == [["1"], ["2"], ["3"]]
    assert "queue" not in jobs[0]
    assert jobs[1]["queue"] == "low"
    assert jobs[2]["delay_seconds"] == 5.0


def test_a_bare_job_function_is_refused_with_a_hint() -> None:
    api = Recorder()
    client = api.client()
    with pytest.raises(TypeError, match=r"enqueue\(\) takes a JobCall.*send\.call\(\.\.\.\)"):
        client.enqueue(send)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"schedule\(\) takes a JobCall"):
        client.schedule(send, delay=1)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"enqueue_many\(\) takes a JobCall .*, not str"):
        client.enqueue_many(["shape.send"])  # type: ignore[list-item]
    assert api.requests == []


def test_unknown_options_are_refused() -> None:
    api = Recorder()
    with pytest.raises(TypeError, match=r"unknown option\(s\) \['to'\]"):
        api.client().enqueue(send.call("x"), to="y")  # type: ignore[call-arg]
    with pytest.raises(TypeError, match=r"unknown option\(s\) \['delay'\]"):
        api.client().enqueue(send.call("x"), delay=5)  # type: ignore[call-arg]
    assert api.requests == []


def test_error_answers_become_api_errors() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        body = {"error": {"code": "invalid_job", "message": "job 'x': argument 'a': nope"}}
        return httpx.Response(422, json=body)

    with pytest.raises(ApiError) as info:
        Recorder(handler).client().enqueue(send.call("x"))
    assert (info.value.status, info.value.code) == (422, "invalid_job")
    assert info.value.message == "job 'x': argument 'a': nope"


def test_an_error_without_the_json_shape_keeps_the_text() -> None:
    api = Recorder(lambda _: httpx.Response(502, text="Bad Gateway from the proxy"))
    with pytest.raises(ApiError) as info:
        api.client().get("j1")
    assert (info.value.status, info.value.code) == (502, "http_error")
    assert info.value.message == "Bad Gateway from the proxy"


def test_reading_endpoints() -> None:
    answers = {
        ("GET", "/api/v1/jobs/a%2Fb"): {"id": "a/b"},
        ("DELETE", "/api/v1/jobs/j1"): {"id": "j1", "state": "Deleted"},
        ("POST", "/api/v1/jobs/j1/requeue"): {"id": "j1", "state": "Enqueued"},
        ("GET", "/api/v1/stats"): {"states": {}, "queues": []},
        ("GET", "/api/v1/catalog"): {"items": []},
    }
    api = Recorder(lambda r: httpx.Response(200, json=answers[(r.method, r.url.raw_path.decode())]))
    client = api.client()
    assert client.get("a/b") == {"id": "a/b"}  # an id never escapes its path segment
    assert client.delete("j1")["state"] == "Deleted"
    assert client.requeue("j1")["state"] == "Enqueued"
    assert client.stats() == {"states": {}, "queues": []}
    assert client.catalog() == {"items": []}


def test_list_and_iterate_pages() -> None:
    pages = {None: (["j3", "j2"], "c1"), "c1": (["j1"], None)}

    def handler(request: httpx.Request) -> httpx.Response:
        items, next_cursor = pages[request.url.params.get("cursor")]
        return httpx.Response(200, json={"items": [{"id": i} for i in items],
                                         "next_cursor": next_cursor})

    api = Recorder(handler)
    client = api.client()
    page = client.list(state="Failed", queue="low", limit=2)
    assert dict(api.requests[0].url.params) == {"state": "Failed", "queue": "low", "limit": "2"}
    assert page["next_cursor"] == "c1"
    assert [j["id"] for j in client.iter_jobs(job="shape.send", page_size=2)] == ["j3", "j2", "j1"]
    assert dict(api.requests[-1].url.params) == {"job": "shape.send", "limit": "2", "cursor": "c1"}


def _states(*states: str, result: Any = None) -> Handler:
    remaining = list(states)

    def handler(_: httpx.Request) -> httpx.Response:
        state = remaining.pop(0) if len(remaining) > 1 else remaining[0]
        error = {"type": "RuntimeError", "message": "boom", "traceback": "..."}
        return httpx.Response(200, json={
            "id": "j1", "state": state, "result": result,
            "error": error if state == "Failed" else None,
        })

    return handler


def test_wait_returns_the_result_once_succeeded() -> None:
    api = Recorder(_states("Enqueued", "Processing", "Succeeded", result={"n": 3}))
    assert api.client().wait("j1", timeout=5, poll_interval=0.001) == {"n": 3}
    assert len(api.requests) == 3


@pytest.mark.parametrize("final", ["Failed", "Deleted"])
def test_wait_raises_when_the_job_ended_otherwise(final: str) -> None:
    api = Recorder(_states("Processing", final))
    with pytest.raises(JobFailedError, match=f"ended {final}") as info:
        api.client().wait("j1", timeout=5, poll_interval=0.001)
    assert info.value.job["state"] == final


def test_wait_keeps_waiting_through_a_scheduled_retry() -> None:
    api = Recorder(_states("Processing", "Scheduled", "Processing", "Succeeded", result=1))
    assert api.client().wait("j1", timeout=5, poll_interval=0.001) == 1


def test_wait_times_out() -> None:
    api = Recorder(_states("Processing"))
    with pytest.raises(TimeoutError, match="still Processing"):
        api.client().wait("j1", timeout=0.05, poll_interval=0.01)


async def test_async_client_sends_the_same_requests() -> None:
    sync_api, async_api = Recorder(), Recorder()
    sync_client = sync_api.client()
    at = datetime(2030, 1, 1, tzinfo=UTC)
    sync_client.schedule(send.call("x"), run_at=at, idempotency_key="k")
    sync_client.continue_with("p", send.call("y"), on="finished")
    async with async_api.async_client() as client:
        await client.schedule(send.call("x"), run_at=at, idempotency_key="k")
        await client.continue_with("p", send.call("y"), on="finished")
        with pytest.raises(TypeError, match="takes a JobCall"):
            await client.enqueue(send)  # type: ignore[arg-type]
    assert [json.loads(r.content) for r in async_api.requests] == [
        json.loads(r.content) for r in sync_api.requests
    ]


async def test_async_wait_and_pages() -> None:
    api = Recorder(_states("Enqueued", "Succeeded", result="done"))
    async with api.async_client() as client:
        assert await client.wait("j1", timeout=5, poll_interval=0.001) == "done"
    pages = Recorder(lambda r: httpx.Response(200, json={
        "items": [{"id": r.url.params.get("cursor", "first")}],
        "next_cursor": None if "cursor" in r.url.params else "second",
    }))
    async with pages.async_client() as client:
        assert [j["id"] async for j in client.iter_jobs()] == ["first", "second"]


def test_sync_and_async_clients_have_the_same_methods() -> None:
    def public(cls: type) -> set[str]:
        return {name for name in vars(cls) if not name.startswith("_")} - {"close", "aclose"}

    assert public(Client) == public(AsyncClient)
    assert {"enqueue", "schedule", "continue_with", "enqueue_many", "get", "list", "iter_jobs",
            "delete", "requeue", "stats", "catalog", "wait"} <= public(Client)
