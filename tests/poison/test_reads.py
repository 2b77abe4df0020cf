"""Stored bad values (written directly, as an older version could have) never make a read
answer 500: the one-job read, the job list and the dashboard's pages show them through
``orchestrator.outcomes.showable``; lists carry no results; the one-job read bounds them;
DELETE and requeue of a job with a stored expiry of 1e308 answer normally. A 500 keeps its
connection open."""

from __future__ import annotations

import asyncio
import json
import socket
import uuid
from contextlib import closing

import sqlalchemy as sa
import uvicorn
from fastapi import FastAPI

from orchestrator import outcomes
from orchestrator_api.app import create_app
from tests.api.conftest import ADD, DOWN_AMQP_URL, Api

DEEP = 980  # the audit's deepest: accepted, then "Maximum serialization depth exceeded"


async def _poke(api: Api, job_id: str, column: str, text: str) -> None:
    """Store ``text`` as the raw JSON of ``column``, past every check of the code."""
    value = "CAST(:v AS jsonb)" if api.runtime.engine.dialect.name == "postgresql" else ":v"
    statement = sa.text(f"UPDATE jobs SET {column} = {value} WHERE id = :id")
    stored_id: object = uuid.UUID(job_id)
    if api.runtime.engine.dialect.name == "sqlite":
        stored_id = uuid.UUID(job_id).hex
    async with api.runtime.engine.begin() as conn:
        await conn.execute(statement, {"v": text, "id": stored_id})


async def _reads_answer(api: Api, job_id: str) -> dict[str, object]:
    one = await api.http.get(f"/api/v1/jobs/{job_id}")
    assert one.status_code == 200, one.text
    listed = await api.http.get("/api/v1/jobs")
    assert listed.status_code == 200, listed.text
    items = listed.json()["items"]
    assert job_id in [item["id"] for item in items]
    assert all("result" not in item for item in items)
    for page in (f"/hangfire/jobs/{job_id}", "/hangfire/jobs", "/hangfire/jobs?state=Succeeded"):
        answer = await api.http.get(page)
        assert answer.status_code == 200, (page, answer.text[:500])
    body = one.json()
    assert isinstance(body, dict)
    return body


def _nested(levels: int) -> str:
    return "[" * levels + "]" * levels


async def test_deeply_nested_stored_arguments_and_results_are_shown_cut(api: Api) -> None:
    job_id = await api.enqueue()
    await _poke(api, job_id, "args", _nested(DEEP))
    await _poke(api, job_id, "result", json.dumps({"deep": json.loads(_nested(300))}))
    await api.http.get("/api/v1/jobs")  # warm: the first page and catalog
    body = await _reads_answer(api, job_id)
    placeholder = f"[nested deeper than {outcomes.MAX_DEPTH} levels, not shown]"
    assert placeholder in json.dumps(body["result"])
    # 980 levels: cut like that, or, where the reading stack is too deep for Python's JSON
    # parser, read as a placeholder for the whole value.
    shown = json.dumps(body["args"])
    assert placeholder in shown or "[unreadable stored value: nested too deeply" in shown


async def test_a_large_stored_result_is_never_listed_and_bounded_in_the_read(api: Api) -> None:
    job_id = await api.enqueue()
    others = [await api.enqueue() for _ in range(3)]
    await _poke(api, job_id, "result", json.dumps("x" * (3 * 1024 * 1024)))
    listed = await api.http.get("/api/v1/jobs")
    assert len(listed.content) < 64 * 1024  # 4 jobs; was the whole result each
    body = await _reads_answer(api, job_id)
    assert str(body["result"]).startswith("[a result of 3145730 bytes, not shown")
    assert len((await api.http.get(f"/api/v1/jobs/{others[0]}")).content) < 8 * 1024


async def test_a_small_result_is_shown_by_the_one_job_read(api: Api) -> None:
    job_id = await api.enqueue()
    await _poke(api, job_id, "result", json.dumps({"n": [1, 2, 3]}))
    body = await _reads_answer(api, job_id)
    assert body["result"] == {"n": [1, 2, 3]}


async def test_values_only_sqlite_can_hold_are_shown_replaced(start_api, sqlite_url) -> None:
    """Lone surrogates (as JSON escapes) and NaN in a JSON column: PostgreSQL refuses them;
    SQLite stored them for older versions."""
    async with start_api(sqlite_url, amqp_url=DOWN_AMQP_URL) as api:
        await _sqlite_values(api)


