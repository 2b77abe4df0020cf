"""The SQL of a state change, for :class:`orchestrator.transitions.Transitions` only (which
decides what is written; nothing else calls this module).

Lock order: every statement that locks several job rows takes them in ascending id order (see
"Lock order" in docs/architecture.md), so two transactions never each hold a row the other
waits for.
"""

from __future__ import annotations

import functools
import json
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncConnection

from orchestrator import outcomes
from orchestrator.db import UTCDateTime, db_now, is_postgres, one_of
from orchestrator.lifecycle import Change, RowChange, State
from orchestrator.store.tables import Row, history, jobs

#: The jobs table once more, for the locking subqueries of the UPDATEs below (a subquery on
#: the table an UPDATE writes would otherwise be correlated with it).
_locking = jobs.alias("locking")


def column(name: str) -> sa.Column[Any]:
    return jobs.c[name]


def in_lock_order(condition: sa.ColumnElement[bool]) -> sa.ColumnElement[bool]:
    """``jobs.id IN`` the rows matching ``condition`` (written against ``tables.jobs``), locked
    in ascending id order, for an UPDATE's WHERE on PostgreSQL.

    A plain UPDATE locks rows in whatever order its plan meets them (an index scan, a hash join
    on ``unnest``, the array's order). ``FOR NO KEY UPDATE`` is the lock the UPDATE takes
    anyway, so it blocks nothing more than the UPDATE would.
    """
    adapted = sa.sql.util.ClauseAdapter(_locking).traverse(condition)
    locked = (
        sa.select(_locking.c.id)
        .where(adapted)
        .order_by(_locking.c.id)
        .with_for_update(key_share=True)
    )
    selected: sa.ColumnElement[bool] = jobs.c.id.in_(locked)
    return selected


async def lock(
    conn: AsyncConnection, job_ids: Iterable[uuid.UUID], in_states: Iterable[State]
) -> set[uuid.UUID] | None:
    """Lock the rows of ``job_ids`` that are in one of ``in_states``, in ascending id order,
    until the transaction ends (PostgreSQL; SQLite locks the whole database at its first write).

    For transactions that move several sets of jobs one after another (a worker's write round:
    outcomes, then claims): taking the union first keeps the whole transaction in one order.
    Returns the ids locked (None: no lock was needed); the caller moves only those, as a row
    entering ``in_states`` after this statement would be locked out of order.
    """
    ids = sorted(set(job_ids))
    if len(ids) < 2 or not is_postgres(conn):
        return None
    query = (
        sa.select(jobs.c.id)
        .where(one_of(conn, jobs.c.id, ids), jobs.c.state.in_([s.value for s in in_states]))
        .order_by(jobs.c.id)
        .with_for_update(key_share=True)
    )
    return set((await conn.execute(query)).scalars())


async def lock_at_clock(
    conn: AsyncConnection, job_ids: Iterable[uuid.UUID], in_states: Iterable[State]
) -> tuple[datetime, set[uuid.UUID] | None]:
    """The database's clock (as :func:`orchestrator.db.db_now` reads it) and :func:`lock`, in
    one statement on PostgreSQL."""
    ids = sorted(set(job_ids))
    if len(ids) < 2 or not is_postgres(conn):
        return await db_now(conn), None
    params = {"ids": ids, "states": [s.value for s in in_states]}
    now, held = (await conn.execute(_LOCK_AT_CLOCK, params)).one()
    return now.astimezone(UTC), set(held)


def _lock_at_clock() -> sa.Select[Any]:
    locked = (
        sa.select(jobs.c.id)
        .where(jobs.c.id == sa.any_(sa.cast(sa.bindparam("ids"), ARRAY(sa.Uuid()))))
        .where(jobs.c.state == sa.any_(sa.cast(sa.bindparam("states"), ARRAY(sa.Text()))))
        .order_by(jobs.c.id)
        .with_for_update(key_share=True)
    )
    return sa.select(
        sa.func.clock_timestamp().label("now"), sa.func.array(locked.scalar_subquery())
    )


# Built once: a worker runs these in every round, and building a statement (and its cache key)
# costs more Python time than sending it.
_LOCK_AT_CLOCK: Final = _lock_at_clock()


