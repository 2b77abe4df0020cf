"""Filters on every state change: the applied hook, and elections outside the worker (a person's
delete or requeue through the API, the scheduler's promotions), written as a user would."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

import pytest
from prometheus_client import REGISTRY
from sqlalchemy.ext.asyncio import AsyncEngine

from orchestrator import composition, store
from orchestrator.db import db_now
from orchestrator.filters import Filters
from orchestrator.lifecycle import Change, State
from orchestrator.transitions import Moved
from orchestrator_scheduler.leases import expire_leases
from orchestrator_scheduler.promotion import promote_due
from tests.api.conftest import DOWN_AMQP_URL, ECHO
from tests.retries import user_filters
from tests.retries.conftest import enqueue, new_job, wait_for

HOUR = timedelta(hours=1)


def _job(name: str = "x", **fields: object) -> store.NewJob:
    return store.NewJob(name=name, queue="default", args=[], kwargs={}, **fields)  # type: ignore[arg-type]


def _state_changes(state: str) -> float:
    value = REGISTRY.get_sample_value("orchestrator_state_changes_total", {"state": state})
    return value or 0.0


async def test_applied_hooks_see_each_change_and_count_only_what_commits(
    engine: AsyncEngine,
) -> None:
    journal = user_filters.Journal()
    filters = Filters([journal])
    parent = _job()
    child = _job(state=State.AWAITING, parent_id=parent.id, continue_on="succeeded")
    async with engine.begin() as conn:
        await store.create_jobs(conn, [parent, child], await db_now(conn))

    async def move(source: State, target: State, fail: bool = False) -> Moved[object]:
        async with engine.begin() as conn:
            moved = await composition.transitions(HOUR, filters).move(
                conn,
                [parent.id],
                expected={source},
                target=target,
                change=Change(f"to {target}"),
                now=await db_now(conn),
            )
            if fail:
                raise RuntimeError("the transaction fails after the move")
            return moved

    await move(State.ENQUEUED, State.PROCESSING)
    assert journal.committed == [(parent.id, "Processing")]
    succeeded = _state_changes("Succeeded")
    with pytest.raises(RuntimeError):
        await move(State.PROCESSING, State.SUCCEEDED, fail=True)
    # Shown inside the transaction (the continuation too), never committed, never counted.
    # (The continuation's release is shown first: the built-in ending hook runs first.)
    assert journal.shown[-2:] == [(child.id, "Enqueued"), (parent.id, "Succeeded")]
    assert journal.committed == [(parent.id, "Processing")]
    assert _state_changes("Succeeded") == succeeded

    moved = await move(State.PROCESSING, State.SUCCEEDED)
    assert journal.life_of(parent.id) == ["Processing", "Succeeded"]
    assert journal.life_of(child.id) == ["Enqueued"]  # released by the built-in ending hook
    assert [p.message.job_id for p in moved.pending] == [child.id]
    assert _state_changes("Succeeded") == succeeded + 1


async def test_a_journal_filter_follows_a_job_and_its_continuation_through_a_worker(
    start_worker, postgres_url
):
    journal = user_filters.Journal()
    settings = await start_worker(postgres_url, filters=[journal])
    parent = new_job("retry.ok", 3)
    child = new_job("retry.ok", 4, state=State.AWAITING, parent_id=parent.id)
    child.continue_on = "succeeded"
    await enqueue(settings, [parent, child])
    await wait_for(settings, child.id, {"Succeeded"})
    for _ in range(200):  # the callbacks run just after the worker's commit returns
        if len(journal.life_of(child.id)) == 3:
            break
        await asyncio.sleep(0.01)
    assert journal.life_of(parent.id) == ["Processing", "Succeeded"]
    assert journal.life_of(child.id) == ["Enqueued", "Processing", "Succeeded"]


async def test_an_election_filter_turns_an_api_delete_of_a_scheduled_job_into_running_it(
    start_api, database_url
):
    spec = "tests.retries.user_filters:run_now_instead_of_delete"
    async with start_api(database_url, filters=[spec], amqp_url=DOWN_AMQP_URL) as api:
        scheduled = await api.enqueue(ECHO, args=["later"], delay_seconds=3600)
        queued = await api.enqueue(ECHO, args=["now"])
        assert await api.outbox_for(scheduled) == []

        answer = await api.http.delete(f"/api/v1/jobs/{scheduled}")
        assert answer.status_code == 200
        assert answer.json()["state"] == "Enqueued"
        assert (await api.http.delete(f"/api/v1/jobs/{queued}")).json()["state"] == "Deleted"

        async with api.runtime.engine.connect() as conn:
            row = await store.get_job(conn, uuid.UUID(scheduled))
            history = await store.get_history(conn, uuid.UUID(scheduled))
        assert (row.state, row.due_at) == ("Enqueued", None)
        assert history[-1].reason == "Run now instead of deleted"
        assert len(await api.outbox_for(scheduled)) == 1  # its message, sent by the election
        seen = user_filters.BUILT[-1]
        assert isinstance(seen, user_filters.RunNowInsteadOfDelete)
        assert seen.seen == [
            (uuid.UUID(scheduled), "Scheduled", "Deleted"),
            (uuid.UUID(queued), "Enqueued", "Deleted"),
        ]


async def test_an_election_filter_replaces_a_requeue_and_may_not_break_the_rules(
    start_api, database_url
):
    specs = [
        "tests.retries.user_filters:quarantine_echo",
        "tests.retries.user_filters:back_to_awaiting",
    ]
    async with start_api(database_url, filters=specs, amqp_url=DOWN_AMQP_URL) as api:
        scheduled = await api.enqueue(ECHO, args=["later"], delay_seconds=3600)
        answer = await api.http.post(f"/api/v1/jobs/{scheduled}/requeue")
        assert answer.json()["state"] == "Deleted"
        assert await api.outbox_for(scheduled) == []  # no message for a job that will not run

        queued = await api.enqueue(ECHO, args=["now"])
        refused = await api.http.delete(f"/api/v1/jobs/{queued}")
        assert refused.status_code == 409  # Enqueued -> Awaiting is no allowed transition
        async with api.runtime.engine.connect() as conn:
            assert (await store.get_job(conn, uuid.UUID(queued))).state == "Enqueued"
            history = await store.get_history(conn, uuid.UUID(scheduled))
        assert history[-1].reason == f"Quarantined: {ECHO} may not run"


async def test_promotions_are_elected(engine: AsyncEngine) -> None:
    watcher = user_filters.RunNowInsteadOfDelete()
    filters = Filters([watcher, user_filters.Quarantine("q")])
    async with engine.begin() as conn:
        now = await db_now(conn)
        due = now - timedelta(seconds=1)
        jobs = [
            _job(name, state=State.SCHEDULED, due_at=due, scheduled_reason="delay")
            for name in ("q", "ok")
        ]
        await store.create_jobs(conn, jobs, now - HOUR)
        transitions = composition.transitions(HOUR, filters)
        pending, _ = await promote_due(conn, transitions, now, limit=10)
        assert [(await store.get_job(conn, j.id)).state for j in jobs] == ["Deleted", "Enqueued"]
    assert [p.message.job_id for p in pending] == [jobs[1].id]
    assert sorted(watcher.seen) == sorted((j.id, "Scheduled", "Enqueued") for j in jobs)


async def test_lease_expiry_is_elected(engine: AsyncEngine) -> None:
    jobs = [_job("q"), _job("ok"), _job("q")]
    async with engine.begin() as conn:
        now = await db_now(conn)
        await store.create_jobs(conn, jobs, now - HOUR)
        for job, lease in zip(jobs, (-5, -5, 60), strict=True):  # the last lease still holds
            await composition.transitions(HOUR).move(
                conn,
                [job.id],
                expected={State.ENQUEUED},
                target=State.PROCESSING,
                change=Change(
                    "Started", {"lease_until": now + timedelta(seconds=lease), "worker_id": "w"}
                ),
                now=now,
            )
        quarantine = Filters([user_filters.Quarantine("q")])
        done = await expire_leases(
            conn, composition.transitions(HOUR, quarantine), now, lost_limit=3
        )
        assert [(await store.get_job(conn, j.id)).state for j in jobs] == [
            "Deleted",
            "Enqueued",
            "Processing",
        ]
    assert [p.message.job_id for p in done.pending] == [jobs[1].id]  # no message for "q"
