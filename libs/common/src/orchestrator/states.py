"""The job state machine: the states, the allowed transitions, and the only code that moves a job.

Every change is a compare-and-set on the state the caller expects, and appends a history row in the
same transaction. Nothing else in the code base assigns ``jobs.state``.

After each change is written, the *applied* hooks run in the same transaction with an
:class:`Applied` (the rows moved, the target, the connection): first the built-in ones, installed
here so that no change escapes them — continuations and batch progress
(:data:`orchestrator.endings.FOLLOW`) and state counting (per-hour counters in the store, and
``orchestrator_state_changes_total`` after commit) — then the ``applied`` hooks of the filters the
caller passes (``filters=``; see :mod:`orchestrator.filters`). With filters that elect, a move
asks them first, per job, which state to enter (:func:`move`).
"""

from __future__ import annotations

import enum
import json
import uuid
import weakref
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Final, Protocol, TypeVar

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection

from orchestrator import endings, metrics, outbox, outcomes
from orchestrator.db import is_postgres, one_of
from orchestrator.errors import IllegalTransitionError
from orchestrator.models import Job, JobHistory, StateCounter
from orchestrator.outbox import Pending

if TYPE_CHECKING:  # filters.py imports this module; the state machine only calls its methods
    from orchestrator.filters import Filters


class State(enum.StrEnum):
    """Hangfire's state names: one word, capitalised, past tense."""

    ENQUEUED = "Enqueued"  #: waiting in its queue for a worker
    SCHEDULED = "Scheduled"  #: waiting for a due time (a requested delay or a retry)
    AWAITING = "Awaiting"  #: waiting for its parent job (a continuation)
    PROCESSING = "Processing"  #: claimed by a worker that holds its lease
    SUCCEEDED = "Succeeded"  #: final; expires
    FAILED = "Failed"  #: kept until a person acts
    DELETED = "Deleted"  #: final; expires


#: Nothing automatic leaves a final state; only a person's requeue does.
FINAL: Final = frozenset({State.SUCCEEDED, State.DELETED})
#: States counted per hour for the dashboard's history graph.
COUNTED: Final = frozenset({State.SUCCEEDED, State.FAILED, State.DELETED})
#: Requeue (run now, fresh retry budget) is allowed from these.
REQUEUEABLE: Final = frozenset(
    {State.FAILED, State.SUCCEEDED, State.DELETED, State.SCHEDULED, State.AWAITING}
)

_S = State
ALLOWED: Final[Mapping[State, frozenset[State]]] = {
    _S.ENQUEUED: frozenset({_S.PROCESSING, _S.DELETED, _S.FAILED}),  # FAILED: dead-lettered
    # PROCESSING: a worker claims a retry whose due time has come.
    _S.SCHEDULED: frozenset({_S.ENQUEUED, _S.PROCESSING, _S.DELETED}),
    _S.AWAITING: frozenset({_S.ENQUEUED, _S.DELETED}),
    # ENQUEUED: lease expired or worker shut down; SCHEDULED: a retry is due later.
    _S.PROCESSING: frozenset({_S.SUCCEEDED, _S.FAILED, _S.SCHEDULED, _S.ENQUEUED, _S.DELETED}),
    _S.FAILED: frozenset({_S.ENQUEUED, _S.DELETED}),
    _S.SUCCEEDED: frozenset({_S.ENQUEUED, _S.DELETED}),
    _S.DELETED: frozenset({_S.ENQUEUED}),
}


def is_allowed(source: State, target: State) -> bool:
    return target in ALLOWED[source]


def check_allowed(sources: Iterable[State], target: State) -> None:
    for source in sources:
        if not is_allowed(source, target):
            raise IllegalTransitionError(source, target)


@dataclass(frozen=True)
class Change:
    """What a transition writes besides the state: extra columns and the history row's data."""

    reason: str
    values: Mapping[str, Any] = field(default_factory=dict)
    data: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class RowChange:
    """One job's part in a batch of per-row transitions (e.g. each job's own result)."""

    job_id: uuid.UUID
    change: Change
    #: Extra equality guards, e.g. the claim's attempt and worker id.
    guard: Mapping[str, Any] = field(default_factory=dict)


_T = TypeVar("_T")


