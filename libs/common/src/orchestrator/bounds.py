"""The bounds every value from outside is held to before it reaches a store.

One rule for both stores: a value PostgreSQL would refuse (NUL in text, NaN in JSON, an integer
over int64) or SQLite would store as something else (NaN as invalid JSON), a time Python's
``datetime`` cannot hold once converted to UTC, a duration whose sum with a time overflows,
arguments nested deeper than a reader can serialize: each is refused at the edge with a message
naming the field and the rule, never quoting the value (it may be a secret argument).

The HTTP API's request models and query parameters, the dashboard's filters and the Python
``Client``'s request building all check through this module.
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Annotated, Any, Final

from pydantic import AfterValidator, AwareDatetime, Field

#: The largest integer every store's integer ids hold (PostgreSQL ``bigint``, SQLite INTEGER).
INT64_MAX: Final = 2**63 - 1
#: The longest duration any option takes (delays, timeouts, expiries): ten years. Any time plus
#: this stays far inside the range of every store and of Python's ``datetime``.
MAX_DURATION_SECONDS: Final = 10 * 365 * 24 * 3600
#: The longest delay before one retry.
MAX_RETRY_DELAY_SECONDS: Final = 30 * 24 * 3600
#: The instants a time may name, in UTC: what Python's ``datetime`` holds, a day inside each end
#: so that converting between time zones or adding a day cannot overflow.
EARLIEST: Final = datetime(1, 1, 2, tzinfo=UTC)
LATEST: Final = datetime(9999, 12, 30, tzinfo=UTC)
#: Defaults of ``ORCHESTRATOR_MAX_ARGUMENT_DEPTH`` and ``_MAX_ARGUMENT_BYTES``.
DEFAULT_ARGUMENT_DEPTH: Final = 32
DEFAULT_ARGUMENT_BYTES: Final = 256 * 1024


class BoundsError(ValueError):
    """A value outside the bounds; the message names where (``field``) and the rule broken."""

    def __init__(self, field: str, rule: str) -> None:
        super().__init__(f"{field}: {rule}" if field else rule)
        self.field = field
        self.rule = rule


def text_problem(text: str) -> str | None:
    """Why ``text`` cannot be stored as it is, or None: NUL (PostgreSQL's text and JSON refuse
    it) and lone surrogates (not Unicode: no store can encode them)."""
    if "\x00" in text:
        return "contains a NUL character (\\u0000), which no store keeps"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "contains a lone surrogate (\\ud800-\\udfff), which is not valid Unicode"
    return None


def check_text(text: str, field: str = "") -> str:
    problem = text_problem(text)
    if problem is not None:
        raise BoundsError(field, problem)
    return text


def check_instant(value: datetime, field: str = "") -> datetime:
    """``value`` (timezone-aware) in UTC, within EARLIEST..LATEST."""
    try:
        utc = value.astimezone(UTC)
    except OverflowError:
        utc = None
    if utc is None or not EARLIEST <= utc <= LATEST:
        raise BoundsError(field, f"must be between {EARLIEST.date()} and {LATEST.date()} in UTC")
    return utc


def check_int64(value: int, field: str = "") -> int:
    if not 0 <= value <= INT64_MAX:
        raise BoundsError(field, f"must be between 0 and {INT64_MAX}")
    return value


def id_cursor(text: str) -> int | None:
    """An integer-id cursor (decimal digits, 0 to INT64_MAX), or None when it is not one."""
    if not text.isascii() or not text.isdigit() or len(text) > len(str(INT64_MAX)):
        return None
    value = int(text)
    return value if value <= INT64_MAX else None


def _walk(value: Any, depth: int, max_depth: int) -> str | None:
    """The first rule ``value`` breaks (strings, keys, numbers, nesting), or None."""
    if isinstance(value, str):
        return text_problem(value)
    if isinstance(value, bool | int) or value is None:
        return None
    if isinstance(value, float):
        return None if math.isfinite(value) else "holds a number that is not finite (NaN, ±inf)"
    if depth >= max_depth:
        return f"is nested deeper than {max_depth} levels"
    if isinstance(value, Mapping):
        return _walk_mapping(value, depth, max_depth)
    if isinstance(value, list | tuple):
        for item in value:
            problem = _walk(item, depth + 1, max_depth)
            if problem is not None:
                return problem
        return None
    return f"holds a {type(value).__name__}, which is not a JSON value"


def _walk_mapping(value: Mapping[Any, Any], depth: int, max_depth: int) -> str | None:
    for key, item in value.items():
        if not isinstance(key, str):
            return "has a key that is not a string"
        problem = text_problem(key)
        if problem is not None:
            return f"has a key that {problem}"
        problem = _walk(item, depth + 1, max_depth)
        if problem is not None:
            return problem
    return None


def check_arguments(
    args: Sequence[Any],
    kwargs: Mapping[str, Any],
    *,
    max_depth: int | None = DEFAULT_ARGUMENT_DEPTH,
    max_bytes: int | None = DEFAULT_ARGUMENT_BYTES,
    where: str = "",
) -> None:
    """Refuse arguments no store holds as they are, or over the depth and size limits (None:
    no limit). The message names the argument (``args[1]``, ``kwargs.name``), never a nested
    key or a value: an argument may be secret."""
    depth = max_depth if max_depth is not None else 1 << 30
    named: list[tuple[str, Any]] = [(f"args[{i}]", v) for i, v in enumerate(args)]
    for key, value in kwargs.items():
        problem = text_problem(key) if isinstance(key, str) else "is not a string"
        if problem is not None:
            raise BoundsError(f"{where}kwargs", f"a key {problem}")
        named.append((f"kwargs.{key}", value))
    for field, value in named:
        problem = _walk(value, 0, depth)
        if problem is not None:
            raise BoundsError(f"{where}{field}", problem)
    if max_bytes is not None:
        size = len(json.dumps([args, kwargs], ensure_ascii=False).encode())
        if size > max_bytes:
            raise BoundsError(
                f"{where}arguments",
                f"are {size} bytes of JSON, over the limit of {max_bytes} bytes "
                "(ORCHESTRATOR_MAX_ARGUMENT_BYTES)",
            )


class _Unholdable:
    """Stands in, while a body is parsed, for a number no store holds: it is found again by
    :func:`_first_unholdable` to name where it is, and never leaves :func:`loads_strict`."""

    __slots__ = ("rule",)

    def __init__(self, rule: str) -> None:
        self.rule = rule


_NOT_FINITE: Final = _Unholdable(
    "not a finite number (JSON numbers are finite and fit a 64-bit float)"
)


def _too_long_integer() -> _Unholdable:
    return _Unholdable(f"an integer of more than {sys.get_int_max_str_digits()} digits")


def _path_to(path: str, key: str) -> str:
    """``path.key``, or ``path`` itself for a key that cannot be shown (NUL, a lone surrogate,
    long): the message must stay valid text and short."""
    if text_problem(key) is not None or len(key) > 100:
        return path
    return f"{path}.{key}" if path else key


def _first_unholdable(document: Any) -> tuple[str, _Unholdable] | None:
    """The first stand-in in ``document`` and its JSON path (``jobs[3].args[0]``). The path stops
    at an argument (an item of ``args``, a value of ``kwargs``): what is inside one may be a
    secret's structure. Iterative: the document may be nested near the recursion limit."""
    # (value, its path, what it is: "" a body field, "args"/"kwargs" the containers, "argument")
    stack: list[tuple[Any, str, str]] = [(document, "", "")]
    while stack:
        value, path, role = stack.pop()
        if isinstance(value, _Unholdable):
            return path, value
        children: list[tuple[Any, str, str]] = []
        if role == "argument":
            if isinstance(value, dict):
                children = [(item, path, "argument") for item in value.values()]
            elif isinstance(value, list):
                children = [(item, path, "argument") for item in value]
        elif isinstance(value, dict):
            in_kwargs = role == "kwargs"
            for key, item in value.items():
                child_role = "argument" if in_kwargs else key if key in ("args", "kwargs") else ""
                children.append((item, _path_to(path, key), child_role))
        elif isinstance(value, list):
            child_role = "argument" if role == "args" else ""
            children = [(item, f"{path}[{i}]", child_role) for i, item in enumerate(value)]
        stack.extend(reversed(children))
    return None


