"""Issue 11, "What was seen" 8 (and 1, 11): values a store cannot hold are refused at the edge.

Every case runs on PostgreSQL and on SQLite and must get the same answer: a 4xx in the error
shape that names the field, and nothing stored. On the code before this test, 21 of these cases
answered 500 on PostgreSQL and 7 on SQLite, and the rest were accepted (stored, or wedging a worker
later).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import pytest

from tests.api.conftest import ADD, BOUNDS_JOBS, DOWN_AMQP_URL, ECHO, TEST_JOBS, Api, ApiFactory

KEEP = "tests.api.bounds_jobs.keep"
BIG = "99999999999999999999"  # above int64
NUL = "\u0000"


@dataclass(frozen=True)
class Case:
    name: str
    method: str
    path: str
    #: A JSON body (encoded by httpx) or raw bytes (for what json.dumps would never write).
    body: Any = None
    raw: bytes | None = None
    params: dict[str, str] = field(default_factory=dict)
    #: Words the error message must contain: the field it names.
    named: str = ""
    statuses: tuple[int, ...] = (400, 422)


def _keep(**kwargs: Any) -> dict[str, Any]:
    return {"job": KEEP, "kwargs": kwargs}


_RECURRING = {"job": ADD, "args": [1, 2], "cron": "* * * * *"}
_RID = "a%00b"  # a recurring id with NUL, URL-encoded in the path

CASES: list[Case] = [
    # NUL and lone surrogates in strings that reach the store
    Case("NUL in an argument", "POST", "/api/v1/jobs", _keep(data="a\u0000b"), named="kwargs"),
    Case("NUL in a nested key", "POST", "/api/v1/jobs", _keep(data={"k\u0000": 1}), named="kwargs"),
    Case("NUL in a positional", "POST", "/api/v1/jobs", {"job": KEEP, "args": [NUL]}, named="args"),
    Case(
        "lone surrogate in an argument",
        "POST",
        "/api/v1/jobs",
        raw=b'{"job": "%s", "args": ["\\ud800"]}' % KEEP.encode(),
        named="args",
    ),
    Case(
        "NUL in an idempotency key",
        "POST",
        "/api/v1/jobs",
        {"job": ADD, "args": [1, 2], "idempotency_key": "k\u0000"},
        named="idempotency_key",
    ),
    Case(
        "NUL in a bulk member",
        "POST",
        "/api/v1/jobs/bulk",
        {"jobs": [_keep(data=1), _keep(data=NUL)]},
        named="jobs[1]",
    ),
    Case("NUL in a job name", "POST", "/api/v1/jobs", {"job": "a\u0000"}, named="job"),
    Case("NUL in a kwargs key", "POST", "/api/v1/jobs", _keep(**{"data\u0000": 1}), named="kwargs"),
    Case(
        "lone surrogate in a kwargs key",
        "POST",
        "/api/v1/jobs",
        raw=b'{"job": "%s", "kwargs": {"\\udc00": 1}}' % KEEP.encode(),
        named="kwargs",
    ),
    Case(
        "NUL in a kwargs key in a bulk",
        "POST",
        "/api/v1/jobs/bulk",
        {"jobs": [_keep(data=1), {"job": KEEP, "kwargs": {"k\u0000": 1}}]},
        named="jobs[1]: kwargs",
    ),
    Case(
        "NUL in a recurring kwargs key",
        "PUT",
        "/api/v1/recurring/r1",
        {"job": KEEP, "kwargs": {"k\u0000": 1}, "cron": "@daily"},
        named="kwargs",
    ),
    # Durations and times the store or Python's datetime cannot hold
    Case(
        "expire_after_seconds 1e308",
        "POST",
        "/api/v1/jobs",
        {"job": ADD, "args": [1, 2], "expire_after_seconds": 1e308},
        named="expire_after_seconds",
    ),
    Case(
        "timeout_seconds 1e308",
        "POST",
        "/api/v1/jobs",
        {"job": ADD, "args": [1, 2], "timeout_seconds": 1e308},
        named="timeout_seconds",
    ),
    Case(
        "run_at past year 9999 in UTC",
        "POST",
        "/api/v1/jobs",
        {"job": ADD, "args": [1, 2], "run_at": "9999-12-31T23:59:59-14:00"},
        named="run_at",
    ),
    Case(
        "run_at before year 1 in UTC",
        "POST",
        "/api/v1/jobs",
        {"job": ADD, "args": [1, 2], "run_at": "0001-01-01T00:00:00+14:00"},
        named="run_at",
    ),
    Case(
        "retry delay 1e308",
        "POST",
        "/api/v1/jobs",
        {"job": ADD, "args": [1, 2], "retry_delays": [1e308]},
        named="retry_delays",
    ),
    # Booleans are not integers
    Case(
        "retries true",
        "POST",
        "/api/v1/jobs",
        {"job": ADD, "args": [1, 2], "retries": True},
        named="retries",
    ),
    Case(
        "timeout_seconds true",
        "POST",
        "/api/v1/jobs",
        {"job": ADD, "args": [1, 2], "timeout_seconds": True},
        named="timeout_seconds",
    ),
    Case(
        "recurring retries true",
        "PUT",
        "/api/v1/recurring/r1",
        {**_RECURRING, "retries": True},
        named="retries",
    ),
    # Cron fields out of range
    Case(
        "cron step out of range",
        "PUT",
        "/api/v1/recurring/r1",
        {**_RECURRING, "cron": "*/99999999999999999999 * * * *"},
        named="cron",
    ),
    Case(
        "cron value out of range",
        "PUT",
        "/api/v1/recurring/r1",
        {**_RECURRING, "cron": "0 0 99999999999999999999 * *"},
        named="cron",
    ),
    # Query filters of the API
    Case("NUL in the queue filter", "GET", "/api/v1/jobs", params={"queue": NUL}, named="queue"),
    Case("NUL in the job filter", "GET", "/api/v1/jobs", params={"job": NUL}, named="job"),
    # Recurring ids
    Case("NUL in a recurring id (PUT)", "PUT", f"/api/v1/recurring/{_RID}", _RECURRING, named="id"),
    Case("NUL in a recurring id (GET)", "GET", f"/api/v1/recurring/{_RID}", named="id"),
    Case("NUL in a recurring id (DELETE)", "DELETE", f"/api/v1/recurring/{_RID}", named="id"),
    Case(
        "NUL in a recurring id (trigger)", "POST", f"/api/v1/recurring/{_RID}/trigger", named="id"
    ),
    Case("NUL in a recurring id (pause)", "POST", f"/api/v1/recurring/{_RID}/pause", named="id"),
    Case("NUL in a recurring id (resume)", "POST", f"/api/v1/recurring/{_RID}/resume", named="id"),
    # Dead-letter ids and cursors above int64
    Case("dead-letter id above int64", "GET", f"/api/v1/dead-letters/{BIG}", named="letter_id"),
    Case(
        "dead-letter replay above int64",
        "POST",
        f"/api/v1/dead-letters/{BIG}/replay",
        named="letter_id",
    ),
    Case(
        "dead-letter discard above int64",
        "DELETE",
        f"/api/v1/dead-letters/{BIG}",
        named="letter_id",
    ),
    Case(
        "dead-letter cursor above int64",
        "GET",
        "/api/v1/dead-letters",
        params={"cursor": BIG},
        named="cursor",
    ),
    # The dashboard's filters
    Case(
        "NUL in the dashboard text search",
        "GET",
        "/hangfire/jobs",
        params={"q": NUL},
        named="Text in arguments: ",
    ),
    Case(
        "NUL in the dashboard name filter",
        "GET",
        "/hangfire/jobs",
        params={"name": NUL},
        named="Job name: ",
    ),
    Case(
        "NUL in the dashboard queue filter",
        "GET",
        "/hangfire/jobs",
        params={"queue": NUL},
        named="Queue: ",
    ),
    Case(
        "dashboard from before year 1 in UTC",
        "GET",
        "/hangfire/jobs",
        params={"from": "0001-01-01T00:00:00+14:00"},
        named="From: ",
    ),
    Case(
        "dashboard to past year 9999 in UTC",
        "GET",
        "/hangfire/jobs",
        params={"to": "9999-12-31T23:59:59-14:00"},
        named="To: ",
    ),
    Case(
        "dashboard from at the year limit",
        "GET",
        "/hangfire/jobs",
        params={"from": "0001-01-01T00:00:00"},
        named="From: ",
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
async def test_a_value_the_store_cannot_hold_is_a_4xx_naming_it(
    bounded_api: Api, case: Case
) -> None:
    response = await bounded_api.http.request(
        case.method,
        case.path,
        json=case.body,
        content=case.raw,
        params=case.params,
        headers={"content-type": "application/json"} if case.raw is not None else None,
    )
    assert response.status_code in case.statuses, (response.status_code, response.text)
    if case.path.startswith("/hangfire"):
        assert case.named in response.text
    else:
        error = response.json()["error"]
        assert set(error) == {"code", "message"}
        assert case.named in error["message"], error
        assert NUL not in error["message"], error
    assert await bounded_api.count() == 0
    assert await bounded_api.count("recurring_jobs") == 0


async def test_values_at_the_bounds_are_accepted(bounded_api: Api) -> None:
    """The largest values inside the bounds are stored, read back, and shown."""
    api = bounded_api
    for body in (
        _keep(data={"nested": [1.5e308, -1.5e308, "\u00e9\u4e2d\U0001f600"]}),
        {"job": ADD, "args": [1, 2], "run_at": "9999-12-30T00:00:00Z"},
        {"job": ADD, "args": [1, 2], "expire_after_seconds": 315_360_000},
        {"job": ADD, "args": [1, 2], "retries": 100, "timeout_seconds": 1.5},
        {"job": ECHO, "kwargs": {"text": "tab\tnew line\n"}},
    ):
        response = await api.http.post("/api/v1/jobs", json=body)
        assert response.status_code == 201, response.text
        job = await api.http.get(f"/api/v1/jobs/{response.json()['id']}")
        assert job.status_code == 200, job.text
    for query in ({"from": "2000-01-01T00:00:00Z", "to": "9999-12-30T00:00"}, {"q": "\u4e2d"}):
        page = await api.http.get("/hangfire/jobs", params=query)
        assert page.status_code == 200, page.text


async def test_arguments_nested_too_deep_or_too_large_are_refused(
    start_api: ApiFactory, database_url: str
) -> None:
    async with start_api(
        database_url,
        amqp_url=DOWN_AMQP_URL,
        jobs=[TEST_JOBS, BOUNDS_JOBS],
        max_argument_depth=8,
        max_argument_bytes=1000,
    ) as api:
        deep: Any = 1
        for _ in range(8):
            deep = [deep]
        deeper = [deep]
        assert (await api.http.post("/api/v1/jobs", json=_keep(data=deep))).status_code == 201
        too_deep = await api.http.post("/api/v1/jobs", json=_keep(data=deeper))
        assert too_deep.status_code == 422, too_deep.text
        assert "kwargs" in too_deep.json()["error"]["message"]
        assert "deep" in too_deep.json()["error"]["message"]
        large = await api.http.post("/api/v1/jobs", json=_keep(data="x" * 1000))
        assert large.status_code == 422, large.text
        assert "1000 bytes" in large.json()["error"]["message"]
        recurring = await api.http.put(
            "/api/v1/recurring/r", json={"job": KEEP, "kwargs": {"data": deeper}, "cron": "@daily"}
        )
        assert recurring.status_code == 422, recurring.text
        assert await api.count() == 1


async def test_deep_json_is_refused_not_a_500(bounded_api: Api) -> None:
    """Nesting deeper than Python's recursion limit while parsing."""
    raw = b'{"job": "%s", "args": [' % KEEP.encode() + b"[" * 100_000 + b"]" * 100_000 + b"]}"
    response = await bounded_api.http.post(
        "/api/v1/jobs", content=raw, headers={"content-type": "application/json"}
    )
    assert response.status_code in (400, 422), response.text
    assert response.json()["error"]["code"] in ("malformed_json", "invalid_request")