class Moved(list[_T]):
    """The jobs moved, and in ``pending`` the outbox entries of jobs their ending enqueued
    (continuations, batch completion); the caller publishes those after commit."""

    def __init__(self, items: Iterable[_T] = (), pending: Sequence[Pending] = ()) -> None:
        super().__init__(items)
        self.pending: list[Pending] = list(pending)
        #: The state each job entered when election filters replaced the target (else empty).
        self.elected: dict[uuid.UUID, State] = {}

    def entered(self, job_id: uuid.UUID, target: State) -> bool:
        """Whether the moved job ``job_id`` entered ``target`` (the target the caller asked)."""
        return self.elected.get(job_id, target) is target


@dataclass
class Applied:
    """A state change just written, for the applied hooks (inside its transaction)."""

    conn: AsyncConnection
    #: The rows moved: ``id``, ``expire_after_seconds``, ``batch_id`` (and a move's ``returning``).
    rows: Sequence[sa.Row[Any]]
    target: State
    changes: Sequence[tuple[uuid.UUID, Change]]
    now: datetime
    retention: timedelta
    #: The caller's filters, for hooks that move jobs in turn (continuations) to pass on.
    filters: Filters | None = None
    #: Outbox entries of jobs the hooks enqueued; the caller publishes them after commit.
    pending: list[Pending] = field(default_factory=list)

    def after_commit(self, callback: Callable[[], None]) -> None:
        """Run ``callback`` once this transaction commits (never if it rolls back)."""
        after_commit(self.conn, callback)


class AppliedHook(Protocol):
    async def applied(self, context: Applied) -> None: ...


#: Callbacks waiting for the commit of each connection's transaction.
_waiting: weakref.WeakKeyDictionary[Connection, list[Callable[[], None]]] = (
    weakref.WeakKeyDictionary()
)


def after_commit(conn: AsyncConnection, callback: Callable[[], None]) -> None:
    """Run ``callback`` after the transaction of ``conn`` commits; dropped on rollback."""
    sync = conn.sync_connection
    if sync is None:
        return
    waiting = _waiting.get(sync)
    if waiting is None:
        waiting = _waiting[sync] = []
        if not event.contains(sync, "commit", _committed):
            event.listen(sync, "commit", _committed)
            event.listen(sync, "rollback", _rolled_back)
    waiting.append(callback)


def _committed(sync: Connection) -> None:
    for callback in _waiting.pop(sync, []):
        callback()


def _rolled_back(sync: Connection) -> None:
    _waiting.pop(sync, None)


class _CountStates:
    """Built-in: per-hour counters of the states the dashboard graphs (in the transaction),
    and the state-change counter (after commit, so a change rolled back is never counted)."""

    async def applied(self, context: Applied) -> None:
        moved = len(context.rows)
        if context.target in COUNTED:
            await count_states(context.conn, context.now, Counter({context.target: moved}))
        counter = metrics.STATE_CHANGES.labels(context.target.value)
        context.after_commit(lambda: counter.inc(moved))


_COUNT_STATES: Final = _CountStates()


def built_in_hooks() -> tuple[AppliedHook, ...]:
    """The applied hooks the state machine runs first on every change, in order."""
    return (endings.FOLLOW, _COUNT_STATES)


_jobs = Job.__table__  # type: ignore[attr-defined]  # SQLModel sets __table__ at class creation
_history = JobHistory.__table__  # type: ignore[attr-defined]
_counters = StateCounter.__table__  # type: ignore[attr-defined]
#: The jobs table once more, for the locking subqueries of the UPDATEs below (a subquery on
#: the table an UPDATE writes would otherwise be correlated with it).
_locking = _jobs.alias("locking")


def in_lock_order(condition: sa.ColumnElement[bool]) -> sa.ColumnElement[bool]:
    """``jobs.id IN`` the rows matching ``condition`` (written against :data:`_jobs`), locked
    in ascending id order, for an UPDATE's WHERE on PostgreSQL.

    A plain UPDATE locks rows in whatever order its plan meets them (an index scan, a hash join
    on ``unnest``, the array's order), so two transactions moving overlapping jobs could each
    hold a row the other waits for. Every transaction that locks several job rows takes them
    in ascending id order (see "Lock order" in docs/architecture.md); ``FOR NO KEY UPDATE`` is
    the lock the UPDATE takes anyway, so it blocks nothing more than the UPDATE would.
    """
    adapted = sa.sql.util.ClauseAdapter(_locking).traverse(condition)
    locked = (
        sa.select(_locking.c.id)
        .where(adapted)
        .order_by(_locking.c.id)
        .with_for_update(key_share=True)
    )
    selected: sa.ColumnElement[bool] = _jobs.c.id.in_(locked)
    return selected


