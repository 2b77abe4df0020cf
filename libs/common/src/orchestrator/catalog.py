"""The job catalog: which jobs exist, their parameter schemas, and argument validation.

Workers import the job modules an operator configured and register what they found in the store;
the API validates requests against those stored JSON Schemas. Nothing ever imports a name that a
request supplies.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import jsonschema
import pydantic
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from orchestrator.db import insert_for
from orchestrator.errors import JobValidationError, UnknownJobError
from orchestrator.jobs import JobFunction
from orchestrator.models import JobRegistration

_registrations = JobRegistration.__table__  # type: ignore[attr-defined]


@dataclass(frozen=True)
class Registration:
    """A job as the catalog knows it: data only, no code."""

    name: str
    queue: str
    parameters: list[str]
    json_schema: dict[str, Any]
    schema_hash: str
    options: dict[str, Any]

    @classmethod
    def of(cls, function: JobFunction[Any, Any]) -> Registration:
        return cls(
            name=function.name,
            queue=function.spec.queue,
            parameters=function.parameter_names,
            json_schema=function.json_schema,
            schema_hash=function.schema_hash,
            options={"retries": function.spec.retries, "timeout": function.spec.timeout},
        )

    def public(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "queue": self.queue,
            "parameters": self.parameters,
            "schema": self.json_schema,
            "schema_hash": self.schema_hash,
            "options": self.options,
        }


class Catalog:
    """The jobs this process can run, by name."""

    def __init__(self, functions: Iterable[JobFunction[Any, Any]] = ()) -> None:
        self._functions: dict[str, JobFunction[Any, Any]] = {}
        for function in functions:
            self.add(function)

    @classmethod
    def from_modules(cls, module_names: Sequence[str]) -> Catalog:
        """Import the operator's job modules (``ORCHESTRATOR_JOBS``) and collect their jobs."""
        catalog = cls()
        for module_name in module_names:
            module = importlib.import_module(module_name)
            for value in vars(module).values():
                if isinstance(value, JobFunction):
                    catalog.add(value)
        return catalog

    def add(self, function: JobFunction[Any, Any]) -> None:
        existing = self._functions.get(function.name)
        if existing is not None and existing is not function:
            raise ValueError(f"two jobs are named {function.name!r}")
        self._functions[function.name] = function

    def get(self, name: str) -> JobFunction[Any, Any] | None:
        return self._functions.get(name)

    def __iter__(self) -> Any:
        return iter(self._functions.values())

    def __len__(self) -> int:
        return len(self._functions)

    def registrations(self) -> list[Registration]:
        return [Registration.of(function) for function in self._functions.values()]


def arguments_payload(
    parameters: Sequence[str], args: Sequence[Any], kwargs: Mapping[str, Any], job_name: str
) -> dict[str, Any]:
    """Map positional and keyword arguments onto parameter names, as a call would."""
    if len(args) > len(parameters):
        raise JobValidationError(
            f"job {job_name!r} takes {len(parameters)} argument(s) but {len(args)} were given",
            field="args",
        )
    payload = dict(zip(parameters, args, strict=False))
    for key, value in kwargs.items():
        if key in payload:
            raise JobValidationError(
                f"job {job_name!r}: argument {key!r} given both by position and by name",
                field=key,
            )
        payload[key] = value
    return payload


_FORMATS = jsonschema.Draft202012Validator.FORMAT_CHECKER
# JSON Schema counts 1.0 as an integer; the worker's strict pydantic model does not, so neither
# does the API: an "integer" must arrive as a JSON number without a fraction or exponent.
_Validator = jsonschema.validators.extend(
    jsonschema.Draft202012Validator,
    type_checker=jsonschema.Draft202012Validator.TYPE_CHECKER.redefine(
        "integer", lambda _, value: isinstance(value, int) and not isinstance(value, bool)
    ),
)
_validators: dict[str, Any] = {}


def validate_with_schema(
    registration: Registration, args: Sequence[Any], kwargs: Mapping[str, Any]
) -> None:
    """The API's check: arguments against the stored JSON Schema, formats included."""
    payload = arguments_payload(registration.parameters, args, kwargs, registration.name)
    validator = _validators.get(registration.schema_hash)
    if validator is None:
        validator = _Validator(registration.json_schema, format_checker=_FORMATS)
        _validators[registration.schema_hash] = validator
    error = jsonschema.exceptions.best_match(validator.iter_errors(payload))
    if error is None:
        return
    field = _error_field(error)
    where = f"argument {field!r}" if field else "arguments"
    raise JobValidationError(f"job {registration.name!r}: {where}: {error.message}", field=field)


def _error_field(error: jsonschema.ValidationError) -> str | None:
    # absolute_path: an error inside anyOf/oneOf (e.g. ``datetime | None``) has a relative path
    # that no longer names the argument.
    if error.absolute_path:
        return str(error.absolute_path[0])
    if error.validator == "required":
        missing = [name for name in error.validator_value if name not in error.instance]
        return missing[0] if missing else None
    if error.validator == "additionalProperties":
        extra = [name for name in error.instance if name not in error.schema.get("properties", {})]
        return extra[0] if extra else None
    return None


def validate_with_model(
    function: JobFunction[Any, Any], args: Sequence[Any], kwargs: Mapping[str, Any]
) -> pydantic.BaseModel:
    """The worker's check: a strict pydantic model built from the same type hints."""
    payload = arguments_payload(function.parameter_names, args, kwargs, function.name)
    try:
        return function.model.model_validate_json(json.dumps(payload))
    except pydantic.ValidationError as exc:
        first = exc.errors()[0]
        location = first.get("loc") or ()
        field = str(location[0]) if location else None
        where = f"argument {field!r}" if field else "arguments"
        raise JobValidationError(
            f"job {function.name!r}: {where}: {first.get('msg')}", field=field
        ) from None


async def register(
    conn: AsyncConnection, registrations: Sequence[Registration], now: datetime
) -> None:
    """Record (or refresh) what a worker can run; the newest registration of a name wins."""
    insert_fn = insert_for(conn)
    for reg in registrations:
        stmt = insert_fn(_registrations).values(
            name=reg.name,
            schema_hash=reg.schema_hash,
            queue=reg.queue,
            parameters=reg.parameters,
            json_schema=reg.json_schema,
            options=reg.options,
            registered_at=now,
        )
        await conn.execute(
            stmt.on_conflict_do_update(
                index_elements=["name", "schema_hash"], set_={"registered_at": now}
            )
        )


async def load_registrations(conn: AsyncConnection) -> dict[str, Registration]:
    """The newest stored registration of every job name."""
    rows = (
        await conn.execute(
            sa.select(_registrations).order_by(
                _registrations.c.name, _registrations.c.registered_at
            )
        )
    ).all()
    newest: dict[str, Registration] = {}
    for row in rows:
        newest[row.name] = Registration(
            name=row.name,
            queue=row.queue,
            parameters=list(row.parameters),
            json_schema=dict(row.json_schema),
            schema_hash=row.schema_hash,
            options=dict(row.options),
        )
    return newest


def require(registrations: Mapping[str, Registration], name: str) -> Registration:
    registration = registrations.get(name)
    if registration is None:
        raise UnknownJobError(name)
    return registration
