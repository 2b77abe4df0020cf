"""The API's JSON view of a job and of its history rows: ``GET /api/v1/jobs`` and the job read
answer with it, the dashboard's job page shows it, and :class:`orchestrator.testing.InlineClient`
answers as the API does (so it lives in the library, outside the store: no SQL, rows in)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from orchestrator import outcomes
from orchestrator.lifecycle import State

if TYPE_CHECKING:  # rows come from the store's reads
    from orchestrator.store.tables import Row


def public_job(
    row: Row,
    history: Sequence[Row] | None = None,
    *,
    max_result_bytes: int = 1024 * 1024,
) -> dict[str, Any]:
    """The job as the HTTP API shows it. Every stored value goes through
    :func:`orchestrator.outcomes.showable` (an older version may have stored what JSON cannot
    write); a row read without its result (a list) shows none.

    ``error`` is the latest failed attempt's exception, and null once the job has Succeeded
    (older versions kept it in the row); each history entry shows the exception of the failed
    attempt that wrote it in its own ``error``."""
    show = outcomes.showable
    args, kwargs = outcomes.showable_arguments(row.args, row.kwargs)
    error = None
    if row.error_type is not None and row.state != State.SUCCEEDED:
        error = {
            "type": show(row.error_type),
            "message": show(row.error_message),
            "traceback": show(row.error_traceback),
        }
    view: dict[str, Any] = {
        "id": str(row.id),
        "job": row.name,
        "args": args,
        "kwargs": kwargs,
        "queue": row.queue,
        "state": row.state,
        "attempt": row.attempt,
        "retries": row.retries,
    }
    if "result" in row._fields:
        view["result"] = outcomes.showable_result(row.result, max_result_bytes)
    view |= {
        "error": error,
        "created_at": row.created_at.isoformat(),
        "state_changed_at": row.state_changed_at.isoformat(),
        "due_at": row.due_at.isoformat() if row.due_at else None,
        "expires_at": row.expires_at.isoformat() if row.expires_at else None,
        "parent_id": str(row.parent_id) if row.parent_id else None,
        "batch_id": str(row.batch_id) if row.batch_id else None,
        "recurring_id": row.recurring_id,
    }
    if history is not None:
        # A sync job past its timeout plus grace that still runs (see the worker's overruns).
        last = (history[-1].data or {}) if history and row.state == State.PROCESSING else {}
        view["overrunning_since"] = show(last.get("overrunning_since"))
        view["history"] = [history_entry(h) for h in history]
    return view


def history_entry(row: Row) -> dict[str, Any]:
    """A history row as shown: its ``data`` (showable) without the failed attempt's exception,
    which is its own ``error`` (type, message, traceback; null for a row without one)."""
    data = outcomes.showable(row.data)
    error = None
    if isinstance(data, dict) and "error" in data:
        error = data.pop("error")
        data = data or None
    return {
        "state": row.state,
        "at": row.at.isoformat(),
        "reason": outcomes.showable(row.reason),
        "data": data,
        "error": error,
    }
