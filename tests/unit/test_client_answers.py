"""Issue 14, point 12: what the clients return (one rule, ``orchestrator.results``) and what they
raise when nothing answers at the API's URL (``ApiUnavailableError``, still httpx's error)."""

from __future__ import annotations

import inspect
import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from orchestrator import AsyncClient, Client, JobCall
from orchestrator.errors import ApiError, ApiUnavailableError, OrchestratorError
from orchestrator.results import (
    Answer,
    Batch,
    BatchProgress,
    Job,
    JobChange,
    JobPage,
    Recurring,
    Stats,
)

CALL = JobCall.named("app.add", 1, 2)
JOB = {"id": "j1", "job": "app.add", "state": "Succeeded", "result": 3, "error": None}
ANSWERS: dict[tuple[str, str], Any] = {
    ("POST", "/api/v1/jobs"): {"id": "j1", "state": "Enqueued"},
    ("POST", "/api/v1/jobs/bulk"): {"ids": ["j1", "j2"]},
    ("POST", "/api/v1/batches"): {"id": "b1", "job_ids": ["j1", "j2"], "continuation_id": None},
    ("GET", "/api/v1/batches/b1"): {
        "id": "b1",
        "total": 2,
        "succeeded": 1,
        "failed": 0,
        "deleted": 0,
        "pending": 1,
        "state": "running",
        "continuation_id": None,
        "completed_at": None,
    },
    ("GET", "/api/v1/jobs/j1"): JOB,
    ("GET", "/api/v1/jobs"): {"items": [JOB], "next_cursor": None},
    ("DELETE", "/api/v1/jobs/j1"): {"id": "j1", "state": "Deleted"},
    ("POST", "/api/v1/jobs/j1/requeue"): {"id": "j1", "state": "Enqueued"},
    ("GET", "/api/v1/stats"): {"states": {"Enqueued": 1}, "queues": []},
    ("PUT", "/api/v1/recurring/r1"): {
        "id": "r1",
        "job": "app.add",
        "cron": "@daily",
        "timezone": "UTC",
        "paused": False,
    },
    ("POST", "/api/v1/recurring/r1/trigger"): {"job_id": "j3"},
    ("GET", "/api/v1/recurring"): {"items": [{"id": "r1", "paused": True}]},
}


def _answer(request: httpx.Request) -> httpx.Response:
    return httpx.Response(200, json=ANSWERS[(request.method, request.url.path)])


def _client() -> Client:
    return Client("http://api.test", transport=httpx.MockTransport(_answer))


def test_creating_jobs_returns_ids_and_everything_else_a_typed_answer() -> None:
    with _client() as client:
        assert client.enqueue(CALL) == "j1"
        assert client.enqueue_many([CALL, CALL]) == ["j1", "j2"]
        assert client.trigger("r1") == "j3"

        batch = client.batch([CALL, CALL])
        assert isinstance(batch, Batch)
        assert (batch.id, batch.job_ids, batch.continuation_id) == ("b1", ["j1", "j2"], None)
        progress = client.get_batch("b1")
        assert isinstance(progress, BatchProgress)
        assert (progress.pending, progress.state) == (1, "running")

        job = client.get("j1")
        assert isinstance(job, Job)
        assert (job.id, job.name, job.state, job.result, job.error) == (
            "j1",
            "app.add",
            "Succeeded",
            3,
            None,
        )
        page = client.list()
        assert isinstance(page, JobPage) and isinstance(page.jobs[0], Job)
        assert page.jobs[0].state == "Succeeded" and page.next_cursor is None
        assert isinstance(client.delete("j1"), JobChange)
        assert client.requeue("j1").state == "Enqueued"
        assert isinstance(client.stats(), Stats) and client.stats().states == {"Enqueued": 1}

        definition = client.add_or_update("r1", CALL, "@daily")
        assert isinstance(definition, Recurring)
        assert (definition.id, definition.cron, definition.paused) == ("r1", "@daily", False)
        assert [d.paused for d in client.list_recurring()] == [True]


