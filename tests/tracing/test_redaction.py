"""Secret job arguments: marked in the registered schema, redacted wherever arguments are shown."""

from __future__ import annotations

import uuid

import pydantic
import pytest

from orchestrator import job, store
from orchestrator.catalog import Registration, validate_with_schema
from orchestrator.redaction import REDACTED, redact, redact_for, secret_parameters
from tests.api.conftest import TEST_JOBS, ApiFactory
from tests.tracing.jobs import PASSWORD, sign_in

SIGN_IN = "tests.tracing.jobs.sign_in"


def test_secret_parameters_are_write_only_in_the_stored_schema() -> None:
    registration = Registration.of(sign_in)
    assert registration.json_schema["properties"]["password"]["writeOnly"] is True
    assert "writeOnly" not in registration.json_schema["properties"]["user"]
    assert secret_parameters(registration.json_schema) == {"password"}
    # The marking is an annotation: the API still validates the value as before.
    validate_with_schema(registration, ["ann", PASSWORD], {})


def test_positional_and_keyword_secrets_are_redacted_in_a_copy() -> None:
    registration = Registration.of(sign_in)
    args = ["ann", PASSWORD]
    assert redact_for(registration, args, {}) == (["ann", REDACTED], {})
    assert redact_for(registration, [], {"user": "ann", "password": PASSWORD}) == (
        [],
        {"user": "ann", "password": REDACTED},
    )
    assert args == ["ann", PASSWORD]
    # A job no worker registered: nothing is known to be secret.
    assert redact_for(None, args, {}) == (args, {})


def test_a_secret_str_parameter_is_secret_too() -> None:
    @job(name="tests.vault")
    def vault(path: str, key: pydantic.SecretStr) -> None: ...

    assert redact(vault.parameter_names, vault.json_schema, ["/a", "k"], {}) == (
        ["/a", REDACTED],
        {},
    )


def test_secret_must_name_parameters() -> None:
    with pytest.raises(TypeError, match="secret names no parameter: pasword"):

        @job(secret=["pasword"])
        def typo(password: str) -> None: ...

    with pytest.raises(TypeError, match="list of parameter names"):
        job(secret="password")


async def test_the_api_never_reads_a_secret_back(start_api: ApiFactory, database_url: str) -> None:
    async with start_api(database_url, jobs=[TEST_JOBS, "tests.tracing.jobs"]) as api:
        job_id = await api.enqueue(SIGN_IN, args=["ann"], kwargs={"password": PASSWORD})
        shown = (await api.http.get(f"/api/v1/jobs/{job_id}")).json()
        assert shown["args"] == ["ann"] and shown["kwargs"] == {"password": REDACTED}
        listed = (await api.http.get("/api/v1/jobs", params={"job": SIGN_IN})).json()
        assert [item["args"] for item in listed["items"]] == [["ann"]]
        assert [item["kwargs"] for item in listed["items"]] == [{"password": REDACTED}]

        definition = {"job": SIGN_IN, "args": ["ann", PASSWORD], "cron": "@daily"}
        saved = await api.http.put("/api/v1/recurring/daily-sign-in", json=definition)
        assert saved.status_code == 201, saved.text
        assert saved.json()["args"] == ["ann", REDACTED]
        read = (await api.http.get("/api/v1/recurring/daily-sign-in")).json()
        assert read["args"] == ["ann", REDACTED]
        everything = (await api.http.get("/api/v1/recurring")).text
        assert PASSWORD not in everything
        # The dashboard's pages that show arguments.
        for page in (f"/hangfire/jobs/{job_id}", "/hangfire/jobs", "/hangfire/recurring"):
            html = await api.http.get(page)
            assert html.status_code == 200, (page, html.status_code)
            assert PASSWORD not in html.text and REDACTED in html.text, page
        # The stored job keeps the real value: the worker needs it.
        async with api.runtime.engine.connect() as conn:
            stored = await store.get_job(conn, uuid.UUID(job_id))
        assert stored.kwargs == {"password": PASSWORD}
