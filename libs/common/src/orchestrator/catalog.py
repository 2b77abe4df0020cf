"""The job catalog: which jobs exist, their parameter schemas, and argument validation.

Workers import the job modules an operator configured and register what they found in the store
(:mod:`orchestrator.store.registrations`); the API validates requests against those stored JSON
Schemas. Nothing ever imports a name that a request supplies.
"""

from __future__ import annotations

import functools
import importlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pydantic

from orchestrator.errors import JobValidationError, UnknownJobError
from orchestrator.jobs import JobFunction
from orchestrator.settings_errors import JobModuleError

if TYPE_CHECKING:
    import jsonschema


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
            try:
                module = importlib.import_module(module_name)
            except Exception as exc:
                # Whatever the module raised while importing, the operator's fix is the same:
                # the setting or the module's import path.
                raise JobModuleError(module_name, exc) from exc
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


@functools.cache
def _validator_class() -> Any:
    """Draft 2020-12 with the worker's idea of an integer, imported on first use: ``import
    jsonschema`` loads every format checker's package (isoduration, arrow, dateutil, attrs...),
    which a worker (it validates with pydantic) and a scheduler's start never need."""
    import jsonschema

    # JSON Schema counts 1.0 as an integer; the worker's strict pydantic model does not, so
    # neither does the API: an "integer" must arrive as a JSON number without a fraction or
    # exponent.
    return jsonschema.validators.extend(
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
    import jsonschema  # loaded by _validator_class below on the first call

    payload = arguments_payload(registration.parameters, args, kwargs, registration.name)
    validator = _validators.get(registration.schema_hash)
    if validator is None:
        checker = jsonschema.Draft202012Validator.FORMAT_CHECKER
        validator = _validator_class()(registration.json_schema, format_checker=checker)
        _validators[registration.schema_hash] = validator
    error = jsonschema.exceptions.best_match(validator.iter_errors(payload))
    if error is None:
        return
    field = _error_field(error)
    secret = field in secret_parameters(registration.json_schema)
    where = f"argument {field!r}" if field else "arguments"
    if not secret:
        where += _inner_path(error)
    raise JobValidationError(
        f"job {registration.name!r}: {where}: {_rule(error, secret)}", field=field
    )


def secret_parameters(json_schema: Mapping[str, Any]) -> frozenset[str]:
    """The parameter names a job's stored JSON Schema marks ``writeOnly`` (secret)."""
    properties = json_schema.get("properties")
    if not isinstance(properties, Mapping):
        return frozenset()
    return frozenset(
        name
        for name, schema in properties.items()
        if isinstance(schema, Mapping) and schema.get("writeOnly") is True
    )


def _inner_path(error: jsonschema.ValidationError) -> str:
    """Where inside the argument (``.items[3].name``), for a non-secret argument."""
    path = ""
    for item in list(error.absolute_path)[1:]:
        path += f"[{item}]" if isinstance(item, int) else f".{item}"
    return f" at {path}" if path else ""


# What each JSON Schema keyword asks, in words. jsonschema's own messages quote the value that
# broke the rule, and a value may be a secret argument: these name the rule, never the value.
_RULES: dict[str, str] = {
    "format": "must be a valid {!r} string",
    "enum": "must be one of {}",
    "const": "must be {}",
    "minimum": "must be at least {}",
    "maximum": "must be at most {}",
    "exclusiveMinimum": "must be more than {}",
    "exclusiveMaximum": "must be less than {}",
    "multipleOf": "must be a multiple of {}",
    "minLength": "must be at least {} characters long",
    "maxLength": "must be at most {} characters long",
    "pattern": "must match the pattern {!r}",
    "minItems": "must have at least {} items",
    "maxItems": "must have at most {} items",
    "minProperties": "must have at least {} keys",
    "maxProperties": "must have at most {} keys",
}


def _rule(error: jsonschema.ValidationError, secret: bool) -> str:
    keyword, expected = error.validator, error.validator_value
    if keyword == "type":
        kinds = expected if isinstance(expected, list) else [expected]
        return "must be of type " + " or ".join(repr(kind) for kind in kinds)
    if keyword in ("enum", "const"):
        return _RULES[str(keyword)].format(json.dumps(expected))
    if keyword in _RULES:
        return _RULES[str(keyword)].format(expected)
    if keyword == "required":
        return "is required" if not error.absolute_path else "is missing a required key"
    if keyword in ("additionalProperties", "unevaluatedProperties"):
        if not error.absolute_path:
            return "is not a parameter of this job"
        extra = [] if secret else _extra_keys(error)
        return "has an unexpected key" + (f" {extra[0]!r}" if extra else "")
    if keyword == "uniqueItems":
        return "must not hold the same item twice"
    if keyword in ("anyOf", "oneOf"):
        return "matches none of the types it may have"
    if keyword in ("items", "prefixItems", "unevaluatedItems"):
        return "has more items than it may have"
    return f"breaks the schema's {keyword!r} rule"


def _extra_keys(error: jsonschema.ValidationError) -> list[str]:
    allowed = error.schema.get("properties", {})
    return [key for key in error.instance if key not in allowed]


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


def known_queues(registrations: Mapping[str, Registration], extra: Iterable[str]) -> frozenset[str]:
    """The queues an enqueue may name: every catalog job's own queue and the operator's list
    (``ORCHESTRATOR_QUEUES``). Any other queue would be declared in RabbitMQ with nobody to
    consume it, and would add metric series without bound."""
    return frozenset(reg.queue for reg in registrations.values()) | frozenset(extra)


def require(registrations: Mapping[str, Registration], name: str) -> Registration:
    registration = registrations.get(name)
    if registration is None:
        raise UnknownJobError(name)
    return registration
