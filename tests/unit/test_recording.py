"""What a run's outcome proposes (orchestrator.recording.propose): the state and the columns
written with it, before the retry election. Pure; the worker's recorder writes it."""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from orchestrator import outcomes
from orchestrator.lifecycle import JobView, State, StoredJob
from orchestrator.recording import Bounds, propose

NOW = datetime(2024, 5, 15, 12, 0, tzinfo=UTC)
JOB = StoredJob(uuid.uuid4(), "reports.build", "default", 2, 3, 1, {})


@dataclass(frozen=True)
class Outcome:
    """A finished run as the worker reports it."""

    succeeded: bool
    result: Any = None
    error_type: str | None = None
    error_message: str | None = None
    error_traceback: str | None = None
    duration: float = 0.1234567
    exception: BaseException | None = None
    job: JobView = JOB


def test_a_success_proposes_succeeded_with_its_result_and_no_error() -> None:
    election = propose(Outcome(True, result={"rows": 3}), NOW)
    assert election.state is State.SUCCEEDED
    assert election.reason == "Completed"
    assert election.values == {
        "result": {"rows": 3},
        "finished_at": NOW,
        "error_type": None,
        "error_message": None,
        "error_traceback": None,
    }
    assert election.data == {"duration": 0.123457}
    assert election.exception is None
    assert election.job is JOB


def test_a_result_the_store_cannot_hold_fails_the_job_not_the_batch() -> None:
    for result, bounds in ((math.nan, None), ("x" * 100, Bounds(max_result_bytes=50))):
        election = propose(Outcome(True, result=result), NOW, bounds)
        assert election.state is State.FAILED
        assert election.values["error_type"] == outcomes.RESULT_NOT_STORABLE
        message = election.values["error_message"]
        assert message.startswith("the job's return value cannot be stored: ")
        assert election.values["error_traceback"] is None
        assert isinstance(election.exception, outcomes.ResultNotStorableError)
        assert election.reason == f"{outcomes.RESULT_NOT_STORABLE}: {message}"


def test_a_failure_proposes_failed_with_its_error_on_the_job_and_the_history_row() -> None:
    boom = ValueError("boom")
    outcome = Outcome(
        False,
        error_type="ValueError",
        error_message="boom",
        error_traceback="Traceback ...\nValueError: boom",
        exception=boom,
    )
    election = propose(outcome, NOW)
    assert election.state is State.FAILED
    assert election.reason == "ValueError: boom"
    assert election.values == {
        "error_type": "ValueError",
        "error_message": "boom",
        "error_traceback": "Traceback ...\nValueError: boom",
        "finished_at": NOW,
    }
    assert election.data == {
        "attempt": 2,
        "duration": 0.123457,
        "error": {
            "type": "ValueError",
            "message": "boom",
            "traceback": "Traceback ...\nValueError: boom",
        },
    }
    assert election.exception is boom


def test_an_errors_text_is_cleaned_and_bounded() -> None:
    outcome = Outcome(
        False,
        error_type="Bad\x00Type",
        error_message="m\ud800" + "m" * outcomes.ERROR_MESSAGE_MAX_CHARS,
        error_traceback="first lines " + "t" * 100 + " last line",
    )
    election = propose(outcome, NOW, Bounds(traceback_max_chars=20))
    values = election.values
    assert values["error_type"] == "Bad\ufffdType"
    assert values["error_message"].startswith("m\ufffdmmm")
    assert values["error_message"].endswith("…(truncated)")
    assert len(values["error_message"]) == outcomes.ERROR_MESSAGE_MAX_CHARS + len("…(truncated)")
    # A traceback keeps its end: the last lines say what was raised.
    assert values["error_traceback"] == "…(truncated)" + ("t" * 100 + " last line")[-20:]
    assert len(election.reason) == 1000
