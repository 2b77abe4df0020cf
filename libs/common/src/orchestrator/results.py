"""What the clients' methods return: one rule for all of them (issue 14).

- A method that creates jobs returns what names them: ``enqueue``, ``schedule``,
  ``continue_with`` and ``trigger`` the new job's id (``str``); ``enqueue_many`` the ids, in
  order (``list[str]``).
- Every other method returns the HTTP API's JSON answer, key for key, as a *typed answer*: a
  ``dict`` subclass named after what it holds (:class:`Job`, :class:`Batch`, :class:`Recurring`,
  …) whose attributes read its keys with their types: ``client.batch(calls).job_ids``,
  ``client.get(job_id).state``. Being a dict, it still indexes (``answer["state"]``), equals the
  plain dict of the same keys and goes through ``json.dumps``, as the plain dicts returned before
  did. ``remove`` returns None.

Nothing here is imported by ``import orchestrator``; the clients import it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Generic, TypeVar, cast, overload

T = TypeVar("T")
A = TypeVar("A", bound="Answer")


class Answer(dict[str, Any]):
    """An answer of the HTTP API, as its JSON object; subclasses add typed attributes."""

    @classmethod
    def of(cls: type[A], answer: Mapping[str, Any]) -> A:
        return cls(answer)


class Key(Generic[T]):
    """An attribute that reads the answer's key of the same name (or ``key``)."""

    def __init__(self, key: str | None = None) -> None:
        self.key = key or ""

    def __set_name__(self, owner: type, name: str) -> None:
        self.key = self.key or name

    @overload
    def __get__(self, answer: None, owner: type) -> Key[T]: ...

    @overload
    def __get__(self, answer: Answer, owner: type) -> T: ...

    def __get__(self, answer: Answer | None, owner: type) -> Key[T] | T:
        if answer is None:
            return self
        try:
            return cast(T, answer[self.key])
        except KeyError:
            raise AttributeError(f"this answer has no {self.key!r}") from None


class Job(Answer):
    """A job as ``GET /api/v1/jobs/{id}`` shows it (a list's items carry no result)."""

    id = Key[str]()
    name = Key[str]("job")
    args = Key[list[Any]]()
    kwargs = Key[dict[str, Any]]()
    queue = Key[str]()
    state = Key[str]()
    attempt = Key[int]()
    retries = Key[int]()
    result = Key[Any]()
    #: The latest failed attempt's ``{type, message, traceback}``; None once it has Succeeded.
    error = Key[dict[str, Any] | None]()
    created_at = Key[str]()
    state_changed_at = Key[str]()
    due_at = Key[str | None]()
    expires_at = Key[str | None]()
    parent_id = Key[str | None]()
    batch_id = Key[str | None]()
    recurring_id = Key[str | None]()
    history = Key[list[dict[str, Any]]]()


class JobChange(Answer):
    """What ``delete`` and ``requeue`` did: the job's id and the state it is in now."""

    id = Key[str]()
    state = Key[str]()


class JobPage(Answer):
    """One page of ``list``: ``jobs`` (the answer's ``items``) and ``next_cursor``."""

    jobs = Key[list[Job]]("items")
    next_cursor = Key[str | None]()

    @classmethod
    def of(cls: type[A], answer: Mapping[str, Any]) -> A:
        return cls({**answer, "items": [Job(item) for item in answer["items"]]})


class Batch(Answer):
    """A batch just created: its id, its members' ids in order, its continuation's id."""

    id = Key[str]()
    job_ids = Key[list[str]]()
    continuation_id = Key[str | None]()


class BatchProgress(Answer):
    """``get_batch``: members per outcome, those not ended yet, and ``running``/``completed``."""

    id = Key[str]()
    total = Key[int]()
    succeeded = Key[int]()
    failed = Key[int]()
    deleted = Key[int]()
    pending = Key[int]()
    state = Key[str]()
    continuation_id = Key[str | None]()
    completed_at = Key[str | None]()


class Recurring(Answer):
    """A recurring job's definition and its schedule's state."""

    id = Key[str]()
    name = Key[str]("job")
    args = Key[list[Any]]()
    kwargs = Key[dict[str, Any]]()
    cron = Key[str]()
    timezone = Key[str]()
    queue = Key[str | None]()
    misfire = Key[str]()
    overlap = Key[str]()
    next_run_at = Key[str | None]()
    last_run_at = Key[str | None]()
    last_job_id = Key[str | None]()
    last_job_state = Key[str | None]()
    paused = Key[bool]()
    error = Key[str | None]()


class Stats(Answer):
    """``{states: {state: count}, queues: [{name, ready, consumers, processing}]}``."""

    states = Key[dict[str, int]]()
    queues = Key[list[dict[str, Any]]]()


class JobCatalog(Answer):
    """Every job the API accepts (``jobs``: the answer's ``items``), with its JSON Schema."""

    jobs = Key[list[dict[str, Any]]]("items")