#: Numbers Python's json module reads as a non-finite float (and one integer it cannot read), in
#: each spelling; none is JSON a store holds.
NOT_FINITE = ["NaN", "Infinity", "-Infinity", "1e400", "-2.5e999", "1.7976931348623159e308"]
TOO_LONG = "9" * 5000  # an integer past Python's 4,300-digit conversion limit
_N = "@number@"


@dataclass(frozen=True)
class Place:
    name: str
    method: str
    path: str
    body: dict[str, Any]
    #: The JSON path the message must name (down to the argument, never inside it).
    named: str
    #: Words of the body the message must not contain (a nested key of an argument).
    hidden: tuple[str, ...] = ()


_OK = {"job": ADD, "args": [1, 2]}
PLACES = [
    Place("single, positional", "POST", "/api/v1/jobs", {"job": KEEP, "args": [1, _N]}, "args[1]"),
    Place(
        "single, keyword",
        "POST",
        "/api/v1/jobs",
        {"job": KEEP, "kwargs": {"number": _N}},
        "kwargs.number",
    ),
    Place(
        "single, inside an argument",
        "POST",
        "/api/v1/jobs",
        {"job": KEEP, "kwargs": {"data": {"card_pin": [0, _N]}}},
        "kwargs.data",
        hidden=("card_pin",),
    ),
    Place(
        "single, an option",
        "POST",
        "/api/v1/jobs",
        {**_OK, "timeout_seconds": _N},
        "timeout_seconds",
    ),
    Place(
        "single, a retry delay",
        "POST",
        "/api/v1/jobs",
        {**_OK, "retry_delays": [1, _N]},
        "retry_delays[1]",
    ),
    Place(
        "bulk",
        "POST",
        "/api/v1/jobs/bulk",
        {"jobs": [_OK, _OK, _OK, {"job": KEEP, "args": [_N]}]},
        "jobs[3].args[0]",
    ),
    Place(
        "batch member",
        "POST",
        "/api/v1/batches",
        {"jobs": [_OK, {"job": KEEP, "kwargs": {"number": _N}}]},
        "jobs[1].kwargs.number",
    ),
    Place(
        "batch continuation",
        "POST",
        "/api/v1/batches",
        {"jobs": [_OK], "on_complete": {"job": KEEP, "args": [[_N]]}},
        "on_complete.args[0]",
    ),
    Place(
        "recurring PUT, positional",
        "PUT",
        "/api/v1/recurring/r1",
        {"job": KEEP, "args": [_N], "cron": "@daily"},
        "args[0]",
    ),
    Place(
        "recurring PUT, keyword",
        "PUT",
        "/api/v1/recurring/r1",
        {"job": KEEP, "kwargs": {"data": {"k": _N}}, "cron": "@daily"},
        "kwargs.data",
        hidden=('"k"',),
    ),
]


@pytest.mark.parametrize("place", PLACES, ids=[place.name for place in PLACES])
async def test_a_number_json_cannot_hold_is_refused_naming_its_path_not_its_value(
    bounded_api: Api, place: Place
) -> None:
    """NaN, Infinity, numbers past a float (and integers past Python's digit limit): 400
    ``malformed_json`` naming where the number is, never quoting it (it may be a secret)."""
    template = json.dumps(place.body)
    for number in [*NOT_FINITE, TOO_LONG]:
        raw = template.replace(json.dumps(_N), number).encode()
        response = await bounded_api.http.request(
            place.method, place.path, content=raw, headers={"content-type": "application/json"}
        )
        assert response.status_code == 400, (number[:20], response.text)
        error = response.json()["error"]
        assert error["code"] == "malformed_json", error
        message = error["message"]
        assert f" {place.named}: " in message, (number[:20], message)
        assert number.lstrip("-")[:4] not in message, (number[:20], message)
        for word in place.hidden:
            assert word not in message, message
    for table in ("jobs", "recurring_jobs", "batches"):
        assert await bounded_api.count(table) == 0, table
