"""The store: table handles (:mod:`~orchestrator.store.tables`) and named queries, one module
per concern. Roles call these; state changes go through :mod:`orchestrator.transitions`, whose
SQL is :mod:`~orchestrator.store.moves`."""

from orchestrator.store.jobs import (
    JobFilter,
    NewJob,
    create_jobs,
    create_plain_jobs,
    decode_cursor,
    encode_cursor,
    find_by_idempotency_keys,
    get_history,
    get_job,
    known_queues,
    list_jobs,
    list_servers,
    processing_by_queue,
    resolve_timing,
    state_counts,
)
from orchestrator.store.tables import JOB_LIST_COLUMNS as LIST_COLUMNS
from orchestrator.store.tables import history as history_table
from orchestrator.store.tables import jobs as jobs_table
from orchestrator.store.tables import servers as servers_table

__all__ = [
    "LIST_COLUMNS",
    "JobFilter",
    "NewJob",
    "create_jobs",
    "create_plain_jobs",
    "decode_cursor",
    "encode_cursor",
    "find_by_idempotency_keys",
    "get_history",
    "get_job",
    "history_table",
    "jobs_table",
    "known_queues",
    "list_jobs",
    "list_servers",
    "processing_by_queue",
    "resolve_timing",
    "servers_table",
    "state_counts",
]