def state_columns(
    target: State, now: datetime, retention: timedelta, *, final: bool
) -> dict[str, Any]:
    """The columns every move to ``target`` sets (``final``: the target expires)."""
    values: dict[str, Any] = {"state": target.value, "state_changed_at": now}
    values["expires_at"] = outcomes.after(now, retention.total_seconds()) if final else None
    if target is not State.PROCESSING:
        values["lease_until"] = None
    if target is not State.SCHEDULED:
        values["due_at"] = None
        values["scheduled_reason"] = None
    return values


_MOVED = (jobs.c.id, jobs.c.expire_after_seconds, jobs.c.batch_id)


async def update_many(
    conn: AsyncConnection,
    job_ids: Sequence[uuid.UUID],
    expected: Iterable[State],
    values: dict[str, Any],
    where: sa.ColumnElement[bool] | None,
    returning: Sequence[sa.ColumnElement[Any]],
    entered: Entered,
) -> list[Row]:
    """Set ``values`` on the listed jobs in an ``expected`` state and add their history rows
    (``entered``, the same change for every job): one statement on PostgreSQL."""
    condition = sa.and_(
        one_of(conn, jobs.c.id, job_ids), jobs.c.state.in_([s.value for s in expected])
    )
    if where is not None:
        condition = sa.and_(condition, where)
    if is_postgres(conn) and len(job_ids) > 1:
        condition = sa.and_(condition, in_lock_order(condition))
    stmt = sa.update(jobs).where(condition).values(**values).returning(*_MOVED, *returning)
    if not is_postgres(conn):
        rows = list((await conn.execute(stmt)).all())
        await add_history(conn, entered.state, entered.at, [(r.id, entered.change) for r in rows])
        return rows
    # A data-modifying CTE: the history rows of the rows the UPDATE moved, in one round trip.
    moved = stmt.cte("moved")
    change = entered.change
    data = dict(change.data) if change.data is not None else None
    history_rows = sa.select(
        moved.c.id,
        sa.literal(entered.state.value, history.c.state.type),
        sa.literal(entered.at, history.c.at.type),
        sa.literal(change.reason, history.c.reason.type),
        sa.literal(data, history.c.data.type),
    )
    added = sa.insert(history).from_select(
        ["job_id", "state", "at", "reason", "data"], history_rows
    )
    query = sa.select(moved).add_cte(added.cte("entered"))
    return list((await conn.execute(query)).all())


@dataclass(frozen=True)
class Entered:
    """The history row a move writes for each job it moves (the same change for all)."""

    state: State
    at: datetime
    change: Change


async def update_each(
    conn: AsyncConnection,
    items: Sequence[RowChange],
    expected: Iterable[State],
    base: dict[str, Any],
    target: State,
    now: datetime,
) -> list[Row]:
    """Set ``base`` and each job's own values on the jobs in an ``expected`` state whose
    guards hold, and add each moved job's history row (its own change); one statement on
    PostgreSQL when the items share their column names."""
    states = [s.value for s in expected]
    if is_postgres(conn) and _uniform(items):
        return await _update_each_postgres(conn, items, states, base, target, now)
    moved: list[Row] = []
    # One row per statement: in ascending id order, as every multi-row lock is taken.
    for item in sorted(items, key=lambda i: i.job_id):
        stmt = (
            sa.update(jobs)
            .where(jobs.c.id == item.job_id, jobs.c.state.in_(states))
            .where(*[jobs.c[name] == value for name, value in item.guard.items()])
            .values(**base, **item.change.values)
            .returning(*_MOVED)
        )
        moved.extend((await conn.execute(stmt)).all())
    by_id = {item.job_id: item.change for item in items}
    await add_history(conn, target, now, [(row.id, by_id[row.id]) for row in moved])
    return moved


def _uniform(items: Sequence[RowChange]) -> bool:
    first = items[0]
    keys = (tuple(first.change.values), tuple(first.guard))
    return all((tuple(i.change.values), tuple(i.guard)) == keys for i in items)


