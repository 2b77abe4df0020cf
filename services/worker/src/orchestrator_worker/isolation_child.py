"""Process mode, the child's side: what runs in a job's own process (:mod:`.isolation` starts,
supervises and kills it), and what the two sides send each other.

The worker sends names and JSON only (:class:`Request`); the child imports the job's module,
finds the job by its registered name, runs it once and answers ``("started", None)``, then
``("ok", result)`` or ``("error", (type, message, traceback, pickled exception))``. On the pipe
from the worker, :data:`CANCEL` sets ``ctx.cancelled`` and :data:`SHUTDOWN` sets
``ctx.shutting_down``; if the pipe closes (the worker died) the child sets both and exits
``grace`` seconds later.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import pickle
import threading
import time
import uuid
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

from opentelemetry import context as otel_context

from orchestrator import logs, tracing
from orchestrator.catalog import validate_with_model
from orchestrator.jobs import JobContext, JobFunction
from orchestrator.logs import LogFormat
from orchestrator_worker.tracebacks import user_first

#: The messages of the worker-to-child pipe.
CANCEL = "cancel"
SHUTDOWN = "shutdown"


@dataclass(frozen=True)
class Request:
    """What the child needs to run the job: names and JSON only."""

    module: str
    name: str
    args: list[Any]
    kwargs: dict[str, Any]
    job_id: str
    attempt: int
    grace: float
    #: The run span's W3C headers and the worker's log level and format: the child's log lines
    #: name the job and its trace like the worker's own.
    trace: dict[str, str] = field(default_factory=dict)
    logging: tuple[str, LogFormat] | None = None


def child_main(request: Request, cancel_in: Connection, answer_out: Connection) -> None:
    """The child's entry point: run the job once and send back its answer."""
    _adopt_context(request)
    context = JobContext(uuid.UUID(request.job_id), request.attempt)
    listener = threading.Thread(
        target=_listen, args=(cancel_in, context, request.grace), daemon=True
    )
    listener.start()
    try:
        function = _find(request.module, request.name)
        arguments = validate_with_model(function, request.args, request.kwargs)
        answer_out.send(("started", None))
        answer: tuple[str, Any] = ("ok", _jsonable(function.invoke(arguments, context)))
    except BaseException as exc:
        answer = ("error", _describe(exc))
    answer_out.send(answer)


def _adopt_context(request: Request) -> None:
    """Log as the worker does, with the job and the run span's trace on every line."""
    if request.logging is not None:
        logs.configure(*request.logging)
    otel_context.attach(tracing.context_from(request.trace))
    logs.name_job(request.job_id, request.name)


def _listen(cancel_in: Connection, context: JobContext, grace: float) -> None:
    while True:
        try:
            message = cancel_in.recv()
        except (EOFError, OSError):
            # The worker is gone: nobody will record this run, and after its lease expires
            # another worker runs the job again. Stop, at the latest after the grace period.
            context.shutting_down.set()
            context.cancelled.set()
            time.sleep(grace)
            os._exit(70)
        (context.shutting_down if message == SHUTDOWN else context.cancelled).set()


def _find(module_name: str, name: str) -> JobFunction[Any, Any]:
    module = importlib.import_module(module_name)
    for value in vars(module).values():
        if isinstance(value, JobFunction) and value.name == name:
            return value
    raise LookupError(f"job {name!r} is not defined at the top level of module {module_name!r}")


def _jsonable(value: Any) -> Any:
    from pydantic_core import PydanticSerializationError, to_jsonable_python

    try:
        return to_jsonable_python(value)
    except PydanticSerializationError as exc:
        raise TypeError(f"the job's return value cannot be stored: {exc}") from None


def _describe(exc: BaseException) -> tuple[str, str, str, bytes | None]:
    kind = type(exc)
    pickled: bytes | None = None
    with contextlib.suppress(Exception):
        pickled = pickle.dumps(exc)
    return (
        f"{kind.__module__}.{kind.__qualname__}",
        str(exc)[:4000],
        user_first(exc),
        pickled,
    )