def test_typed_answers_are_still_the_dicts_they_were() -> None:
    """Backward compatible: indexing, equality with the plain dict, json.dumps, dict()."""
    with _client() as client:
        batch = client.batch([CALL])
        job = client.get("j1")
    assert batch["job_ids"] == ["j1", "j2"]
    assert batch == ANSWERS[("POST", "/api/v1/batches")]
    assert json.loads(json.dumps(job)) == JOB
    assert dict(job) == JOB and isinstance(job, dict)
    with pytest.raises(AttributeError, match="no 'history'"):
        _ = job.history  # not in this answer: an attribute error naming the key


def test_sync_and_async_methods_return_the_same_kinds() -> None:
    for name, method in inspect.getmembers(Client, inspect.isfunction):
        if name.startswith("_") or not hasattr(AsyncClient, name):
            continue
        sync = inspect.signature(method, eval_str=True).return_annotation
        other = inspect.signature(getattr(AsyncClient, name), eval_str=True).return_annotation
        if name == "iter_jobs":
            continue  # Iterator[Job] and AsyncIterator[Job]
        assert sync == other, name
        if isinstance(sync, type) and issubclass(sync, Answer):
            assert issubclass(sync, dict), name


# -- nothing answers --------------------------------------------------------------------------


@pytest.fixture
def closed_url() -> str:
    """A loopback port nothing listens on (bound, then closed)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def _check_unavailable(error: BaseException, url: str) -> None:
    assert isinstance(error, ApiUnavailableError)
    assert isinstance(error, OrchestratorError) and isinstance(error, httpx.ConnectError)
    assert not isinstance(error, ApiError)  # no answer: code handling answers must not see one
    assert error.url == url
    assert f"cannot reach the Orchestrator API at {url} (" in str(error)
    assert error.reason  # what the connection attempt said


def test_the_blocking_client_names_the_url_it_cannot_reach(closed_url: str) -> None:
    with Client(closed_url) as client:
        with pytest.raises(httpx.ConnectError) as raised:  # what callers caught before
            client.enqueue(CALL)
        _check_unavailable(raised.value, closed_url)
        with pytest.raises(ApiUnavailableError):
            client.get("j1")


async def test_the_async_client_names_the_url_it_cannot_reach(closed_url: str) -> None:
    async with AsyncClient(closed_url) as client:
        with pytest.raises(OrchestratorError) as raised:
            await client.enqueue(CALL)
    _check_unavailable(raised.value, closed_url)
    assert raised.value.request.url.path == "/api/v1/jobs"  # httpx's request is kept


class _Answering(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        data = b'{"id": "j1", "state": "Enqueued"}'
        self.send_response(201)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
        self.close_connection = True  # as a server that stops closes its connections

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[ThreadingHTTPServer]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Answering)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield httpd
    httpd.server_close()


def test_an_api_that_went_away_is_unavailable_too(server: ThreadingHTTPServer) -> None:
    """Its connections are closed with it; the next request finds nothing listening."""
    url = f"http://127.0.0.1:{server.server_address[1]}"
    with Client(url) as client:
        assert client.enqueue(CALL) == "j1"
        server.shutdown()
        server.server_close()
        with pytest.raises(ApiUnavailableError) as raised:
            client.enqueue(CALL)
    _check_unavailable(raised.value, url)


def test_a_connection_not_made_in_time_stays_a_connect_timeout() -> None:
    def slow(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectTimeout("timed out", request=request)

    client = Client("http://api.test", transport=httpx.MockTransport(slow))
    with client, pytest.raises(httpx.ConnectTimeout) as raised:
        client.get("j1")
    assert isinstance(raised.value, ApiUnavailableError)
    assert "cannot reach the Orchestrator API at http://api.test (timed out)" in str(raised.value)
