"""One shared table: the API's JSON Schema check and the worker's pydantic check must agree.

Every row is a parameter annotation, the arguments sent, and whether they are valid. Each row
runs through both ``validate_with_schema`` (the API) and ``validate_with_model`` (the worker).
"""

from __future__ import annotations

import enum
import uuid
from datetime import date, datetime, time, timedelta
from typing import Any, Literal, NamedTuple, NotRequired

import pydantic
import pytest
import typing_extensions

from orchestrator.catalog import Registration, validate_with_model, validate_with_schema
from orchestrator.errors import JobValidationError
from orchestrator.jobs import JobFunction, job


class Color(enum.Enum):
    RED = "red"
    GREEN = "green"


class Priority(enum.IntEnum):
    LOW = 1
    HIGH = 2


class Point(pydantic.BaseModel):
    x: int
    y: int = 0


class Event(pydantic.BaseModel):
    """A nested model with its own (lax) config and a datetime inside."""

    at: datetime
    tags: list[str] = []


class Address(typing_extensions.TypedDict):
    street: str
    number: int
    floor: NotRequired[int]


class Stamped(typing_extensions.TypedDict):
    at: datetime


class Case(NamedTuple):
    annotation: Any
    args: list[Any]
    kwargs: dict[str, Any]
    valid: bool
    id: str


def one(annotation: Any, value: Any, valid: bool, id: str) -> Case:
    return Case(annotation, [value], {}, valid, id)


U = "12345678-1234-5678-1234-567812345678"
AWARE = "2024-03-01T09:30:00+01:00"

