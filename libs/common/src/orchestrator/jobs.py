"""Declaring jobs: the ``@job`` decorator, a bound call (``JobCall``) and the ``JobContext``."""

from __future__ import annotations

import functools
import hashlib
import inspect
import json
import threading
import types
import typing
import uuid
from collections import abc
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import TYPE_CHECKING, Annotated, Any, Generic, Literal, ParamSpec, TypeVar, overload

import pydantic
import typing_extensions
from pydantic_core import to_jsonable_python

from orchestrator.errors import JobValidationError
from orchestrator.retries import Backoff, ExceptionTypes, RetryPolicy, parse_backoff

if TYPE_CHECKING:
    import jsonschema
from orchestrator.names import QUEUE_NAME_PATTERN

P = ParamSpec("P")
R = TypeVar("R")

DEFAULT_RETRIES = 10
#: Where a sync job runs: a worker thread, or a child process killed at deadline plus grace.
Isolation = Literal["thread", "process"]


@dataclass
class JobContext:
    """What a running job may know about itself; injected into a parameter annotated with it."""

    job_id: uuid.UUID
    attempt: int
    #: Set when the job is deleted (or its lease was taken over) or its timeout has passed: stop
    #: now, nothing more of this run will be recorded. Behaves like ``threading.Event``.
    cancelled: threading.Event = field(default_factory=threading.Event)
    #: Set when the worker begins to shut down: finish within its grace period
    #: (``ORCHESTRATOR_WORKER_SHUTDOWN_GRACE_SECONDS``) or raise ``JobInterrupted`` to be run
    #: again later without spending a retry. Behaves like ``threading.Event``.
    shutting_down: threading.Event = field(default_factory=threading.Event)


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
    #: Delays and which failures to retry (see ``orchestrator.retries``).
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    #: Parameters whose values are shown as ``[redacted]`` (``orchestrator.redaction``).
    secret: frozenset[str] = frozenset()
    #: ``"process"``: run in a child process, killed at its deadline plus grace.
    isolation: Isolation = "thread"


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
        self.parameter_names = [p.name for p in self.parameters]
        self.json_schema = _mark_secret(spec.name, self.model.model_json_schema(), spec.secret)
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
        return self.fn(*positional, **keywords)


@overload
def job(fn: Callable[P, R], /) -> JobFunction[P, R]: ...


@overload
def job(
    *,
    name: str | None = None,
    queue: str = "default",
    retries: int = DEFAULT_RETRIES,
    timeout: float | None = None,
    isolation: Isolation = "thread",
    retry_delays: Sequence[float] | None = None,
    backoff: str | Backoff | None = None,
    retry_on: ExceptionTypes = (Exception,),
    no_retry_on: ExceptionTypes = (),
    secret: Sequence[str] = (),
) -> Callable[[Callable[P, R]], JobFunction[P, R]]: ...


