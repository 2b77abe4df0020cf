"""Every Prometheus metric the services expose, in one place (the contract in docs/metrics.md).

Labels never carry job ids; ``job_name`` is a catalog name, so its cardinality is the catalog's
size. (Not ``job``: Prometheus gives every scraped series the target's ``job`` label and would
rename ours ``exported_job``.)
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
_DURATION_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 3600)
# Promotion is normally milliseconds late; seconds mean a takeover or an overloaded store, and
# minutes a retry whose message was lost (re-promoted after the retry grace) or an outage.
_LATENESS_BUCKETS = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 15, 60, 300, 3600
)  # fmt: skip

JOBS_ENQUEUED = Counter(
    "orchestrator_jobs_enqueued_total", "Jobs accepted by the API.", ["queue", "job_name", "state"]
)
JOBS_STARTED = Counter(
    "orchestrator_jobs_started_total", "Jobs claimed and started.", ["queue", "job_name"]
)
JOBS_SUCCEEDED = Counter(
    "orchestrator_jobs_succeeded_total", "Executions recorded as Succeeded.", ["queue", "job_name"]
)
JOBS_FAILED = Counter(
    "orchestrator_jobs_failed_total", "Executions that raised or timed out.", ["queue", "job_name"]
)
JOBS_DELETED = Counter(
    "orchestrator_jobs_deleted_total", "Jobs deleted through the API.", ["queue", "job_name"]
)
JOBS_RETRIED = Counter(
    "orchestrator_jobs_retried_total",
    "Failed executions scheduled to run again (each is also counted as failed).",
    ["queue", "job_name"],
)
JOBS_REQUEUED = Counter("orchestrator_jobs_requeued_total", "Jobs requeued by a person.", ["queue"])
#: Counted by the state machine's built-in applied hook, after commit, in whichever process moved.
STATE_CHANGES = Counter(
    "orchestrator_state_changes_total", "Jobs that entered a state, any cause.", ["state"]
)
CLAIMS_LOST = Counter(
    "orchestrator_claims_lost_total",
    "Deliveries dropped because their job was not claimable (duplicate or stale message).",
    ["queue"],
)
#: ``reason``: ``republished`` (no slot was free: the job's message was sent again through the
#: outbox and the delivery acked; not counted towards the delivery limit), ``channel_lost``
#: (its channel closed before the worker settled it, so RabbitMQ requeued it, counted) or
#: ``unsettled_at_close`` (still unsettled when the worker closed its connection: RabbitMQ
#: requeues it, counted).
#: Every ``reason`` of DELIVERIES_RETURNED (docs/metrics.md lists the same; the contract test
#: checks both and that the worker counts each).
RETURN_REASONS = ("republished", "channel_lost", "unsettled_at_close")
DELIVERIES_RETURNED = Counter(
    "orchestrator_deliveries_returned_total",
    "Deliveries a worker gave back to their queue, by path.",
    ["queue", "reason"],
)
JOBS_REPUBLISHED = Counter(
    "orchestrator_jobs_republished_total",
    "Enqueued jobs published again by the scheduler because their message was missing.",
    ["queue"],
)
OUTCOMES_QUARANTINED = Counter(
    "orchestrator_outcomes_quarantined_total",
    "Outcomes the store refused even as a failure; the job is left to its lease expiry.",
    ["queue", "job_name"],
)
JOB_DURATION = Histogram(
    "orchestrator_job_duration_seconds",
    "Execution time of a job.",
    ["queue", "job_name"],
    buckets=_DURATION_BUCKETS,
)
ENQUEUE_TO_START = Histogram(
    "orchestrator_enqueue_to_start_seconds",
    "Time from entering Enqueued to starting execution.",
    ["queue"],
    buckets=_LATENCY_BUCKETS,
)
JOBS_IN_FLIGHT = Gauge("orchestrator_jobs_in_flight", "Jobs this worker is running now.", ["queue"])
OUTBOX_PUBLISHED = Counter(
    "orchestrator_outbox_published_total", "Outbox entries confirmed by RabbitMQ.", ["path"]
)
OUTBOX_BACKLOG = Gauge(
    "orchestrator_outbox_backlog", "Outbox entries not yet confirmed (seen by the relay)."
)
HTTP_REQUESTS = Counter(
    "orchestrator_http_requests_total",
    "HTTP requests served by the API.",
    ["method", "route", "status"],
)
SCHEDULER_LATENESS = Histogram(
    "orchestrator_scheduler_lateness_seconds",
    "How long after its due time a job was promoted or a recurring run created.",
    ["kind"],
    buckets=_LATENESS_BUCKETS,
)
# The gauges below describe the whole system, so one process sets them: the scheduler holding
# the lease (orchestrator_scheduler.gauges); every other process leaves them empty.
QUEUE_DEPTH = Gauge(
    "orchestrator_queue_depth",
    "Ready messages in a job queue, as RabbitMQ reports them.",
    ["queue"],
)
QUEUE_CONSUMERS = Gauge(
    "orchestrator_queue_consumers", "Consumers of a job queue, as RabbitMQ reports them.", ["queue"]
)
SERVER_HEARTBEAT_AGE = Gauge(
    "orchestrator_server_heartbeat_age_seconds",
    "Seconds since a registered server's last heartbeat, by the store's clock.",
    ["role", "server"],
)
