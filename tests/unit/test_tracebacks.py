"""User-first tracebacks (pure logic): the leading framework frames of each exception in a chain
are folded into one counted line; frames the job's code called stay; an exception with no frame
of the job's keeps the frame that raised it."""

from __future__ import annotations

import importlib
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from orchestrator import outcomes
from orchestrator.catalog import validate_with_model
from orchestrator.jobs import JobContext, job
from orchestrator_worker.tracebacks import is_framework, user_first

HERE = __file__


@job(name="tracebacks.raises")
def raises(message: str) -> None:
    raise ValueError(message)


def calls_a_framework_function() -> None:
    try:
        outcomes.storable_result(float("nan"), 100)
    except outcomes.ResultNotStorableError as exc:
        raise RuntimeError("could not store") from exc


def lets_a_framework_error_through() -> None:
    outcomes.storable_result(float("nan"), 100)


def raised_in_a_thread(function: Any, *args: Any) -> BaseException:
    """The exception as the worker catches it: its traceback starts in the thread pool."""
    with ThreadPoolExecutor(1) as pool:
        exc = pool.submit(function, *args).exception()
    assert exc is not None
    return exc


def frames(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.startswith('  File "')]


def test_leading_framework_frames_are_folded_and_counted() -> None:
    # As a sync job runs: the pool's worker item, then the catalog's invoke, then the job.
    context = JobContext(job_id=uuid.uuid4(), attempt=1)
    arguments = validate_with_model(raises, ["boom"], {})
    exc = raised_in_a_thread(raises.invoke, arguments, context)
    text = user_first(exc)
    lines = text.splitlines()
    assert lines[0] == "Traceback (most recent call last):"
    assert lines[1] == "  … 2 framework frames folded"
    assert lines[2].startswith(f'  File "{HERE}"') and lines[2].endswith("in raises")
    assert lines[-1] == "ValueError: boom"


def test_each_exception_of_a_chain_is_folded_on_its_own() -> None:
    text = user_first(raised_in_a_thread(calls_a_framework_function))
    cause, effect = text.split("The above exception was the direct cause")
    # The cause was caught in the job's frame: it starts there, nothing before it to fold.
    assert "folded" not in cause
    assert frames(cause)[0].endswith("in calls_a_framework_function")
    assert "in storable_result" in frames(cause)[-1]  # a framework frame it called stays
    assert "  … 1 framework frame folded\n" in effect
    assert frames(effect)[0].endswith("in calls_a_framework_function")


def test_framework_frames_the_job_called_are_kept() -> None:
    text = user_first(raised_in_a_thread(lets_a_framework_error_through))
    shown = frames(text)
    assert shown[0].endswith("in lets_a_framework_error_through")
    assert shown[-1].endswith("in storable_result")


def test_an_exception_with_no_frame_of_the_job_keeps_where_it_was_raised() -> None:
    exc = raised_in_a_thread(outcomes.storable_result, float("nan"), 100)
    text = user_first(exc)
    assert "  … 1 framework frame folded\n" in text
    [only] = frames(text)
    assert only.endswith("in storable_result")


def test_an_exception_without_a_traceback_is_its_last_line() -> None:
    assert user_first(ValueError("never raised")) == "ValueError: never raised\n"


@pytest.mark.parametrize(
    ("module", "framework"),
    [("asyncio", True), ("concurrent.futures", True), ("threading", True), ("json", False)],
)
def test_framework_places(module: str, framework: bool) -> None:
    assert is_framework(importlib.import_module(module).__file__ or "") is framework
    assert not is_framework(HERE)
