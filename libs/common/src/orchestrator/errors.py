"""Errors shared across services; each names the problem in words a user can act on."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # re-exported; loaded on first use (__getattr__ below)
    from orchestrator.client_errors import ApiConnectTimeoutError as ApiConnectTimeoutError
    from orchestrator.client_errors import ApiUnavailableError as ApiUnavailableError


class OrchestratorError(Exception):
    """Base class of every error this package raises on purpose."""


class IllegalTransitionError(OrchestratorError):
    """A state change the state machine's table does not allow."""

    def __init__(self, source: Any, target: Any) -> None:
        super().__init__(f"a job cannot move from {source} to {target}")
        self.source = source
        self.target = target


class JobValidationError(OrchestratorError):
    """Arguments or options that do not fit the job (HTTP 422)."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class UnknownJobError(JobValidationError):
    """A job name that is not in the catalog."""

    def __init__(self, name: str) -> None:
        super().__init__(f"unknown job {name!r}: it is not in the catalog", field="job")
        self.name = name


class UnknownQueueError(JobValidationError):
    """A queue no catalog job uses and the operator did not list (``ORCHESTRATOR_QUEUES``)."""

    def __init__(self, queue: str, known: set[str] | frozenset[str]) -> None:
        names = ", ".join(sorted(known)) or "none"
        super().__init__(
            f"unknown queue {queue!r}: known queues are {names} (the catalog's jobs' queues and "
            "ORCHESTRATOR_QUEUES)",
            field="queue",
        )
        self.queue = queue


class JobNotFoundError(OrchestratorError):
    """No job with that id (HTTP 404)."""


class ConflictError(OrchestratorError):
    """The job's state or an idempotency key forbids the request (HTTP 409)."""


class JobFailedError(OrchestratorError):
    """Raised by ``Client.wait`` when the job ended ``Failed`` or ``Deleted``."""

    def __init__(self, job: dict[str, Any]) -> None:
        error = job.get("error") or {}
        detail = f": {error.get('type')}: {error.get('message')}" if error else ""
        super().__init__(f"job {job.get('id')} ended {job.get('state')}{detail}")
        self.job = job


class ApiError(OrchestratorError):
    """An error answer of the HTTP API, parsed from its ``{"error": {"code", "message"}}`` body."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"HTTP {status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message


class BrokerUnavailableError(OrchestratorError):
    """RabbitMQ could not be reached."""


class JobTimeoutError(OrchestratorError):
    """A job ran past its timeout: an ordinary failure, retried under the job's retry policy."""


class JobRefusedError(JobValidationError):
    """A client-side filter refused to create the job (HTTP 422); nothing was stored."""


class JobInterrupted(OrchestratorError):  # noqa: N818 - a signal to the worker, not a failure
    """Raised by a job to stop early and be run again later, typically when
    ``ctx.shutting_down`` is set: the worker hands it back to ``Enqueued`` without spending a
    retry and without counting a failure."""


#: Subclasses of httpx's errors (orchestrator.client_errors), so loaded on first use: ``import
#: orchestrator`` does not load httpx.
_HTTPX_ERRORS = ("ApiUnavailableError", "ApiConnectTimeoutError")


def __getattr__(name: str) -> Any:
    if name in _HTTPX_ERRORS:
        from orchestrator import client_errors

        return getattr(client_errors, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
