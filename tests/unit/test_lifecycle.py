"""A job's life as rules (orchestrator.lifecycle): the transition table, what "ended" and
"requeueable" mean, what a continuation does when its parent ends, and elections. Pure: no store."""

from __future__ import annotations

import itertools
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from orchestrator import lifecycle, outcomes
from orchestrator.errors import IllegalTransitionError
from orchestrator.lifecycle import Change, Choice, Election, State, StoredJob

S = State
EXPECTED_ALLOWED = {
    (S.ENQUEUED, S.PROCESSING),
    (S.ENQUEUED, S.DELETED),
    (S.ENQUEUED, S.FAILED),
    (S.SCHEDULED, S.ENQUEUED),
    (S.SCHEDULED, S.PROCESSING),
    (S.SCHEDULED, S.DELETED),
    (S.AWAITING, S.ENQUEUED),
    (S.AWAITING, S.DELETED),
    (S.PROCESSING, S.SUCCEEDED),
    (S.PROCESSING, S.FAILED),
    (S.PROCESSING, S.SCHEDULED),
    (S.PROCESSING, S.ENQUEUED),
    (S.PROCESSING, S.DELETED),
    (S.FAILED, S.ENQUEUED),
    (S.FAILED, S.DELETED),
    (S.SUCCEEDED, S.ENQUEUED),
    (S.SUCCEEDED, S.DELETED),
    (S.DELETED, S.ENQUEUED),
}


def test_state_names_are_hangfires() -> None:
    assert [s.value for s in State] == [
        "Enqueued",
        "Scheduled",
        "Awaiting",
        "Processing",
        "Succeeded",
        "Failed",
        "Deleted",
    ]
    assert {S.SUCCEEDED, S.DELETED} == lifecycle.FINAL


@pytest.mark.parametrize(("source", "target"), list(itertools.product(State, State)))
def test_transition_table(source: State, target: State) -> None:
    allowed = (source, target) in EXPECTED_ALLOWED
    assert lifecycle.is_allowed(source, target) is allowed
    if not allowed:
        with pytest.raises(IllegalTransitionError):
            lifecycle.check_allowed([source], target)


def test_requeue_sources() -> None:
    assert {S.FAILED, S.SUCCEEDED, S.DELETED, S.SCHEDULED, S.AWAITING} == lifecycle.REQUEUEABLE
    assert all(lifecycle.is_allowed(s, S.ENQUEUED) for s in lifecycle.REQUEUEABLE)


def test_ended_is_succeeded_failed_or_deleted_and_everything_else_is_not() -> None:
    assert {S.SUCCEEDED, S.FAILED, S.DELETED} == lifecycle.ENDED
    assert set(State) - lifecycle.ENDED == lifecycle.UNENDED
    assert lifecycle.FINAL <= lifecycle.ENDED
    assert [s for s in State if lifecycle.has_ended(s)] == [S.SUCCEEDED, S.FAILED, S.DELETED]
    # The store holds names: a name is read as its state, and an unknown name is refused.
    assert lifecycle.has_ended("Failed") and not lifecycle.has_ended("Processing")
    with pytest.raises(ValueError, match="Done"):
        lifecycle.has_ended("Done")


def test_only_a_person_leaves_an_ended_state() -> None:
    """Nothing automatic leaves an ended job: the only moves out are a requeue (Enqueued) or,
    for a Failed or Succeeded job, a delete."""
    for state in lifecycle.ENDED:
        assert lifecycle.ALLOWED[state] <= {S.ENQUEUED, S.DELETED}
        assert state in lifecycle.REQUEUEABLE


def test_every_state_but_deleted_may_be_deleted() -> None:
    assert set(State) - {S.DELETED} == lifecycle.DELETABLE
    assert all(lifecycle.is_allowed(s, S.DELETED) for s in lifecycle.DELETABLE)
    assert not lifecycle.is_allowed(S.DELETED, S.DELETED)


