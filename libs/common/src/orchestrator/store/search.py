"""The dashboard's reads of jobs: searches (filters, sorts, keyset pages), bounded counts, queue
names, outcome rates, and the jobs a page links to. What a search asks for is
:class:`orchestrator.job_search.Search`.

The filters that matter at scale (state, queue, name, created-at range) hit the composite indexes
``ix_jobs_{state,queue_state,name_state}_created``. Text in the arguments is a case-insensitive
``LIKE`` on :data:`ARGUMENTS_TEXT`, newest first over the rows the other filters leave; on
PostgreSQL an operator may add the trigram index ``ix_jobs_arguments_trgm`` on that expression
(docs/dashboard.md), which the planner then uses.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable
from datetime import datetime
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from orchestrator.db import is_postgres
from orchestrator.job_search import (
    COUNT_BOUND,
    OUTCOMES,
    Hidden,
    Page,
    Search,
    SearchTooSlowError,
    Sort,
    decode_cursor,
    encode_cursor,
    sort_key,
)
from orchestrator.lifecycle import State
from orchestrator.store.tables import JOB_LIST_COLUMNS, Row, history, jobs, servers

#: The arguments as one text: the expression the optional trigram index is built on.
ARGUMENTS_TEXT: Final = "(CAST(args AS TEXT) || ' ' || CAST(kwargs AS TEXT))"
#: A text search without the trigram index may have to read every row the other filters leave;
#: on PostgreSQL it is stopped after this long rather than hold a connection (SearchTooSlowError).
TEXT_SEARCH_TIMEOUT_MS: Final = 5000


def _sort_columns(sort: Sort) -> tuple[list[sa.Column[Any]], bool]:
    """The keyset columns of a sort and whether it is descending."""
    names, descending = sort_key(sort)
    return [jobs.c[name] for name in names], descending


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def arguments_text() -> sa.ColumnElement[str]:
    return sa.literal_column(ARGUMENTS_TEXT, sa.Text)


def _without_secrets(hidden: Hidden, postgres: bool) -> sa.ColumnElement[str]:
    """The arguments as one text like :data:`ARGUMENTS_TEXT`, with the secret ones removed
    (highest position first, so the others keep theirs while removing)."""
    args: sa.ColumnElement[Any] = jobs.c.args
    kwargs: sa.ColumnElement[Any] = jobs.c.kwargs
    positions = sorted(hidden.positions, reverse=True)
    if postgres:  # jsonb - integer drops an element, jsonb - text a key
        for position in positions:
            args = args.op("-")(sa.literal(position, sa.Integer))
        for key in hidden.keys:
            kwargs = kwargs.op("-")(sa.literal(key, sa.Text))
    else:
        if positions:
            args = _sqlite_remove(args, [f"$[{p}]" for p in positions])
        kwargs = _sqlite_remove(kwargs, [_json_key(k) for k in hidden.keys])
    return sa.cast(args, sa.Text) + sa.literal(" ") + sa.cast(kwargs, sa.Text)


def _sqlite_remove(column: sa.ColumnElement[Any], paths: list[str]) -> sa.ColumnElement[Any]:
    """``json_remove`` of ``paths``; a row stored before the edge's bounds may hold text that is
    not JSON (``NaN``), which json_remove refuses: such a row's arguments are not searched."""
    removed = sa.func.json_remove(column, *[sa.literal(path) for path in paths])
    return sa.case((sa.func.json_valid(column) == 1, removed), else_=sa.literal(""))


def _json_key(key: str) -> str:
    return "$." + json.dumps(key)  # SQLite's JSON path: a quoted key takes any characters


def _text_condition(search: Search, postgres: bool) -> sa.ColumnElement[bool]:
    """Text anywhere in the arguments except secret ones: a job with secret parameters is
    searched in its arguments without them, so a search never tells what a secret holds."""
    pattern = f"%{_escape_like(search.text or '')}%"
    if not search.hidden:
        return arguments_text().ilike(pattern, escape="\\")
    names = list(search.hidden)
    branches = [sa.and_(jobs.c.name.not_in(names), arguments_text().ilike(pattern, escape="\\"))]
    for name, hidden in search.hidden.items():
        text = _without_secrets(hidden, postgres)
        branches.append(sa.and_(jobs.c.name == name, text.ilike(pattern, escape="\\")))
    return sa.or_(*branches)


def _conditions(search: Search, postgres: bool) -> list[sa.ColumnElement[bool]]:
    where: list[sa.ColumnElement[bool]] = []
    if search.retries_only:
        where.append(jobs.c.state == State.SCHEDULED.value)
        where.append(jobs.c.scheduled_reason == "retry")
    elif search.state is not None:
        where.append(jobs.c.state == search.state.value)
    if search.queue:
        where.append(jobs.c.queue == search.queue)
    if search.name:
        where.append(jobs.c.name == search.name)
    if search.created_from is not None:
        where.append(jobs.c.created_at >= search.created_from)
    if search.created_to is not None:
        where.append(jobs.c.created_at < search.created_to)
    if search.text:
        where.append(_text_condition(search, postgres))
    return where