async def _update_each_postgres(
    conn: AsyncConnection,
    items: Sequence[RowChange],
    states: list[str],
    base: dict[str, Any],
    target: State,
    now: datetime,
) -> list[Row]:
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
            array_type, element_cast = _ARRAY_TYPES[type(jobs.c[name].type).__name__]
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
    params["h_state"] = target.value
    params["h_at"] = now
    params["h_reasons"] = [item.change.reason for item in items]
    params["h_data"] = [_json_or_none(item.change.data) for item in items]
    statement = _update_each_statement(
        tuple(assignments), tuple(arrays), tuple(columns), tuple(guard_names)
    )
    return list((await conn.execute(statement, params)).all())


@functools.lru_cache(maxsize=64)
def _update_each_statement(
    assignments: tuple[str, ...],
    arrays: tuple[str, ...],
    columns: tuple[str, ...],
    guard_names: tuple[str, ...],
) -> sa.TextClause:
    """The statement of :func:`_update_each_postgres` for one shape of items, built once (a
    worker's outcome rounds repeat a few shapes; parsing a text's parameters costs time)."""
    guards = " ".join(f"AND j.{name} = v.g_{name}" for name in guard_names)
    # The rows are locked in ascending id order by the subquery first (see in_lock_order);
    # the join on unnest alone would lock them in the array's order. The history rows of the
    # rows moved are written by the same statement (one round trip).
    return sa.text(
        f"WITH moved AS (UPDATE jobs AS j SET {', '.join(assignments)} "  # noqa: S608 - names are our columns
        f"FROM unnest({', '.join(arrays)}) AS v({', '.join(columns)}) "
        f"WHERE j.id = v.id AND j.state = ANY(CAST(:states AS text[])) {guards} "
        "AND j.id IN (SELECT l.id FROM jobs AS l WHERE l.id = ANY(CAST(:ids AS uuid[])) "
        "AND l.state = ANY(CAST(:states AS text[])) ORDER BY l.id FOR NO KEY UPDATE) "
        "RETURNING j.id, j.expire_after_seconds, j.batch_id), "
        "entered AS (INSERT INTO job_history (job_id, state, at, reason, data) "
        "SELECT h.id, :h_state, :h_at, h.reason, CAST(h.data AS jsonb) FROM moved "
        "JOIN unnest(CAST(:ids AS uuid[]), CAST(:h_reasons AS text[]), "
        "CAST(:h_data AS text[])) AS h(id, reason, data) ON h.id = moved.id) "
        "SELECT id, expire_after_seconds, batch_id FROM moved"
    ).bindparams(sa.bindparam("h_at", type_=UTCDateTime()))


def _json_or_none(data: Mapping[str, Any] | None) -> str | None:
    return None if data is None else json.dumps(dict(data))


#: PostgreSQL array type for each column type unnest() reads, and the cast back per element.
_ARRAY_TYPES: Final = {
    "JSON": ("text[]", "jsonb"),
    "UTCDateTime": ("timestamptz[]", ""),
    "Integer": ("integer[]", ""),
    "Float": ("float8[]", ""),
    "String": ("text[]", ""),
    "Text": ("text[]", ""),
    "Uuid": ("uuid[]", ""),
}


# A worker's claim as one statement, sent in autocommit (it is its own transaction): the rows
# locked in ascending id order (see in_lock_order), the compare-and-set from Enqueued or a due
# Scheduled, the columns Transitions.move would set (state_columns and claims.started) and the
# history rows, all stamped by the database's clock. The last SELECT gives one row even when
# nothing moved, for the clock. Arrays, so the text is the same for any number of jobs.
_CLAIM_NOW = """
WITH clock AS MATERIALIZED (SELECT clock_timestamp() AS now),
locked AS MATERIALIZED (
    SELECT j.id FROM jobs AS j CROSS JOIN clock
    WHERE j.id = ANY(CAST(:ids AS uuid[]))
      AND (j.state = 'Enqueued' OR (j.state = 'Scheduled' AND j.due_at <= clock.now))
    ORDER BY j.id
    FOR NO KEY UPDATE OF j
),
moved AS (
    UPDATE jobs AS j
    SET state = 'Processing', state_changed_at = clock.now, expires_at = NULL, due_at = NULL,
        scheduled_reason = NULL, attempt = j.attempt + 1,
        lease_until = clock.now + CAST(:lease AS float8) * interval '1 second',
        worker_id = :worker, started_at = clock.now
    FROM locked CROSS JOIN clock
    WHERE j.id = locked.id
      AND (j.state = 'Enqueued' OR (j.state = 'Scheduled' AND j.due_at <= clock.now))
    RETURNING j.id, j.expire_after_seconds, j.batch_id, j.name, j.queue, j.args, j.kwargs,
              j.attempt, j.timeout_seconds, j.trace_context, j.retries, j.retries_used, j.options
),
entered AS (
    INSERT INTO job_history (job_id, state, at, reason, data)
    SELECT moved.id, 'Processing', clock.now, :reason, CAST(:data AS jsonb)
    FROM moved CROSS JOIN clock
)
SELECT clock.now AS clock_now, moved.* FROM clock LEFT JOIN moved ON true
"""
_CLAIMED = (
    "id",
    "expire_after_seconds",
    "batch_id",
    "name",
    "queue",
    "args",
    "kwargs",
    "attempt",
    "timeout_seconds",
    "trace_context",
    "retries",
    "retries_used",
    "options",
)