def loads_strict(data: bytes | str) -> Any:
    """JSON as RFC 8259 has it: Python's ``json.loads`` also reads ``NaN``, ``Infinity`` and
    numbers a float cannot hold (``1e400`` becomes ``inf``), and refuses integers past its digit
    limit; those are refused here. Every refusal is a :class:`json.JSONDecodeError`, whatever
    broke (nesting past the recursion limit, not UTF-8); one for such a number names its JSON path
    (``jobs[3].args[0]: not a finite number …``) and never quotes it (it may be a secret)."""
    unholdable: list[_Unholdable] = []

    def finite_float(text: str) -> float | _Unholdable:
        value = float(text)
        if math.isfinite(value):
            return value
        unholdable.append(_NOT_FINITE)
        return _NOT_FINITE

    def integer(text: str) -> int | _Unholdable:
        try:
            return int(text)
        except ValueError:  # more digits than Python converts
            unholdable.append(marker := _too_long_integer())
            return marker

    def constant(_: str) -> _Unholdable:  # NaN, Infinity, -Infinity
        unholdable.append(_NOT_FINITE)
        return _NOT_FINITE

    try:
        document = json.loads(
            data, parse_float=finite_float, parse_int=integer, parse_constant=constant
        )
    except json.JSONDecodeError:
        raise
    except RecursionError:
        raise json.JSONDecodeError("nested too deeply", "", 0) from None
    except UnicodeDecodeError:  # its message quotes a byte of the body
        raise json.JSONDecodeError("not UTF-8 text", "", 0) from None
    except ValueError:  # nothing else is known to raise one; its message might quote the body
        raise json.JSONDecodeError("not JSON text", "", 0) from None
    if unholdable:
        # A stand-in may be gone (a duplicate key keeps the last value): then the document holds.
        found = _first_unholdable(document)
        if found is not None:
            path, marker = found
            raise json.JSONDecodeError(f"{path or 'the body'}: {marker.rule}", "", 0)
    return document


def _text(value: str) -> str:
    return check_text(value)


def _instant(value: datetime) -> datetime:
    check_instant(value)
    return value


#: Text that reaches a store: no NUL, no lone surrogate.
Text = Annotated[str, AfterValidator(_text)]
#: A timezone-aware time within EARLIEST..LATEST once in UTC (kept in its own zone).
Instant = Annotated[AwareDatetime, AfterValidator(_instant)]
#: A duration in seconds: a finite JSON number (not a boolean), 0 to MAX_DURATION_SECONDS.
Seconds = Annotated[float, Field(strict=True, allow_inf_nan=False, ge=0, le=MAX_DURATION_SECONDS)]
#: A positive duration in seconds, up to MAX_DURATION_SECONDS.
PositiveSeconds = Annotated[
    float, Field(strict=True, allow_inf_nan=False, gt=0, le=MAX_DURATION_SECONDS)
]
#: An integer id of the store: 1 to INT64_MAX, a JSON integer (not a boolean).
Int64Id = Annotated[int, Field(ge=1, le=INT64_MAX)]
