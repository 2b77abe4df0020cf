"""Run jobs inline in a user's unit tests: no broker, no database, production's validation.

Like Celery's eager mode or Dramatiq's stub broker. :class:`InlineClient` has the enqueueing and
reading methods of :class:`orchestrator.Client`; each enqueued job runs at once, in the calling
thread (an async job on a fresh event loop, in a fresh thread when a loop is already running)::

    from orchestrator.testing import InlineClient, run_job
    from myapp.jobs import add, send_report

    def test_report() -> None:
        client = InlineClient([add, send_report])
        job_id = client.enqueue(add.call(1, 2))
        assert client.wait(job_id) == 3
        assert client.get(job_id)["history"][-1]["state"] == "Succeeded"
        assert run_job(add, 2, 2) == 4

What matches production: arguments are checked by the API's JSON Schema check (the same
:class:`~orchestrator.errors.JobValidationError` message the API answers with 422) and by the
worker's strict pydantic model; the job gets a ``JobContext``; the result is stored as JSON; a
failure records the exception's type, message and traceback; ``retries=N`` re-runs a failing job
up to N more times (at once, no back-off); continuations run when their parent ends (``on=
"succeeded"``: only if it succeeded; a parent ``Failed`` leaves them ``Awaiting``, a deleted parent
deletes them); an idempotency key returns the first job. What differs: scheduled jobs stay
``Scheduled`` until the test calls :meth:`InlineClient.run_scheduled` (so a test controls time),
and ``timeout_seconds`` is not enforced.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import traceback
import uuid
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Unpack

from pydantic_core import to_jsonable_python

from orchestrator import client as shape
from orchestrator.catalog import Catalog, Registration, validate_with_model, validate_with_schema
from orchestrator.errors import ConflictError, JobNotFoundError, JobValidationError, UnknownJobError
from orchestrator.jobs import JobCall, JobContext, JobFunction
from orchestrator.results import Batch, Job, JobChange, JobPage

Body = dict[str, Any]
Ids = list[str]  # spelled here: inside InlineClient, ``list`` is its method
ENDED = ("Succeeded", "Failed", "Deleted")  # inline, a Failed job has no retry left
REQUEUEABLE = ("Failed", "Succeeded", "Deleted", "Scheduled", "Awaiting")


@dataclass
class InlineJob:
    """One job as the inline client records it; :meth:`public` is the API's view of it."""

    id: str
    job: str
    args: list[Any]
    kwargs: dict[str, Any]
    queue: str
    retries: int
    state: str = "Enqueued"
    attempt: int = 0
    result: Any = None
    error: dict[str, str] | None = None
    history: list[dict[str, Any]] = field(default_factory=list)
    due_at: datetime | None = None
    parent_id: str | None = None
    continue_on: str = "succeeded"
    batch_id: str | None = None
    created_at: datetime = field(default_factory=lambda: datetime.now(UTC))

    def move(self, state: str, reason: str) -> None:
        self.state = state
        self.history.append({"state": state, "at": datetime.now(UTC).isoformat(), "reason": reason})

    def public(self) -> dict[str, Any]:
        return {
            "id": self.id, "job": self.job, "args": self.args, "kwargs": self.kwargs,
            "queue": self.queue, "state": self.state, "attempt": self.attempt,
            "retries": self.retries, "result": self.result, "error": self.error,
            "created_at": self.created_at.isoformat(), "parent_id": self.parent_id,
            "due_at": self.due_at.isoformat() if self.due_at else None,
            "history": [dict(h) for h in self.history],
        }