async def lock(
    conn: AsyncConnection, job_ids: Iterable[uuid.UUID], in_states: Iterable[State]
) -> set[uuid.UUID] | None:
    """Lock the rows of ``job_ids`` that are in one of ``in_states``, in ascending id order,
    until the transaction ends (PostgreSQL; SQLite locks the whole database at its first write).

    For transactions that move several sets of jobs one after another (a worker's write round:
    outcomes, then claims): taking the union first keeps the whole transaction in one order.
    Only rows the moves can change are locked: an ``Awaiting`` child, say, is locked later by
    its parent's ending, parent first. Returns the ids locked (None: no lock was needed); the
    caller moves only those, as a row entering ``in_states`` after this statement would be
    locked out of order (and came with a message of its own if it was enqueued).
    """
    ids = sorted(set(job_ids))
    if len(ids) < 2 or not is_postgres(conn):
        return None
    query = (
        sa.select(_jobs.c.id)
        .where(one_of(conn, _jobs.c.id, ids), _jobs.c.state.in_([s.value for s in in_states]))
        .order_by(_jobs.c.id)
        .with_for_update(key_share=True)
    )
    return set((await conn.execute(query)).scalars())


async def move(
    conn: AsyncConnection,
    job_ids: Sequence[uuid.UUID],
    *,
    expected: Iterable[State],
    target: State,
    change: Change,
    now: datetime,
    retention: timedelta,
    where: sa.ColumnElement[bool] | None = None,
    returning: Sequence[sa.ColumnElement[Any]] = (),
    filters: Filters | None = None,
    elect: bool = True,
) -> Moved[sa.Row[Any]]:
    """Move every listed job that is in an ``expected`` state to ``target``, in one statement.

    Returns the rows moved (``id``, ``expire_after_seconds``, ``batch_id`` and any ``returning``
    columns); jobs in another state are left alone and simply not returned.

    ``filters`` run their ``applied`` hooks after the change. When one of them elects (and
    ``elect``), each job is first put to the election filters and moved on its own to the state
    they chose, which must be allowed from the job's state (:class:`IllegalTransitionError`);
    ``Moved.elected`` tells which jobs entered another state. Without such filters (the default)
    the move stays one set-based statement.
    """
    expected = frozenset(expected)
    check_allowed(expected, target)
    if not job_ids:
        return Moved()
    if elect and filters is not None and filters.elects:
        by_job = dict.fromkeys(job_ids, change)
        return await _move_elected(
            conn, by_job, {}, expected, target, now, retention, filters, where, returning
        )
    condition = sa.and_(
        one_of(conn, _jobs.c.id, job_ids), _jobs.c.state.in_([s.value for s in expected])
    )
    if where is not None:
        condition = sa.and_(condition, where)
    if is_postgres(conn) and len(job_ids) > 1:
        condition = sa.and_(condition, in_lock_order(condition))
    values = {**_state_columns(target, now, retention), **change.values}
    stmt = (
        sa.update(_jobs)
        .where(condition)
        .values(**values)
        .returning(_jobs.c.id, _jobs.c.expire_after_seconds, _jobs.c.batch_id, *returning)
    )
    rows = list((await conn.execute(stmt)).all())
    changes = [(r.id, change) for r in rows]
    pending = await _after_move(conn, rows, target, now, changes, retention, filters)
    return Moved(rows, pending)


async def move_each(
    conn: AsyncConnection,
    items: Sequence[RowChange],
    *,
    expected: Iterable[State],
    target: State,
    now: datetime,
    retention: timedelta,
    filters: Filters | None = None,
    elect: bool = True,
) -> Moved[uuid.UUID]:
    """Like :func:`move`, but each job gets its own values and guards; returns the ids moved."""
    expected = frozenset(expected)
    check_allowed(expected, target)
    if not items:
        return Moved()
    if elect and filters is not None and filters.elects:
        by_job = {item.job_id: item.change for item in items}
        guards = {item.job_id: item.guard for item in items}
        elected = await _move_elected(
            conn, by_job, guards, expected, target, now, retention, filters
        )
        result: Moved[uuid.UUID] = Moved([row.id for row in elected], elected.pending)
        result.elected = elected.elected
        return result
    base = _state_columns(target, now, retention)
    states = [s.value for s in expected]
    if is_postgres(conn) and len(items) > 1 and _uniform(items):
        moved = await _move_each_postgres(conn, items, states, base)
    else:
        moved = []
        # One row per statement: in ascending id order, as every multi-row lock is taken.
        for item in sorted(items, key=lambda i: i.job_id):
            stmt = (
                sa.update(_jobs)
                .where(_jobs.c.id == item.job_id, _jobs.c.state.in_(states))
                .where(*[_jobs.c[name] == value for name, value in item.guard.items()])
                .values(**base, **item.change.values)
                .returning(_jobs.c.id, _jobs.c.expire_after_seconds, _jobs.c.batch_id)
            )
            moved.extend((await conn.execute(stmt)).all())
    by_id = {item.job_id: item.change for item in items}
    changes = [(row.id, by_id[row.id]) for row in moved]
    pending = await _after_move(conn, moved, target, now, changes, retention, filters)
    return Moved([row.id for row in moved], pending)