CASES: list[Case] = [
    # integers
    one(int, 1, True, "int"),
    one(int, "1", False, "int-from-str"),
    one(int, 1.0, False, "int-from-whole-float"),
    one(int, 1.5, False, "int-from-float"),
    one(int, True, False, "int-from-bool"),
    one(int, 2**70, True, "int-big"),
    one(int, None, False, "int-none"),
    # booleans
    one(bool, True, True, "bool"),
    one(bool, 1, False, "bool-from-int"),
    one(bool, "true", False, "bool-from-str"),
    # floats
    one(float, 1.5, True, "float"),
    one(float, 1, True, "float-from-int"),
    one(float, "1.5", False, "float-from-str"),
    one(float, False, False, "float-from-bool"),
    # strings
    one(str, "hi", True, "str"),
    one(str, "", True, "str-empty"),
    one(str, 1, False, "str-from-int"),
    one(str, None, False, "str-none"),
    # Optional
    one(int | None, None, True, "optional-none"),
    one(int | None, 3, True, "optional-int"),
    one(int | None, "3", False, "optional-str"),
    one(int | str, "a", True, "union-str"),
    one(int | str, 1.5, False, "union-float"),
    # containers
    one(list[int], [1, 2], True, "list-int"),
    one(list[int], [], True, "list-empty"),
    one(list[int], [1, "2"], False, "list-str-item"),
    one(list[int], "12", False, "list-from-str"),
    one(list[int], {"a": 1}, False, "list-from-dict"),
    one(dict[str, int], {"a": 1}, True, "dict"),
    one(dict[str, int], {"a": "1"}, False, "dict-str-value"),
    one(dict[str, int], [1], False, "dict-from-list"),
    one(tuple[int, str], [1, "a"], True, "tuple"),
    one(tuple[int, str], [1, "a", 2], False, "tuple-too-long"),
    one(tuple[int, ...], [1, 2, 3], True, "tuple-variadic"),
    one(set[int], [1, 2], True, "set"),
    one(set[int], [1, 1], False, "set-duplicates"),
    # Literal and Enum
    one(Literal["a", "b"], "a", True, "literal"),
    one(Literal["a", "b"], "c", False, "literal-other"),
    one(Literal[1, 2], 1, True, "literal-int"),
    one(Literal[1, 2], "1", False, "literal-int-from-str"),
    one(Color, "red", True, "enum-value"),
    one(Color, "RED", False, "enum-name"),
    one(Color, "blue", False, "enum-unknown"),
    one(Priority, 2, True, "intenum"),
    one(Priority, 3, False, "intenum-unknown"),
    # nested pydantic model
    one(Point, {"x": 1}, True, "model-default"),
    one(Point, {"x": 1, "y": 2}, True, "model-full"),
    one(Point, {"x": "1"}, False, "model-lax-field"),
    one(Point, {"y": 2}, False, "model-missing"),
    one(Point, [1, 2], False, "model-from-list"),
    one(Event, {"at": AWARE}, True, "model-aware-datetime"),
    one(Event, {"at": "2024-03-01T09:30:00"}, False, "model-naive-datetime"),
    one(list[Point], [{"x": 1}, {"x": 2}], True, "list-of-models"),
    # TypedDict
    one(Address, {"street": "Main", "number": 1}, True, "typeddict"),
    one(Address, {"street": "Main", "number": 1, "floor": 2}, True, "typeddict-optional-key"),
    one(Address, {"street": "Main"}, False, "typeddict-missing"),
    one(Address, {"street": "Main", "number": "1"}, False, "typeddict-lax-field"),
    one(Address, {"street": "Main", "number": 1, "zip": "x"}, False, "typeddict-extra"),
    one(Stamped, {"at": "2024-03-01T09:30:00Z"}, True, "typeddict-datetime"),
    one(Stamped, {"at": "2024-03-01T09:30:00"}, False, "typeddict-naive-datetime"),
    # datetime
    one(datetime, "2024-03-01T09:30:00Z", True, "datetime-utc"),
    one(datetime, AWARE, True, "datetime-offset"),
    one(datetime, "2024-03-01T09:30:00.123456+00:00", True, "datetime-fraction"),
    one(datetime, "2024-03-01T09:30:00", False, "datetime-naive"),
    one(datetime, "2024-03-01 09:30:00Z", False, "datetime-space"),
    one(datetime, "2024-03-01T09:30Z", False, "datetime-no-seconds"),
    one(datetime, "2024-03-01T09:30:00+0100", False, "datetime-offset-no-colon"),
    one(datetime, "2024-03-01", False, "datetime-date-only"),
    one(datetime, "yesterday", False, "datetime-garbage"),
    one(datetime, 1709285400, False, "datetime-timestamp"),
    one(datetime, "1709285400", False, "datetime-timestamp-str"),
    one(list[datetime], ["2024-03-01T09:30:00"], False, "list-naive-datetime"),
    one(datetime | None, None, True, "optional-datetime-none"),
    one(datetime | None, "2024-03-01T09:30:00", False, "optional-datetime-naive"),
    # date, time, timedelta
    one(date, "2024-03-01", True, "date"),
    one(date, "2024-02-30", False, "date-impossible"),
    one(date, "20240301", False, "date-basic-format"),
    one(date, "2024-03-01T00:00:00Z", False, "date-from-datetime"),
    one(date, 1709251200, False, "date-timestamp"),
    one(time, "09:30:00Z", True, "time-aware"),
    one(time, "09:30:00", False, "time-naive"),
    one(timedelta, "PT1H30M", True, "duration-iso"),
    one(timedelta, "01:30:00", False, "duration-clock"),
    one(timedelta, 5400, False, "duration-seconds"),
    # UUID
    one(uuid.UUID, U, True, "uuid"),
    one(uuid.UUID, U.upper(), True, "uuid-upper"),
    one(uuid.UUID, U.replace("-", ""), False, "uuid-no-dashes"),
    one(uuid.UUID, "{" + U + "}", False, "uuid-braces"),
    one(uuid.UUID, "urn:uuid:" + U, False, "uuid-urn"),
    one(uuid.UUID, U[:-1] + "g", False, "uuid-bad-char"),
    one(uuid.UUID, "not-a-uuid", False, "uuid-garbage"),
    one(dict[str, uuid.UUID], {"a": U.replace("-", "")}, False, "dict-uuid-no-dashes"),
]