class InlineClient:
    """A stand-in for :class:`orchestrator.Client` that runs every job at once, in-process."""

    def __init__(self, jobs: Catalog | Iterable[JobFunction[Any, Any]]) -> None:
        self.catalog = jobs if isinstance(jobs, Catalog) else Catalog(jobs)
        self.jobs: dict[str, InlineJob] = {}
        self._keys: dict[str, tuple[str, str]] = {}  # idempotency key -> (job id, body hash)
        #: batch id -> (members, members ended at least once, continuation id)
        self._batches: dict[str, tuple[int, set[str], str | None]] = {}

    # -- enqueueing: the same signatures and option checks as Client --------------------------
    def enqueue(self, call: JobCall, /, **options: Unpack[shape.EnqueueOptions]) -> str:
        return self._create([shape.job_body(call, options)])[0]

    def schedule(
        self, call: JobCall, /, *, delay: shape.Seconds | None = None,
        run_at: datetime | None = None, **options: Unpack[shape.EnqueueOptions],
    ) -> str:
        return self._create([shape.schedule_body(call, delay, run_at, options)])[0]

    def continue_with(
        self, parent_id: shape.JobId, call: JobCall, /, *, on: shape.ContinueOn = "succeeded",
        **options: Unpack[shape.EnqueueOptions],
    ) -> str:
        return self._create([shape.continuation_body(parent_id, call, on, options)])[0]

    def enqueue_many(self, items: Iterable[shape.BulkItem], /) -> Ids:
        """All or nothing, like the API: every job is validated before any is created."""
        return self._create(shape.bulk_body(items)["jobs"], bulk=True)

    def batch(
        self, items: Iterable[shape.BulkItem], /, *, on_complete: shape.BulkItem | None = None
    ) -> Batch:
        """Like the API: ``on_complete`` runs once, when every member has ended the first time."""
        body = shape.batch_body(items, on_complete)
        batch_id, continuation = str(uuid.uuid4()), None
        if "on_complete" in body:
            # Validated now, started at completion.
            continuation = self._create([body["on_complete"]], hold=True)[0]
            self.jobs[continuation].move("Awaiting", f"Awaiting batch {batch_id}")
        self._batches[batch_id] = (len(body["jobs"]), set(), continuation)
        ids = self._create(body["jobs"], bulk=True, batch_id=batch_id)
        return Batch({"id": batch_id, "job_ids": ids, "continuation_id": continuation})

    # -- reading and acting ---------------------------------------------------------------------
    def get(self, job_id: shape.JobId) -> Job:
        return Job(self._job(job_id).public())

    def list(
        self, *, state: str | None = None, queue: str | None = None, job: str | None = None
    ) -> JobPage:
        """Every matching job, newest first, on one page."""
        items = [
            j.public() for j in reversed(self.jobs.values())
            if state in (None, j.state) and queue in (None, j.queue) and job in (None, j.job)
        ]
        return JobPage.of({"items": items, "next_cursor": None})

    def wait(self, job_id: shape.JobId, *, timeout: float = 0, poll_interval: float = 0) -> Any:
        """The result if it succeeded; raises ``JobFailedError`` if it ended otherwise, and
        ``TimeoutError`` at once if it waits (nothing moves it inline but this client's calls)."""
        job = self._job(job_id)
        done, result = shape.outcome(job.public())
        if not done:
            raise TimeoutError(f"job {job.id} is {job.state}: inline, it moves only when this "
                               "client runs it (run_scheduled(), its parent ending, requeue())")
        return result

    def delete(self, job_id: shape.JobId) -> JobChange:
        job = self._job(job_id)
        if job.state != "Deleted":
            job.move("Deleted", "Deleted through the API")
            self._parent_ended(job)
        return JobChange({"id": job.id, "state": job.state})

    def requeue(self, job_id: shape.JobId) -> JobChange:
        job = self._job(job_id)
        if job.state not in REQUEUEABLE:
            raise ConflictError(f"job {job.id} is {job.state}; only jobs not queued or running "
                                "can be requeued")
        job.due_at = None
        job.move("Enqueued", "Requeued through the API")
        self._run(job)
        return JobChange({"id": job.id, "state": "Enqueued"})

    def run_scheduled(self, until: datetime | None = None) -> Ids:
        """Run the scheduled jobs due by ``until`` (default: all of them); returns their ids."""
        due = [
            j for j in self.jobs.values()
            if j.state == "Scheduled" and (until is None or (j.due_at and j.due_at <= until))
        ]
        for job in due:
            job.due_at = None
            job.move("Enqueued", "Due")
            self._run(job)
        return [j.id for j in due]

    # -- internals ------------------------------------------------------------------------------
    def _job(self, job_id: shape.JobId) -> InlineJob:
        job = self.jobs.get(str(job_id))
        if job is None:
            raise JobNotFoundError(f"no job with id {job_id}")
        return job

    def _create(
        self, bodies: Sequence[Body], *, bulk: bool = False, hold: bool = False,
        batch_id: str | None = None,
    ) -> Ids:
        for index, body in enumerate(bodies):  # the API's checks first, then the worker's
            where = f"jobs[{index}]: " if bulk else ""
            try:
                function = self._function(body["job"])
                validate_with_schema(Registration.of(function), body["args"], body["kwargs"])
                validate_with_model(function, body["args"], body["kwargs"])
            except JobValidationError as exc:
                raise JobValidationError(f"{where}{exc}", field=exc.field) from None
            parent = body.get("continue_after")
            if parent is not None and parent not in self.jobs:
                raise JobValidationError(f"{where}continue_after: no job with id {parent}",
                                         field="continue_after")
            self._replayed(body)  # a conflicting idempotency key refuses the whole request
        created = [self._insert(body) for body in bodies]
        for job_id, _ in created:
            self.jobs[job_id].batch_id = batch_id
        for job_id, fresh in created:
            if fresh and not hold:
                self._start(self.jobs[job_id])
        return [job_id for job_id, _ in created]

    def _function(self, name: str) -> JobFunction[Any, Any]:
        function = self.catalog.get(name)
        if function is None:
            raise UnknownJobError(name)
        return function

    def _replayed(self, body: Body) -> str | None:
        """The first job of this idempotency key and body; 409 if the key has another body."""
        key = body.get("idempotency_key")
        if key is None or key not in self._keys:
            return None
        first, digest = self._keys[key]
        if digest != _digest(body):
            raise ConflictError(f"idempotency key {key!r} was used for job {first} with "
                                "another body")
        return first

    def _insert(self, body: Body) -> tuple[str, bool]:
        first = self._replayed(body)
        if first is not None:
            return first, False
        key = body.get("idempotency_key")
        function = self._function(body["job"])
        job = InlineJob(
            id=str(uuid.uuid4()), job=body["job"], args=body["args"], kwargs=body["kwargs"],
            queue=body.get("queue") or function.spec.queue,
            retries=body.get("retries", function.spec.retries),
            parent_id=body.get("continue_after"),
            continue_on=body.get("continue_on", "succeeded"),
        )
        if "delay_seconds" in body:
            job.due_at = job.created_at + timedelta(seconds=body["delay_seconds"])
        elif "run_at" in body:
            job.due_at = datetime.fromisoformat(body["run_at"])
        self.jobs[job.id] = job
        if key is not None:
            self._keys[key] = (job.id, _digest(body))
        return job.id, True

    def _start(self, job: InlineJob) -> None:
        if job.due_at is not None:
            job.move("Scheduled", "Delayed until " + job.due_at.isoformat())
        elif job.parent_id is not None:
            job.move("Awaiting", f"Continuation of {job.parent_id}")
            parent = self.jobs[job.parent_id]
            if parent.state in ENDED:
                self._release(job, parent)
        else:
            job.move("Enqueued", "Created")
            self._run(job)

    def _run(self, job: InlineJob) -> None:
        """Run until it succeeds or its retries are spent, then release its continuations."""
        function = self._function(job.job)
        retries_left = job.retries
        while True:
            job.attempt += 1
            job.move("Processing", f"Attempt {job.attempt}")
            try:
                arguments = validate_with_model(function, job.args, job.kwargs)
                context = JobContext(job_id=uuid.UUID(job.id), attempt=job.attempt)
                job.result = to_jsonable_python(_call(function, arguments, context))
                job.error = None
                job.move("Succeeded", "Completed")
                break
            except Exception as exc:
                job.error = _error(exc)
                if retries_left <= 0:
                    job.move("Failed", f"{job.error['type']}: {job.error['message']}")
                    break
                retries_left -= 1
                job.move("Scheduled", f"Retry {job.retries - retries_left} of {job.retries}")
        self._parent_ended(job)

    def _parent_ended(self, parent: InlineJob) -> None:
        if parent.batch_id is not None and parent.state in ENDED:
            total, ended, continuation = self._batches[parent.batch_id]
            if parent.id not in ended:
                ended.add(parent.id)
                job = self.jobs.get(continuation or "")
                if len(ended) == total and job is not None and job.state == "Awaiting":
                    job.move("Enqueued", f"Batch {parent.batch_id} completed")
                    self._run(job)
        for child in list(self.jobs.values()):
            if child.parent_id == parent.id and child.state == "Awaiting":
                self._release(child, parent)

    def _release(self, child: InlineJob, parent: InlineJob) -> None:
        if parent.state == "Deleted":
            child.move("Deleted", "Parent deleted")
        elif parent.state == "Succeeded" or child.continue_on == "finished":
            child.move("Enqueued", f"Parent {parent.state}")
            self._run(child)