async def search(
    conn: AsyncConnection, where: Search, *, limit: int, after: str | None = None
) -> Page:
    """One page of jobs matching ``where`` in its sort order, after the ``after`` cursor."""
    columns, descending = _sort_columns(where.sort)
    # Never the result: a list page must not read (up to) megabytes per row.
    query = sa.select(*JOB_LIST_COLUMNS).where(*_conditions(where, is_postgres(conn)))
    if after is not None:
        key = sa.tuple_(*columns)
        bound = sa.tuple_(*decode_cursor(where.sort, after))
        query = query.where(key < bound if descending else key > bound)
    order = [c.desc() if descending else c.asc() for c in columns]
    if where.text and is_postgres(conn):
        # SET LOCAL: only for this transaction, which ends when the connection goes back.
        await conn.execute(sa.text(f"SET LOCAL statement_timeout = {TEXT_SEARCH_TIMEOUT_MS}"))
    try:
        rows = list((await conn.execute(query.order_by(*order).limit(limit + 1))).all())
    except sa.exc.DBAPIError as exc:
        if getattr(exc.orig, "sqlstate", None) == "57014":  # query_canceled
            raise SearchTooSlowError from exc
        raise
    if len(rows) <= limit:
        return Page(rows, None)
    rows = rows[:limit]
    return Page(rows, encode_cursor([getattr(rows[-1], c.name) for c in columns]))


async def bounded_count(
    conn: AsyncConnection, where: Search, bound: int = COUNT_BOUND
) -> tuple[int, bool]:
    """(count, more): the number of matching jobs up to ``bound``, and whether there are more."""
    conditions = _conditions(where, is_postgres(conn))
    inner = sa.select(sa.literal(1)).select_from(jobs).where(*conditions).limit(bound + 1)
    count = int(
        (await conn.execute(sa.select(sa.func.count()).select_from(inner.subquery()))).scalar_one()
    )
    return min(count, bound), count > bound


async def state_counts(
    conn: AsyncConnection, bound: int = COUNT_BOUND
) -> dict[str, tuple[int, bool]]:
    """Per state, (count, more) up to ``bound``; each an index-only walk of at most bound rows."""
    counts = {}
    for state in State:
        counts[state.value] = await bounded_count(conn, Search(state=state), bound)
    return counts


async def queue_names(conn: AsyncConnection) -> list[str]:
    """Queues that hold jobs or that a live server consumes, sorted.

    On PostgreSQL a recursive query hops from one queue name to the next in the queue index
    (a loose index scan: one probe per queue, not a read of every job)."""
    if is_postgres(conn):
        hop = sa.text(
            "WITH RECURSIVE q(queue) AS ("
            " (SELECT queue FROM jobs ORDER BY queue LIMIT 1)"
            " UNION ALL"
            " SELECT (SELECT j.queue FROM jobs j WHERE j.queue > q.queue ORDER BY j.queue LIMIT 1)"
            " FROM q WHERE q.queue IS NOT NULL"
            ") SELECT queue FROM q WHERE queue IS NOT NULL"
        )
        names = set((await conn.execute(hop)).scalars())
    else:
        names = set((await conn.execute(sa.select(jobs.c.queue).distinct())).scalars())
    for server_queues in (await conn.execute(sa.select(servers.c.queues))).scalars():
        names.update(server_queues)
    return sorted(names)


async def outcomes_per_second(conn: AsyncConnection, since: datetime) -> dict[tuple[int, str], int]:
    """Per (whole UNIX second, state), the jobs that entered Succeeded or Failed from ``since``
    on, from their history rows (partial index ``ix_job_history_outcome_at``)."""
    if is_postgres(conn):
        second: sa.ColumnElement[Any] = sa.func.floor(sa.extract("epoch", history.c.at))
    else:
        second = sa.cast(sa.func.strftime("%s", history.c.at), sa.Integer)
    query = (
        sa.select(second.label("second"), history.c.state, sa.func.count())
        .where(history.c.state.in_(OUTCOMES), history.c.at >= since)
        .group_by(second, history.c.state)
    )
    return {(int(s), str(state)): int(n) for s, state, n in await conn.execute(query)}


async def continuations(conn: AsyncConnection, parent_id: uuid.UUID) -> list[Row]:
    """Jobs created to run after ``parent_id`` (partial index ``ix_jobs_parent``)."""
    query = (
        sa.select(jobs.c.id, jobs.c.name, jobs.c.state, jobs.c.continue_on)
        .where(jobs.c.parent_id == parent_id)
        .order_by(jobs.c.created_at, jobs.c.id)
        .limit(200)
    )
    return list((await conn.execute(query)).all())


async def failed_ids(conn: AsyncConnection, limit: int) -> list[uuid.UUID]:
    """The oldest Failed jobs first, up to ``limit``."""
    query = (
        sa.select(jobs.c.id)
        .where(jobs.c.state == State.FAILED.value)
        .order_by(jobs.c.created_at, jobs.c.id)
        .limit(limit)
    )
    return list((await conn.execute(query)).scalars())


async def linked_job(conn: AsyncConnection, job_id: uuid.UUID) -> Row | None:
    """Id, name and state of a job a page links to (a parent, a batch's continuation), or None
    when it is gone."""
    query = sa.select(jobs.c.id, jobs.c.name, jobs.c.state).where(jobs.c.id == job_id)
    return (await conn.execute(query)).first()


async def existing_jobs(conn: AsyncConnection, ids: Iterable[uuid.UUID]) -> set[uuid.UUID]:
    """Which of ``ids`` name a job that still exists (one primary-key lookup per page)."""
    query = sa.select(jobs.c.id).where(jobs.c.id.in_(set(ids)))
    return set((await conn.execute(query)).scalars())