def test_a_message_starts_only_a_job_that_waits_for_one() -> None:
    assert {S.ENQUEUED, S.SCHEDULED} == lifecycle.AWAITING_MESSAGE
    assert all(lifecycle.is_allowed(s, S.PROCESSING) for s in lifecycle.AWAITING_MESSAGE)
    assert [s for s in State if lifecycle.is_allowed(s, S.PROCESSING)] == [
        S.ENQUEUED,
        S.SCHEDULED,
    ]


def test_check_allowed_names_the_refused_move() -> None:
    lifecycle.check_allowed([S.ENQUEUED, S.SCHEDULED], S.DELETED)
    with pytest.raises(IllegalTransitionError) as refused:
        lifecycle.check_allowed([S.ENQUEUED, S.AWAITING], S.PROCESSING)
    assert "Awaiting" in str(refused.value) and "Processing" in str(refused.value)


#: What an Awaiting child does when its parent ends: the table of continuation_released's
#: docstring, one row per (parent's state, continue_on).
CONTINUATIONS = {
    (S.SUCCEEDED, "succeeded"): "enqueued",
    (S.SUCCEEDED, "finished"): "enqueued",
    (S.FAILED, "succeeded"): "waits",
    (S.FAILED, "finished"): "enqueued",
    (S.DELETED, "succeeded"): "deleted",
    (S.DELETED, "finished"): "enqueued",
}


@pytest.mark.parametrize(("parent", "continue_on"), sorted(CONTINUATIONS))
def test_a_continuation_follows_its_parents_ending(parent: State, continue_on: str) -> None:
    released = lifecycle.continuation_released(parent, continue_on)
    deleted = lifecycle.continuation_deleted(parent, continue_on)
    assert not (released and deleted)
    child = "enqueued" if released else "deleted" if deleted else "waits"
    assert child == CONTINUATIONS[parent, continue_on]


@pytest.mark.parametrize("parent", sorted(lifecycle.UNENDED))
def test_a_continuation_waits_while_its_parent_has_not_ended(parent: State) -> None:
    for continue_on in ("succeeded", "finished", None):
        assert not lifecycle.continuation_released(parent, continue_on)
        assert not lifecycle.continuation_deleted(parent, continue_on)


def test_a_continuation_without_continue_on_waits_for_success() -> None:
    assert lifecycle.continuation_released(S.SUCCEEDED, None)
    assert not lifecycle.continuation_released(S.FAILED, None)
    assert lifecycle.continuation_deleted(S.DELETED, None)


NOW = datetime(2024, 5, 15, 12, 0, tzinfo=UTC)
JOB = StoredJob(uuid.uuid4(), "reports.build", "default", 1, 3, 0, {})


def test_scheduling_an_election_sets_its_due_time_and_reason() -> None:
    election = Election(JOB, S.FAILED, "ValueError: boom", NOW)
    election.schedule(30, "Retry attempt 1 of 3: boom")
    assert election.state is S.SCHEDULED
    assert election.reason == "Retry attempt 1 of 3: boom"
    assert election.delay_seconds == 30
    assert election.values == {"due_at": NOW + timedelta(seconds=30), "scheduled_reason": "retry"}
    election.schedule(1e308, "later", why="delay")
    assert election.delay_seconds == outcomes.MAX_DELAY_SECONDS
    assert election.values["scheduled_reason"] == "delay"


def test_a_choice_is_an_allowed_move_with_the_elections_change() -> None:
    election = Election(JOB, S.SUCCEEDED, "Completed", NOW, values={"result": 3}, data={"d": 1})
    choice = Choice.of(election, JOB.job_id, S.PROCESSING)
    assert choice == Choice(
        JOB.job_id, S.PROCESSING, S.SUCCEEDED, Change("Completed", {"result": 3}, {"d": 1})
    )
    with pytest.raises(IllegalTransitionError):
        Choice.of(election, JOB.job_id, S.ENQUEUED)
