"""A seeded fuzzer (hypothesis, derandomized) of hostile job outcomes through a real worker on
each store: results mixing NaN and Infinity, lone surrogates and NUL (in values and keys),
integers around Python's digit limit, nesting past the limit and sizes around the result bound;
exception messages of the same text, some megabytes long. Every job ends; a result is stored
exactly when the rule says it can be, else the job alone fails ``ResultNotStorable``; the plain
jobs run with them are recorded once, and every job's API read answers 200."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from orchestrator import outcomes
from orchestrator.settings import Settings
from orchestrator_api.app import create_app
from orchestrator_worker.worker import Worker
from tests.api.conftest import LOOPBACK, TEST_JOBS
from tests.poison import jobs
from tests.poison.conftest import CATALOG, enqueue, new_job, read, wait_all

BASE = f"http://{LOOPBACK[0]}"


def _deep(levels: int) -> list[Any]:
    value: list[Any] = []
    for _ in range(levels):
        value = [value]
    return value


TEXT = st.text(
    st.one_of(st.characters(), st.sampled_from(["\x00", "\ud800", "\udc80", "\udfff"])),
    max_size=30,
)
SCALARS = st.one_of(
    # The values the store refuses, often enough for a few rounds to meet each of them.
    st.sampled_from([float("nan"), float("inf"), float("-inf"), "a\x00b", "\ud800", "\udfff"]),
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=10**4290, max_value=10**4310),  # around the digit limit
    st.floats(),  # NaN and both infinities included
    TEXT,
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=4),
    max_leaves=10,
)
RESULTS = st.one_of(
    VALUES,
    st.integers(min_value=55, max_value=200).map(_deep),  # around the depth limit
    st.integers(min_value=1, max_value=3).map(lambda n: "x" * (n * 500_000)),  # around 1 MiB
)
MESSAGES = st.one_of(TEXT, st.integers(min_value=1, max_value=3).map(lambda n: "m" * n * 10**6))


def _storable(value: Any, limit: int) -> bool:
    try:
        outcomes.storable_result(value, limit)
    except outcomes.ResultNotStorableError:
        return False
    return True


def _same(stored: Any, value: Any) -> bool:
    if isinstance(value, float) and isinstance(stored, int | float):
        # jsonb keeps numbers as decimals: 2.915018526025169e+16 comes back as an integer.
        return float(stored) == value
    if isinstance(value, list):
        return (
            isinstance(stored, list)
            and len(stored) == len(value)
            and all(_same(s, v) for s, v in zip(stored, value, strict=True))
        )
    if isinstance(value, dict):
        return (
            isinstance(stored, dict)
            and stored.keys() == value.keys()
            and all(_same(stored[k], value[k]) for k in value)
        )
    return bool(stored == value and type(stored) is type(value))


async def _round(settings: Settings, results: list[Any], messages: list[str]) -> None:
    stop = asyncio.Event()
    worker = Worker(settings, CATALOG, shutdown_grace=5)
    running = asyncio.create_task(worker.run(stop))
    try:
        await asyncio.wait_for(worker.ready.wait(), 30)
        app = create_app(settings.model_copy(update={"jobs": [TEST_JOBS, "tests.poison.jobs"]}))
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app, client=LOOPBACK)
            async with httpx.AsyncClient(transport=transport, base_url=BASE) as http:
                await _check(settings, http, results, messages)
    finally:
        stop.set()
        await asyncio.wait_for(running, 30)


async def _check(
    settings: Settings, http: httpx.AsyncClient, results: list[Any], messages: list[str]
) -> None:
    tokens = {uuid.uuid4().hex: value for value in [*results, *messages]}
    jobs.FUZZ.update(tokens)
    names = ["poison.fuzzed"] * len(results) + ["poison.fuzzed_raises"] * len(messages)
    hostile = [new_job(name, token) for name, token in zip(names, tokens, strict=True)]
    plain = [new_job("poison.ok", i) for i in range(4)]
    await enqueue(settings, [*plain[:2], *hostile, *plain[2:]])
    await wait_all(settings, [j.id for j in [*hostile, *plain]], {"Succeeded", "Failed"})
    for job in plain:
        _, history = await read(settings, job.id)
        assert [h.state for h in history] == ["Enqueued", "Processing", "Succeeded"]
    for job, value in zip(hostile, tokens.values(), strict=True):
        row, history = await read(settings, job.id)
        assert len(history) == 3 and row.attempt == 1
        if job.name == "poison.fuzzed_raises":
            assert row.state == "Failed"
            assert row.error_message == outcomes.clean_text(value, outcomes.ERROR_MESSAGE_MAX_CHARS)
        elif _storable(value, settings.max_result_bytes):
            assert row.state == "Succeeded" and _same(row.result, value), row.error_message
        else:
            assert (row.state, row.error_type) == ("Failed", "ResultNotStorable")
        answer = await http.get(f"/api/v1/jobs/{job.id}")
        assert answer.status_code == 200, answer.text[:300]
    assert (await http.get("/api/v1/jobs", params={"limit": 100})).status_code == 200
    for token in tokens:
        jobs.FUZZ.pop(token)


settings_for_fuzz = settings(
    max_examples=5,
    derandomize=True,  # seeded: the same rounds every run
    # No shrinking: a failing round is reported as generated (shrinking re-runs whole worker
    # rounds, and hypothesis' own reports cannot print integers past the digit limit).
    phases=[Phase.generate],
    database=None,
    deadline=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.function_scoped_fixture,  # one database for the rounds, on purpose
    ],
)


@settings_for_fuzz
@given(
    results=st.lists(RESULTS, min_size=10, max_size=10),
    messages=st.lists(MESSAGES, min_size=3, max_size=3),
)
def test_fuzzed_outcomes_fail_only_their_own_job(
    make_settings: Any, database_url: str, results: list[Any], messages: list[str]
) -> None:
    # Each round its own event loop, worker and API (hypothesis runs sync functions).
    settings = make_settings(database_url, worker_ops_port=0, worker_concurrency=32)
    asyncio.run(_round(settings, results, messages))