async def _move_elected(
    conn: AsyncConnection,
    changes: Mapping[uuid.UUID, Change],
    guards: Mapping[uuid.UUID, Mapping[str, Any]],
    expected: frozenset[State],
    target: State,
    now: datetime,
    retention: timedelta,
    filters: Filters,
    where: sa.ColumnElement[bool] | None = None,
    returning: Sequence[sa.ColumnElement[Any]] = (),
) -> Moved[sa.Row[Any]]:
    """Each job to the state its election chose, one job at a time (only with election
    filters configured; the set-based path is untouched otherwise)."""
    moved: Moved[sa.Row[Any]] = Moved()
    locked = await lock(conn, changes, expected)  # one move per job below: in order first
    for choice in await filters.elect_stored(conn, changes, expected, target, now, where):
        if locked is not None and choice.job_id not in locked:
            continue  # entered an expected state since: its lock would come out of order
        guard = guards.get(choice.job_id, {})
        clauses = [_jobs.c[name] == value for name, value in guard.items()]
        clauses += [where] if where is not None else []
        one = await move(
            conn,
            [choice.job_id],
            expected={choice.source},
            target=choice.state,
            change=choice.change,
            now=now,
            retention=retention,
            where=sa.and_(*clauses) if clauses else None,
            returning=returning,
            filters=filters,
            elect=False,
        )
        moved.extend(one)
        moved.pending.extend(one.pending)
        if one and choice.state is not target:
            moved.elected[choice.job_id] = choice.state
    moved.pending += await _publish_elected(conn, moved.elected, now)
    return moved


async def _publish_elected(
    conn: AsyncConnection, elected: Mapping[uuid.UUID, State], now: datetime
) -> list[Pending]:
    """A job an election sent to ``Enqueued`` instead of another state gets its message here
    (a caller sends messages only for the target it asked for)."""
    enqueued = [job_id for job_id, state in elected.items() if state is State.ENQUEUED]
    if not enqueued:
        return []
    query = sa.select(_jobs.c.id, _jobs.c.queue, _jobs.c.trace_context)
    rows = (await conn.execute(query.where(_jobs.c.id.in_(enqueued)))).all()
    publications = [outbox.Publication(r.id, r.queue, r.trace_context or {}) for r in rows]
    return await outbox.add(conn, publications, now)


def _uniform(items: Sequence[RowChange]) -> bool:
    first = items[0]
    keys = (tuple(first.change.values), tuple(first.guard))
    return all((tuple(i.change.values), tuple(i.guard)) == keys for i in items)


async def _move_each_postgres(
    conn: AsyncConnection, items: Sequence[RowChange], states: list[str], base: dict[str, Any]
) -> list[sa.Row[Any]]:
    # One UPDATE ... FROM unnest(arrays) for the whole batch: a single round trip, and a
    # statement text that depends only on the column names, so it is compiled once.
    value_names = list(items[0].change.values)
    guard_names = list(items[0].guard)
    params: dict[str, Any] = {"ids": [item.job_id for item in items], "states": states}
    params.update({f"b_{name}": value for name, value in base.items()})
    arrays = ["CAST(:ids AS uuid[])"]
    columns = ["id"]
    assignments = [f"{name} = :b_{name}" for name in base]
    for prefix, names in (("v", value_names), ("g", guard_names)):
        for name in names:
            array_type, element_cast = _ARRAY_TYPES[type(_jobs.c[name].type).__name__]
            key = f"{prefix}_{name}"
            values = [(item.change.values if prefix == "v" else item.guard)[name] for item in items]
            if element_cast == "jsonb":
                values = [None if v is None else json.dumps(v) for v in values]
            params[key] = values
            arrays.append(f"CAST(:{key} AS {array_type})")
            columns.append(key)
            if prefix == "v":
                cast = f"CAST(v.{key} AS {element_cast})" if element_cast else f"v.{key}"
                assignments.append(f"{name} = {cast}")
    guards = " ".join(f"AND j.{name} = v.g_{name}" for name in guard_names)
    # The rows are locked in ascending id order by the subquery first (see in_lock_order);
    # the join on unnest alone would lock them in the array's order.
    statement = sa.text(
        f"UPDATE jobs AS j SET {', '.join(assignments)} "  # noqa: S608 - names are our columns
        f"FROM unnest({', '.join(arrays)}) AS v({', '.join(columns)}) "
        f"WHERE j.id = v.id AND j.state = ANY(CAST(:states AS text[])) {guards} "
        "AND j.id IN (SELECT l.id FROM jobs AS l WHERE l.id = ANY(CAST(:ids AS uuid[])) "
        "AND l.state = ANY(CAST(:states AS text[])) ORDER BY l.id FOR NO KEY UPDATE) "
        "RETURNING j.id, j.expire_after_seconds, j.batch_id"
    )
    return list((await conn.execute(statement, params)).all())