@functools.cache
def _claim_now_statement() -> sa.TextualSelect:
    clock_now = sa.column("clock_now", UTCDateTime())
    return sa.text(_CLAIM_NOW).columns(clock_now, *(jobs.c[name] for name in _CLAIMED))


async def claim_now(
    conn: AsyncConnection,
    job_ids: Sequence[uuid.UUID],
    worker_id: str,
    lease: timedelta,
    reason: str,
    data: Mapping[str, Any],
) -> tuple[datetime, list[Row]]:
    """See :meth:`orchestrator.transitions.Transitions.claim_now` (PostgreSQL only): the
    database's time and the rows moved. ``conn`` must have no transaction open."""
    statement = _claim_now_statement()
    params = {
        "ids": sorted(set(job_ids)),
        "lease": lease.total_seconds(),
        "worker": worker_id,
        "reason": reason,
        "data": json.dumps(dict(data)),
    }
    autocommit = await conn.execution_options(isolation_level="AUTOCOMMIT")
    result = list((await autocommit.execute(statement, params)).all())
    now: datetime = result[0].clock_now
    return now, [row for row in result if row.id is not None]


async def add_history(
    conn: AsyncConnection,
    target: State,
    now: datetime,
    changes: Sequence[tuple[uuid.UUID, Change]],
) -> None:
    """One history row per moved job: the state entered, when, why and its data."""
    if not changes:
        return
    await conn.execute(
        sa.insert(history),
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


async def set_own_expiry(conn: AsyncConnection, rows: Sequence[Row], now: datetime) -> None:
    """Final jobs with an expiry of their own (``expire_after_seconds``) expire by it."""
    custom = [row for row in rows if row.expire_after_seconds is not None]
    if not custom:
        return
    # Clamped: a row may hold 1e308 or Infinity (older versions accepted them), and an
    # overflow here would fail every move of the batch, over and over.
    expiry = [{"jid": r.id, "exp": outcomes.after(now, r.expire_after_seconds)} for r in custom]
    update = sa.update(jobs).where(jobs.c.id == sa.bindparam("jid"))
    await conn.execute(update.values(expires_at=sa.bindparam("exp")), expiry)


async def read_for_election(
    conn: AsyncConnection,
    job_ids: Sequence[uuid.UUID],
    expected: Iterable[State],
    where: sa.ColumnElement[bool] | None,
) -> list[Row]:
    """What an election reads of each listed job in an ``expected`` state."""
    query = sa.select(
        jobs.c.id,
        jobs.c.state,
        jobs.c.name,
        jobs.c.queue,
        jobs.c.attempt,
        jobs.c.retries,
        jobs.c.retries_used,
        jobs.c.options,
    ).where(jobs.c.id.in_(list(job_ids)), jobs.c.state.in_([s.value for s in expected]))
    if where is not None:
        query = query.where(where)
    return list((await conn.execute(query)).all())


async def read_routing(conn: AsyncConnection, job_ids: Sequence[uuid.UUID]) -> list[Row]:
    """Queue and trace context of the listed jobs, for their messages."""
    query = sa.select(jobs.c.id, jobs.c.queue, jobs.c.trace_context)
    return list((await conn.execute(query.where(jobs.c.id.in_(list(job_ids))))).all())
