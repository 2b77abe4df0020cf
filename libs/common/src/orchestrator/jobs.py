"""Declaring jobs: the ``@job`` decorator, a bound call (``JobCall``) and the ``JobContext``."""

from __future__ import annotations

import functools
import hashlib
import inspect
import json
import threading
import typing
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Generic, ParamSpec, TypeVar, overload

import pydantic
from pydantic_core import to_jsonable_python

from orchestrator.errors import JobValidationError
from orchestrator.settings import QUEUE_NAME_PATTERN

P = ParamSpec("P")
R = TypeVar("R")

DEFAULT_RETRIES = 10


@dataclass
class JobContext:
    """What a running job may know about itself; injected into a parameter annotated with it."""

    job_id: uuid.UUID
    attempt: int
    #: Set when the job is deleted or its worker shuts down; behaves like ``threading.Event``.
    cancelled: threading.Event = field(default_factory=threading.Event)


@dataclass(frozen=True)
class JobCall:
    """A job name with its JSON-ready arguments: what one enqueue asks to run."""

    name: str
    args: list[Any] = field(default_factory=list)
    kwargs: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def named(cls, name: str, /, *args: Any, **kwargs: Any) -> JobCall:
        """A call of a job known only by name (e.g. one defined in another code base)."""
        return cls(name, to_jsonable_python(list(args)), to_jsonable_python(kwargs))


@dataclass(frozen=True)
class JobSpec:
    """Options declared with ``@job``."""

    name: str
    queue: str = "default"
    retries: int = DEFAULT_RETRIES
    timeout: float | None = None


class JobFunction(Generic[P, R]):
    """A function declared as a job. Calling it runs it directly; ``.call()`` binds arguments."""

    def __init__(self, fn: Callable[P, R], spec: JobSpec) -> None:
        functools.update_wrapper(self, fn)
        self.fn = fn
        self.spec = spec
        self.is_async = inspect.iscoroutinefunction(fn)
        self.signature = inspect.signature(fn)
        hints = typing.get_type_hints(fn)
        self.context_parameter = _context_parameter(self.signature, hints)
        self.parameters = [
            p for p in self.signature.parameters.values() if p.name != self.context_parameter
        ]
        _reject_variadic(spec.name, self.parameters)
        self.model = _arguments_model(spec.name, self.parameters, hints)
        self.json_schema = self.model.model_json_schema()
        self.parameter_names = [p.name for p in self.parameters]
        self.schema_hash = schema_hash(self.parameter_names, self.json_schema)

    @property
    def name(self) -> str:
        return self.spec.name

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        return self.fn(*args, **kwargs)

    def call(self, *args: Any, **kwargs: Any) -> JobCall:
        """Bind arguments for an enqueue; a call that does not fit the signature fails here."""
        try:
            self.signature.replace(parameters=self.parameters).bind(*args, **kwargs)
        except TypeError as exc:
            raise JobValidationError(f"job {self.name!r}: {exc}") from None
        return JobCall(self.name, to_jsonable_python(list(args)), to_jsonable_python(kwargs))

    def invoke(self, arguments: pydantic.BaseModel, context: JobContext) -> R | Awaitable[R]:
        """Run with arguments already validated by :meth:`model`, injecting ``context``."""
        positional: list[Any] = []
        keywords: dict[str, Any] = {}
        for parameter in self.parameters:
            value = getattr(arguments, parameter.name)
            if parameter.kind is inspect.Parameter.POSITIONAL_ONLY:
                positional.append(value)
            else:
                keywords[parameter.name] = value
        if self.context_parameter is not None:
            keywords[self.context_parameter] = context
        return self.fn(*positional, **keywords)  # type: ignore[arg-type]  # ParamSpec erased


@overload
def job(fn: Callable[P, R], /) -> JobFunction[P, R]: ...


@overload
def job(
    *,
    name: str | None = None,
    queue: str = "default",
    retries: int = DEFAULT_RETRIES,
    timeout: float | None = None,
) -> Callable[[Callable[P, R]], JobFunction[P, R]]: ...


def job(
    fn: Callable[P, R] | None = None,
    /,
    *,
    name: str | None = None,
    queue: str = "default",
    retries: int = DEFAULT_RETRIES,
    timeout: float | None = None,
) -> JobFunction[P, R] | Callable[[Callable[P, R]], JobFunction[P, R]]:
    """Declare a sync or async function as a job; the default name is ``"<module>.<function>"``."""
    if not QUEUE_NAME_PATTERN.match(queue):
        raise ValueError(f"invalid queue name {queue!r}")
    if retries < 0:
        raise ValueError("retries must be 0 or more")
    if timeout is not None and timeout <= 0:
        raise ValueError("timeout must be positive")

    def decorate(target: Callable[P, R]) -> JobFunction[P, R]:
        job_name = name or f"{target.__module__}.{target.__qualname__}"
        return JobFunction(target, JobSpec(job_name, queue, retries, timeout))

    return decorate(fn) if fn is not None else decorate


def schema_hash(parameters: list[str], json_schema: dict[str, Any]) -> str:
    canonical = json.dumps({"parameters": parameters, "schema": json_schema}, sort_keys=True)
    return hashlib.sha256(canonical.encode()).hexdigest()


def _context_parameter(signature: inspect.Signature, hints: dict[str, Any]) -> str | None:
    for parameter in signature.parameters.values():
        if hints.get(parameter.name) is JobContext:
            return parameter.name
    return None


def _reject_variadic(name: str, parameters: list[inspect.Parameter]) -> None:
    for parameter in parameters:
        if parameter.kind in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD):
            raise TypeError(
                f"job {name!r}: *{parameter.name} parameters cannot be described by a schema"
            )


def _arguments_model(
    name: str, parameters: list[inspect.Parameter], hints: dict[str, Any]
) -> type[pydantic.BaseModel]:
    fields: dict[str, Any] = {}
    for parameter in parameters:
        annotation = hints.get(parameter.name, Any)
        default = ... if parameter.default is inspect.Parameter.empty else parameter.default
        fields[parameter.name] = (annotation, default)
    model_name = "".join(part.capitalize() for part in name.replace(".", "_").split("_")) or "Job"
    return pydantic.create_model(  # type: ignore[no-any-return, call-overload]
        f"{model_name}Arguments",
        __config__=pydantic.ConfigDict(strict=True, extra="forbid"),
        **fields,
    )
