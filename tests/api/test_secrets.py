"""Issue 11, "What was seen" 3 and 4: nothing the system answers or stores tells a secret.

Secret parameters (``@job(secret=[...])``, ``writeOnly`` in the registered schema) are never
matched by the dashboard's argument search, never quoted by a validation message (at enqueue, at
a recurring trigger, in a recurring job's stored error), and an idempotency replay answers the same
whatever secret value it carries, so 201 vs 409 cannot confirm a guess.
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import sqlalchemy as sa

from orchestrator.catalog import Registration
from orchestrator.db import db_now, is_postgres
from orchestrator.store import registrations
from orchestrator.store.tables import recurring as recurring_table
from orchestrator_scheduler.recurring import fire_due
from tests.api.bounds_jobs import unlock
from tests.api.conftest import ECHO, Api

SIGN_IN = "tests.api.bounds_jobs.sign_in"
UNLOCK = "tests.api.bounds_jobs.unlock"
PASSWORD = "hunter2-Zebra"
PIN = 4242


async def _listed(api: Api, **query: str) -> str:
    page = await api.http.get("/hangfire/jobs", params=query)
    assert page.status_code == 200, page.text
    return page.text


async def test_argument_search_never_matches_a_secret(bounded_api: Api) -> None:
    api = bounded_api
    by_name = await api.enqueue(SIGN_IN, kwargs={"user": "ada", "password": PASSWORD})
    by_position = await api.enqueue(SIGN_IN, args=["bob", PASSWORD])
    pin = await api.enqueue(UNLOCK, kwargs={"door": "front", "pin": PIN})
    plain = await api.enqueue(ECHO, kwargs={"text": PASSWORD})  # not secret here: found
    await _search_hides_secrets(api, by_name, by_position, pin, plain)


async def _search_hides_secrets(
    api: Api, by_name: str, by_position: str, pin: str, plain: str
) -> None:
    for probe in (PASSWORD, PASSWORD[:4], PASSWORD.lower(), "password", str(PIN), "42"):
        text = await _listed(api, q=probe)
        for secret_job in (by_name, by_position, pin):
            assert secret_job not in text, probe
    assert plain in await _listed(api, q=PASSWORD[:4])
    # The other arguments of the same jobs are still found.
    assert by_name in await _listed(api, q="ada")
    assert by_position in await _listed(api, q="bob")
    assert pin in await _listed(api, q="front")
    assert by_name in await _listed(api, q="ada", name=SIGN_IN)


async def test_argument_search_hides_secrets_with_the_trigram_index(bounded_api: Api) -> None:
    """The opt-in index of docs/dashboard.md (PostgreSQL) changes the plan, not the answer."""
    api = bounded_api
    async with api.runtime.engine.begin() as conn:
        if not is_postgres(conn):
            return
        await conn.execute(sa.text("CREATE EXTENSION IF NOT EXISTS pg_trgm"))
        await conn.execute(
            sa.text(
                "CREATE INDEX ix_jobs_arguments_trgm ON jobs USING gin "
                "((CAST(args AS TEXT) || ' ' || CAST(kwargs AS TEXT)) gin_trgm_ops)"
            )
        )
    by_name = await api.enqueue(SIGN_IN, kwargs={"user": "ada", "password": PASSWORD})
    by_position = await api.enqueue(SIGN_IN, args=["bob", PASSWORD])
    pin = await api.enqueue(UNLOCK, kwargs={"door": "front", "pin": PIN})
    plain = await api.enqueue(ECHO, kwargs={"text": PASSWORD})
    await _search_hides_secrets(api, by_name, by_position, pin, plain)


async def test_validation_messages_never_quote_a_value(bounded_api: Api) -> None:
    api = bounded_api
    cases: list[tuple[dict[str, Any], str]] = [
        ({"job": SIGN_IN, "kwargs": {"user": "u", "password": 918273}}, "'password'"),
        ({"job": SIGN_IN, "args": ["u", ["sekrit-in-a-list"]]}, "'password'"),
        ({"job": UNLOCK, "kwargs": {"door": "d", "pin": "pin-as-text-123"}}, "'pin'"),
        ({"job": ECHO, "kwargs": {"text": "t", "when": "not-a-time-xyz"}}, "'when'"),
    ]
    for body, field in cases:
        response = await api.http.post("/api/v1/jobs", json=body)
        assert response.status_code == 422, response.text
        message = response.json()["error"]["message"]
        assert field in message
        for value in [*body.get("args", []), *body.get("kwargs", {}).values()]:
            if value not in ("u", "d", "t"):
                assert str(value) not in message, message
                assert "sekrit" not in message


async def _change_pin_to_text(api: Api) -> None:
    """A new worker registers ``unlock`` with ``pin`` now a string (still secret)."""
    registration = Registration.of(unlock)
    schema = dict(registration.json_schema)
    properties = dict(schema["properties"])
    properties["pin"] = {**properties["pin"], "type": "string"}
    schema["properties"] = properties
    changed = Registration(
        registration.name, registration.queue, registration.parameters, schema, "changed", {}
    )
    async with api.runtime.engine.begin() as conn:
        await registrations.save(conn, [changed], await db_now(conn) + timedelta(seconds=1))
    await api.runtime.catalog.refresh()


async def test_a_secret_whose_type_changed_is_not_quoted_by_a_recurring_job(
    bounded_api: Api,
) -> None:
    api = bounded_api
    saved = await api.http.put(
        "/api/v1/recurring/door",
        json={"job": UNLOCK, "kwargs": {"door": "front", "pin": PIN}, "cron": "* * * * *"},
    )
    assert saved.status_code == 201, saved.text
    await _change_pin_to_text(api)

    trigger = await api.http.post("/api/v1/recurring/door/trigger")
    assert trigger.status_code == 422, trigger.text
    assert "'pin'" in trigger.json()["error"]["message"]
    assert str(PIN) not in trigger.text

    async with api.runtime.engine.begin() as conn:
        now = await db_now(conn)
        await conn.execute(
            sa.update(recurring_table).values(next_run_at=now - timedelta(minutes=1))
        )
        await fire_due(conn, now)
    definition = (await api.http.get("/api/v1/recurring/door")).json()
    assert definition["error"] is not None
    assert "'pin'" in definition["error"]
    assert str(PIN) not in str(definition)
    async with api.runtime.engine.connect() as conn:
        stored = (await conn.execute(sa.select(recurring_table.c.error))).scalar_one()
    assert str(PIN) not in stored


async def test_an_idempotent_replay_answers_the_same_whatever_the_secret(bounded_api: Api) -> None:
    """The rule: a replay matches on the key and the request with secret arguments redacted.

    The same key with the same non-secret request answers the first job (201, replayed), with
    the right secret or a wrong guess alike; a different non-secret request answers 409 naming
    only the first job's id (which any key may read). Neither answer depends on a secret value.
    """
    api = bounded_api
    key = f"login-{uuid.uuid4()}"

    async def post(user: str, password: str) -> Any:
        body = {"job": SIGN_IN, "kwargs": {"user": user, "password": password}}
        return await api.http.post("/api/v1/jobs", json={**body, "idempotency_key": key})

    # Names no job id can contain ("l", "i", "o" are not hex digits): the 409 names the first
    # job's id, and "ada" once turned up inside one (25adad19-…).
    first = await post("alice", PASSWORD)
    assert first.status_code == 201
    answers = []
    for guess in (PASSWORD, "wrong-guess", PASSWORD[:-1]):
        replay = await post("alice", guess)
        replayed = replay.headers.get("idempotent-replayed")
        answers.append((replay.status_code, replay.json(), replayed))
    assert answers == [(201, first.json(), "true")] * 3
    other = await post("bob", PASSWORD)
    assert other.status_code == 409
    assert PASSWORD not in other.text and "bob" not in other.text and "alice" not in other.text
    assert await api.count() == 1


async def test_search_skips_a_stored_row_that_is_not_json(bounded_api: Api) -> None:
    """SQLite kept NaN as text that is not JSON before the edge refused it; searching a secret
    job's arguments must not fail on such a row (PostgreSQL's jsonb never held one)."""
    api = bounded_api
    job_id = await api.enqueue(SIGN_IN, kwargs={"user": "ada", "password": PASSWORD})
    async with api.runtime.engine.begin() as conn:
        if is_postgres(conn):
            return
        await conn.execute(sa.text("""UPDATE jobs SET kwargs = '{"user": "ada", "n": NaN}'"""))
    assert job_id not in await _listed(api, q="ada")