def _call(function: JobFunction[Any, Any], arguments: Any, context: JobContext) -> Any:
    if not function.is_async:
        return function.invoke(arguments, context)
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(function.invoke(arguments, context))  # type: ignore[arg-type]
    with ThreadPoolExecutor(max_workers=1) as thread:  # a loop runs here: use a fresh one
        return thread.submit(asyncio.run, function.invoke(arguments, context)).result()  # type: ignore[arg-type]


def _digest(body: Body) -> str:
    canonical = {k: v for k, v in body.items() if k != "idempotency_key"}
    return hashlib.sha256(json.dumps(canonical, sort_keys=True).encode()).hexdigest()


def _error(exc: BaseException) -> dict[str, str]:
    kind = type(exc)
    return {
        "type": f"{kind.__module__}.{kind.__qualname__}",
        "message": str(exc),
        "traceback": "".join(traceback.format_exception(exc)),
    }


def run_job(function: JobFunction[Any, Any], /, *args: Any, **kwargs: Any) -> Any:
    """Run one job inline, as a worker would, and return its JSON result.

    The arguments are validated exactly as in production; a failing job raises its own
    exception (no retries); a ``JobContext`` parameter is injected, never passed.
    ``run_job(add, 1, 2) == 3``.
    """
    body = shape.job_body(JobCall.named(function.name, *args, **kwargs), {})
    validate_with_schema(Registration.of(function), body["args"], body["kwargs"])
    arguments = validate_with_model(function, body["args"], body["kwargs"])
    context = JobContext(job_id=uuid.uuid4(), attempt=1)
    return to_jsonable_python(_call(function, arguments, context))


__all__ = ["InlineClient", "InlineJob", "run_job"]