def job(
    fn: Callable[P, R] | None = None,
    /,
    *,
    name: str | None = None,
    queue: str = "default",
    retries: int = DEFAULT_RETRIES,
    timeout: float | None = None,
    isolation: Isolation = "thread",
    retry_delays: Sequence[float] | None = None,
    backoff: str | Backoff | None = None,
    retry_on: ExceptionTypes = (Exception,),
    no_retry_on: ExceptionTypes = (),
    secret: Sequence[str] = (),
) -> JobFunction[P, R] | Callable[[Callable[P, R]], JobFunction[P, R]]:
    """Declare a sync or async function as a job; the default name is ``"<module>.<function>"``.

    ``retries`` re-runs are allowed after the first failure, ``retry_delays`` (seconds, the last
    repeating) or ``backoff`` space them (default: Hangfire's), and only failures of a
    ``retry_on`` type that is not a ``no_retry_on`` type are retried (``orchestrator.retries``).
    ``isolation="process"`` runs a sync job in a child process that is killed at its deadline
    plus ``ORCHESTRATOR_TIMEOUT_GRACE_SECONDS`` (its ``ctx.cancelled`` still works).
    ``secret`` names parameters whose values never appear in logs, traces or the dashboard.
    """
    if not QUEUE_NAME_PATTERN.match(queue):
        raise ValueError(f"invalid queue name {queue!r}")
    if retries < 0:
        raise ValueError("retries must be 0 or more")
    if timeout is not None and timeout <= 0:
        raise ValueError("timeout must be positive")
    if isolation not in ("thread", "process"):
        raise ValueError(f"isolation must be 'thread' or 'process', not {isolation!r}")
    if isinstance(secret, str):
        raise TypeError("secret takes a list of parameter names, not one string")

    policy = RetryPolicy(
        tuple(retry_delays) if retry_delays is not None else None,
        parse_backoff(backoff) if backoff is not None else None,
        tuple(retry_on),
        tuple(no_retry_on),
    )

    def decorate(target: Callable[P, R]) -> JobFunction[P, R]:
        job_name = name or f"{target.__module__}.{target.__qualname__}"
        if isolation == "process" and inspect.iscoroutinefunction(target):
            raise TypeError(f"job {job_name!r}: process isolation is for sync functions")
        spec = JobSpec(
            job_name, queue, retries, timeout, policy, frozenset(secret), isolation=isolation
        )
        return JobFunction(target, spec)

    return decorate(fn) if fn is not None else decorate


def schema_hash(parameters: list[str], json_schema: dict[str, Any]) -> str:
    canonical = json.dumps({"parameters": parameters, "schema": json_schema}, sort_keys=True)
    return hashlib.sha256(canonical.encode()).hexdigest()


def _mark_secret(name: str, json_schema: dict[str, Any], secret: frozenset[str]) -> dict[str, Any]:
    """The schema with ``"writeOnly": true`` on each secret parameter.

    The stored schema is all the API knows of a job (it never imports job code), so the marking
    travels in it: JSON Schema's own keyword for a value that is sent but never read back.
    """
    properties = json_schema.get("properties", {})
    unknown = sorted(secret - properties.keys())
    if unknown:
        raise TypeError(f"job {name!r}: secret names no parameter: {', '.join(unknown)}")
    for parameter in secret:
        properties[parameter] = {**properties[parameter], "writeOnly": True}
    return json_schema


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
        annotation = _as_strict_as_schema(hints.get(parameter.name, Any))
        default = ... if parameter.default is inspect.Parameter.empty else parameter.default
        fields[parameter.name] = (annotation, default)
    model_name = "".join(part.capitalize() for part in name.replace(".", "_").split("_")) or "Job"
    return pydantic.create_model(
        f"{model_name}Arguments",
        __config__=pydantic.ConfigDict(strict=True, extra="forbid"),
        **fields,
    )


# The API checks arguments against the JSON Schema (formats included); the worker's pydantic model
# must be exactly as strict. Pydantic parses some formats leniently (naive or space-separated
# datetimes, UUIDs without dashes, "HH:MM:SS" durations), lets set duplicates collapse, and applies
# a nested model's own (lax) config. So format-bearing leaves are checked by the very format checker
# the API uses, sets reject duplicates, and nested models are made strict. No JSON Schema changes.
_FORMATS: dict[Any, str] = {
    datetime: "date-time",
    date: "date",
    time: "time",
    timedelta: "duration",
    uuid.UUID: "uuid",
}
_UNIONS = (typing.Union, types.UnionType)
_GENERICS = (list, tuple, dict, abc.Sequence, abc.Mapping, *_UNIONS)
_SETS = (set, frozenset, abc.Set)


@functools.cache
def _format_checker() -> jsonschema.FormatChecker:
    # Imported when an argument is first checked: a process that only enqueues or defines
    # jobs never pays for jsonschema.
    import jsonschema

    return jsonschema.Draft202012Validator.FORMAT_CHECKER