#: PostgreSQL array type for each column type unnest() reads, and the cast back per element.
_ARRAY_TYPES: Final[Mapping[str, tuple[str, str]]] = {
    "JSON": ("text[]", "jsonb"),
    "UTCDateTime": ("timestamptz[]", ""),
    "Integer": ("integer[]", ""),
    "Float": ("float8[]", ""),
    "String": ("text[]", ""),
    "Text": ("text[]", ""),
    "Uuid": ("uuid[]", ""),
}


def _state_columns(target: State, now: datetime, retention: timedelta) -> dict[str, Any]:
    values: dict[str, Any] = {"state": target.value, "state_changed_at": now}
    final = target in FINAL
    values["expires_at"] = outcomes.after(now, retention.total_seconds()) if final else None
    if target is not State.PROCESSING:
        values["lease_until"] = None
    if target is not State.SCHEDULED:
        values["due_at"] = None
        values["scheduled_reason"] = None
    return values


async def _after_move(
    conn: AsyncConnection,
    rows: Sequence[sa.Row[Any]],
    target: State,
    now: datetime,
    changes: Sequence[tuple[uuid.UUID, Change]],
    retention: timedelta,
    filters: Filters | None = None,
) -> list[Pending]:
    """History and expiry of the moved rows; then the applied hooks, built-in ones first."""
    if not rows:
        return []
    await conn.execute(
        sa.insert(_history),
        [
            {
                "job_id": job_id,
                "state": target.value,
                "at": now,
                "reason": change.reason,
                "data": dict(change.data) if change.data is not None else None,
            }
            for job_id, change in changes
        ],
    )
    custom = [row for row in rows if row.expire_after_seconds is not None]
    if target in FINAL and custom:
        # Clamped: a row may hold 1e308 or Infinity (older versions accepted them), and an
        # overflow here would fail every move of the batch, over and over.
        expiry = [{"jid": r.id, "exp": outcomes.after(now, r.expire_after_seconds)} for r in custom]
        update = sa.update(_jobs).where(_jobs.c.id == sa.bindparam("jid"))
        await conn.execute(update.values(expires_at=sa.bindparam("exp")), expiry)
    applied = Applied(conn, rows, target, changes, now, retention, filters)
    # Continuations, batch progress and counting: in this transaction, whoever moves the job,
    # so no ending is ever missed; the caller's filters after them.
    for hook in built_in_hooks():
        await hook.applied(applied)
    if filters is not None:
        await filters.applied(applied)
    return applied.pending


async def count_states(conn: AsyncConnection, now: datetime, counts: Counter[State]) -> None:
    """Add to the persistent per-hour counters (append-only rows; readers sum them)."""
    hour = now.replace(minute=0, second=0, microsecond=0)
    rows = [{"hour": hour, "state": state.value, "count": n} for state, n in counts.items() if n]
    if rows:
        await conn.execute(sa.insert(_counters), rows)


async def counted(conn: AsyncConnection, since: datetime) -> dict[tuple[datetime, str], int]:
    """Per (hour, state), how many jobs entered the state, for hours from ``since`` on."""
    query = (
        sa.select(_counters.c.hour, _counters.c.state, sa.func.sum(_counters.c.count))
        .where(_counters.c.hour >= since)
        .group_by(_counters.c.hour, _counters.c.state)
    )
    return {(hour, state): int(total) for hour, state, total in await conn.execute(query)}