async def _sqlite_values(api: Api) -> None:
    job_id = await api.enqueue()
    await _poke(api, job_id, "args", '["a\\ud800b", NaN, Infinity]')
    await _poke(api, job_id, "result", '{"k\\udc80": "v\\ud800", "n": NaN}')
    body = await _reads_answer(api, job_id)
    assert body["args"] == ["a\ufffdb", "NaN", "Infinity"]
    assert body["result"] == {"k\ufffd": "v\ufffd", "n": "NaN"}


async def test_delete_and_requeue_of_a_job_with_a_stored_expiry_of_1e308(api: Api) -> None:
    ids = [await api.enqueue() for _ in range(3)]
    async with api.runtime.engine.begin() as conn:
        for job_id, value in zip(ids, [1e308, float("inf"), float("-inf")], strict=True):
            stored = uuid.UUID(job_id).hex if conn.dialect.name == "sqlite" else uuid.UUID(job_id)
            await conn.execute(
                sa.text("UPDATE jobs SET expire_after_seconds = :v WHERE id = :id"),
                {"v": value, "id": stored},
            )
    for job_id in ids:
        deleted = await api.http.delete(f"/api/v1/jobs/{job_id}")
        assert deleted.status_code == 200, deleted.text
        assert deleted.json()["state"] == "Deleted"
        job = (await api.http.get(f"/api/v1/jobs/{job_id}")).json()
        assert job["expires_at"] is not None
        requeued = await api.http.post(f"/api/v1/jobs/{job_id}/requeue")
        assert requeued.status_code == 200, requeued.text
    far = (await api.http.get(f"/api/v1/jobs/{ids[0]}")).json()
    assert far["state"] == "Enqueued"


def _free_port() -> int:
    with closing(socket.socket()) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def _exchange(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, path: str) -> str:
    writer.write(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
    await writer.drain()
    head = (await reader.readuntil(b"\r\n\r\n")).decode()
    length = next(
        int(line.split(":", 1)[1])
        for line in head.split("\r\n")
        if line.lower().startswith("content-length:")
    )
    return head + (await reader.readexactly(length)).decode()


async def test_a_500_answers_json_and_keeps_the_connection(make_settings, sqlite_url) -> None:
    settings = make_settings(sqlite_url, amqp_url=DOWN_AMQP_URL, jobs=["tests.jobs_for_tests"])
    app: FastAPI = create_app(settings)

    async def boom() -> None:
        raise RuntimeError("a bug")

    app.add_api_route("/api/v1/boom", boom)
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    serving = asyncio.create_task(server.serve())
    try:
        while not server.started:
            await asyncio.sleep(0.02)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        first = await _exchange(reader, writer, "/api/v1/boom")
        assert first.startswith("HTTP/1.1 500")
        assert '"code":"internal_error"' in first.replace(" ", "")
        assert "connection: close" not in first.lower()
        second = await _exchange(reader, writer, "/api/v1/jobs")  # the same connection
        assert second.startswith("HTTP/1.1 200")
        writer.close()
    finally:
        server.should_exit = True
        await serving


__all__ = ["ADD"]


async def test_stored_recurring_arguments_are_shown_cut(api: Api) -> None:
    answer = await api.http.put(
        "/api/v1/recurring/poisoned", json={"job": ADD, "args": [1, 2], "cron": "0 0 1 1 *"}
    )
    assert answer.status_code == 201, answer.text
    value = "CAST(:v AS jsonb)" if api.runtime.engine.dialect.name == "postgresql" else ":v"
    async with api.runtime.engine.begin() as conn:
        await conn.execute(
            sa.text(f"UPDATE recurring_jobs SET args = {value} WHERE id = 'poisoned'"),
            {"v": _nested(300)},
        )
    for path in ("/api/v1/recurring", "/api/v1/recurring/poisoned", "/hangfire/recurring"):
        answer = await api.http.get(path)
        assert answer.status_code == 200, (path, answer.text[:300])
    shown = json.dumps((await api.http.get("/api/v1/recurring/poisoned")).json()["args"])
    assert f"[nested deeper than {outcomes.MAX_DEPTH} levels, not shown]" in shown
