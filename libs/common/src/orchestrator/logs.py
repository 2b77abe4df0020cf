"""Log records that say which job and which trace they belong to, as console lines or JSON.

While a worker runs a job, :func:`job_context` names it in a context variable; the
:class:`ContextFilter` on the root handler adds ``job_id``, ``job_name``, ``trace_id`` and
``span_id`` to every record, whichever logger wrote it (the job's own included). Context
variables follow the job into the thread a sync job runs in because the worker runs it with a
copy of its context. :func:`configure` is called once per process, by
``orchestrator.process.prepare_service``.
"""

from __future__ import annotations

import contextvars
import logging
import sys
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Literal

from opentelemetry import trace
from pythonjsonlogger.json import JsonFormatter

LogFormat = Literal["console", "json"]
#: The fields every record gets (None outside a job or a trace).
CONTEXT_FIELDS = ("job_id", "job_name", "trace_id", "span_id")


@dataclass(frozen=True)
class _Job:
    id: str
    name: str


_current_job: contextvars.ContextVar[_Job | None] = contextvars.ContextVar("job", default=None)


@contextmanager
def job_context(job_id: uuid.UUID | str, name: str) -> Iterator[None]:
    """Name the job for every record logged in this context (and in copies of it)."""
    token = name_job(job_id, name)
    try:
        yield
    finally:
        _current_job.reset(token)


def name_job(job_id: uuid.UUID | str, name: str) -> contextvars.Token[_Job | None]:
    """Name the job from here on (a process that runs one job and exits needs no reset)."""
    return _current_job.set(_Job(str(job_id), name))


#: Longest message, and longest exception text, of one log record (a job may log, or raise
#: with, megabytes; a log line that long breaks collectors and fills disks).
MESSAGE_MAX_CHARS = 16_000


def _bounded(text: str, keep: str = "head") -> str:
    if len(text) <= MESSAGE_MAX_CHARS:
        return text
    cut = f"…({len(text) - MESSAGE_MAX_CHARS} characters cut)"
    if keep == "tail":
        return cut + text[-MESSAGE_MAX_CHARS:]
    return text[:MESSAGE_MAX_CHARS] + cut


class ContextFilter(logging.Filter):
    """Adds the running job and the active span's ids to each record (it never drops one), and
    bounds its message to :data:`MESSAGE_MAX_CHARS`."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if len(message) > MESSAGE_MAX_CHARS:
            record.msg, record.args = _bounded(message), None
        job = _current_job.get()
        record.job_id = job.id if job else None
        record.job_name = job.name if job else None
        span_context = trace.get_current_span().get_span_context()
        valid = span_context.is_valid
        record.trace_id = f"{span_context.trace_id:032x}" if valid else None
        record.span_id = f"{span_context.span_id:016x}" if valid else None
        return True


class _BoundedExceptions:
    """Exception text (a traceback quoting a huge message) cut to its last lines."""

    def formatException(self, ei: Any) -> str:  # noqa: N802 - logging's name
        return _bounded(super().formatException(ei), keep="tail")  # type: ignore[misc]


class ConsoleFormatter(_BoundedExceptions, logging.Formatter):
    """``time LEVEL logger [job=… id=… trace=…] message``; the bracket only inside a job or span."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s%(context)s %(message)s")

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 - logging's name
        parts = []
        job_name, job_id = getattr(record, "job_name", None), getattr(record, "job_id", None)
        if job_id is not None:
            parts.append(f"job={job_name} id={job_id}")
        trace_id = getattr(record, "trace_id", None)
        if trace_id is not None:
            parts.append(f"trace={trace_id}")
        record.context = f" [{' '.join(parts)}]" if parts else ""
        return super().formatMessage(record)


def json_formatter() -> logging.Formatter:
    """One JSON object a line: time, level, logger, message, the context fields, and the
    exception when there is one."""
    return _BoundedJsonFormatter(
        "%(levelname)s %(name)s %(message)s",
        rename_fields={"levelname": "level", "name": "logger"},
        timestamp="time",  # ISO 8601, UTC
        defaults=dict.fromkeys(CONTEXT_FIELDS),
    )


class _BoundedJsonFormatter(_BoundedExceptions, JsonFormatter):
    pass


def handler(log_format: LogFormat, stream: object = None) -> logging.Handler:
    """A stream handler (stderr by default) with the context filter and the chosen format."""
    made = logging.StreamHandler(stream or sys.stderr)  # type: ignore[arg-type]
    made.addFilter(ContextFilter())
    made.setFormatter(json_formatter() if log_format == "json" else ConsoleFormatter())
    return made


#: Paths that load balancers, Kubernetes and Prometheus poll every few seconds.
PROBE_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})


class ProbeAccessFilter(logging.Filter):
    """Drops uvicorn's access lines for probe paths, which would drown every other request."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) >= 3 and isinstance(args[2], str):
            return args[2].split("?", 1)[0] not in PROBE_PATHS
        return True


def _filter_probe_access(log_probes: bool) -> None:
    access = logging.getLogger("uvicorn.access")
    for installed in [f for f in access.filters if isinstance(f, ProbeAccessFilter)]:
        access.removeFilter(installed)
    if not log_probes:
        access.addFilter(ProbeAccessFilter())


def configure(level: str, log_format: LogFormat, *, log_probes: bool = False) -> None:
    """The root logger's one handler, replacing any set up before (``logging.basicConfig``);
    errors Python would print itself go through it too, so JSON output stays JSON."""
    global _configured
    _configured = (level, log_format)
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    root.addHandler(handler(log_format))
    root.setLevel(level.upper())
    _filter_probe_access(log_probes)
    # Warnings too (e.g. a library's never-awaited coroutine found at exit), as ``py.warnings``.
    logging.captureWarnings(True)
    sys.excepthook = _log_uncaught
    threading.excepthook = _log_uncaught_in_thread
    sys.unraisablehook = _log_unraisable


def configuration() -> tuple[str, LogFormat] | None:
    """The level and format :func:`configure` set in this process (None: not called), for a child
    process that must log the same way."""
    return _configured


_configured: tuple[str, LogFormat] | None = None
_python = logging.getLogger("python")


def _log_uncaught(
    kind: type[BaseException], value: BaseException, tb: TracebackType | None
) -> None:
    _python.critical("uncaught exception", exc_info=(kind, value, tb))


def _log_uncaught_in_thread(args: threading.ExceptHookArgs) -> None:
    if args.exc_value is not None:
        exc_info = (args.exc_type, args.exc_value, args.exc_traceback)
        _python.error("uncaught exception in thread %s", args.thread, exc_info=exc_info)


def _log_unraisable(unraisable: Any) -> None:
    # Finalizers and ``__del__`` failures, often at shutdown.
    value = unraisable.exc_value
    exc_info = (unraisable.exc_type, value, unraisable.exc_traceback) if value else None
    message = unraisable.err_msg or "Exception ignored in"
    _python.warning("%s: %r", message, unraisable.object, exc_info=exc_info)