TWO = "two-params"  # marker: the job ``two(a: int, b: str = "x")``
SIGNATURE_CASES: list[Case] = [
    Case(TWO, [1], {}, True, "default-used"),
    Case(TWO, [1, "y"], {}, True, "all-positional"),
    Case(TWO, [], {"a": 1, "b": "y"}, True, "all-keyword"),
    Case(TWO, [], {"b": "y"}, False, "missing-required"),
    Case(TWO, [], {}, False, "nothing-given"),
    Case(TWO, [1], {"c": 2}, False, "extra-kwarg"),
    Case(TWO, [1, "y", 3], {}, False, "too-many-positional"),
    Case(TWO, [1], {"a": 2}, False, "positional-and-keyword"),
    Case(TWO, [1], {"b": None}, False, "default-not-nullable"),
]


def _job_for(annotation: Any) -> JobFunction[Any, Any]:
    if annotation == TWO:

        @job(name="agreement.two")
        def two(a: int, b: str = "x") -> None: ...

        return two

    def single(value: Any) -> None: ...

    single.__annotations__ = {"value": annotation, "return": None}  # the row's annotation
    return job(name="agreement.one")(single)


def _verdicts(fn: JobFunction[Any, Any], case: Case) -> tuple[bool, bool]:
    verdicts = []
    for check in (
        lambda: validate_with_schema(Registration.of(fn), case.args, case.kwargs),
        lambda: validate_with_model(fn, case.args, case.kwargs),
    ):
        try:
            check()
        except JobValidationError:
            verdicts.append(False)
        else:
            verdicts.append(True)
    return verdicts[0], verdicts[1]


@pytest.mark.parametrize("case", CASES + SIGNATURE_CASES, ids=lambda c: c.id)
def test_api_and_worker_agree(case: Case) -> None:
    fn = _job_for(case.annotation)
    api, worker = _verdicts(fn, case)
    assert (api, worker) == (case.valid, case.valid), f"API said {api}, worker said {worker}"


def test_the_table_covers_both_verdicts() -> None:
    verdicts = [case.valid for case in CASES + SIGNATURE_CASES]
    assert verdicts.count(True) >= 30
    assert verdicts.count(False) >= 30


def test_strictness_changes_no_schema() -> None:
    """The worker-side strictness is invisible in the JSON Schema the API checks against."""

    @job(name="agreement.schema")
    def shaped(at: datetime, ids: set[uuid.UUID], event: Event, stamped: Stamped) -> None: ...

    props = shaped.json_schema["properties"]
    assert props["at"] == {"format": "date-time", "title": "At", "type": "string"}
    assert props["ids"] == {
        "items": {"format": "uuid", "type": "string"},
        "title": "Ids",
        "type": "array",
        "uniqueItems": True,
    }
    defs = shaped.json_schema["$defs"]
    assert defs["Event"] == Event.model_json_schema()
    assert defs["Stamped"]["properties"]["at"] == {
        "format": "date-time", "title": "At", "type": "string"
    }


def test_validated_values_have_the_declared_types() -> None:
    """What the worker hands the function: a set, an aware datetime, the user's own model."""

    @job(name="agreement.values")
    def values(at: datetime, ids: frozenset[int], event: Event, when: date) -> None: ...

    model = validate_with_model(values, ["2024-03-01T09:30:00Z", [1, 2], {"at": AWARE}], {
        "when": "2024-03-01"
    })
    assert model.at.utcoffset() == timedelta(0)  # type: ignore[attr-defined]
    assert model.ids == frozenset({1, 2})  # type: ignore[attr-defined]
    assert isinstance(model.event, Event)  # type: ignore[attr-defined]
    assert model.event.at.utcoffset() == timedelta(hours=1)  # type: ignore[attr-defined]
    assert model.when == date(2024, 3, 1)  # type: ignore[attr-defined]


def test_errors_name_the_argument() -> None:
    fn = _job_for(datetime)
    for check in (
        lambda: validate_with_schema(Registration.of(fn), ["2024-03-01T09:30:00"], {}),
        lambda: validate_with_model(fn, ["2024-03-01T09:30:00"], {}),
    ):
        with pytest.raises(JobValidationError) as info:
            check()
        assert info.value.field == "value"
        assert "'value'" in str(info.value)