def _format_check(kind: type, fmt: str) -> pydantic.BeforeValidator:
    def check(value: Any) -> Any:
        if isinstance(value, kind):
            return value
        if not isinstance(value, str) or not _format_checker().conforms(value, fmt):
            # Never the value itself: the message is stored as the job's error, and the
            # argument may be secret.
            raise ValueError(f"is not a valid {fmt!r} string")
        return value  # parsed by the (then lax) inner type; the format is already certain

    return pydantic.BeforeValidator(check)


class _UniqueItems:
    """A list that must hold distinct items and becomes a set: JSON Schema's ``uniqueItems``."""

    def __init__(self, kind: type) -> None:
        self.kind = kind

    def __get_pydantic_json_schema__(self, core: Any, handler: Any) -> Any:
        return {**handler(core), "uniqueItems": True}

    def __call__(self, items: list[Any]) -> Any:
        distinct = {json.dumps(to_jsonable_python(item), sort_keys=True) for item in items}
        if len(distinct) < len(items):
            raise ValueError("items are not unique")
        return self.kind(items)


def _as_strict_as_schema(annotation: Any) -> Any:
    """``annotation`` with every part checked exactly as the JSON Schema checks it."""
    if annotation in _FORMATS:
        fmt = _FORMATS[annotation]
        return Annotated[annotation, pydantic.Strict(False), _format_check(annotation, fmt)]
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is Annotated:
        return Annotated[(_as_strict_as_schema(args[0]), *annotation.__metadata__)]
    if origin in _SETS:
        unique = _UniqueItems(frozenset if origin is frozenset else set)
        items = _as_strict_as_schema(args[0])
        return Annotated[list[items], pydantic.AfterValidator(unique), unique]  # type: ignore[valid-type]
    if origin in _GENERICS:
        strict = tuple(a if a is Ellipsis else _as_strict_as_schema(a) for a in args)
        return typing.Union[strict] if origin in _UNIONS else origin[strict]  # noqa: UP007
    if isinstance(annotation, type) and issubclass(annotation, pydantic.BaseModel):
        return _strict_model(annotation)
    if typing_extensions.is_typeddict(annotation):
        return _strict_typeddict(annotation)
    return annotation


_strict_models: dict[type[pydantic.BaseModel], type[pydantic.BaseModel]] = {}


def _strict_model(model: type[pydantic.BaseModel]) -> type[pydantic.BaseModel]:
    """A same-named strict subclass of a nested model (a model's own config would apply)."""
    if model in _strict_models:
        return _strict_models[model]
    _strict_models[model] = model  # a recursive reference keeps the model as it is
    fields = model.model_fields
    annotations = {name: _as_strict_as_schema(f.annotation) for name, f in fields.items()}
    namespace = {
        "__module__": model.__module__,
        "__qualname__": model.__qualname__,
        "__doc__": model.__doc__,
        "__annotations__": annotations,
        "model_config": {**model.model_config, "strict": True},
        **fields,
    }
    strict: type[pydantic.BaseModel] = type(model.__name__, (model,), namespace)
    _strict_models[model] = strict
    return strict


def _strict_typeddict(td: Any) -> Any:
    """A TypedDict (it takes the job model's strict config) with its format leaves checked."""
    hints = typing.get_type_hints(td, include_extras=True)
    strict = {name: _as_strict_as_schema(hint) for name, hint in hints.items()}
    if strict == hints:
        return td
    fields = {
        name: typing_extensions.Required[hint]
        if name in td.__required_keys__
        else typing_extensions.NotRequired[hint]
        for name, hint in strict.items()
    }
    make_typeddict: Any = typing_extensions.TypedDict  # the functional form, with a computed name
    rebuilt = make_typeddict(td.__name__, fields)
    rebuilt.__module__ = td.__module__
    return rebuilt
