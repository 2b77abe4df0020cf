"""What the store can hold, and what a reader can be shown: one rule for both stores.

A job's outcome is the only value the worker writes that no request validated: whatever a job
returns or raises must be turned into something PostgreSQL's ``jsonb``/``text`` and SQLite both
accept before it reaches a transaction, or the transaction (and every other job's outcome in it)
fails. So a result is checked here as strict JSON (:func:`storable_result`), exception texts are
sanitised and bounded (:func:`clean_text`), and time arithmetic on stored durations is clamped to
the store's range (:func:`after`). Values already stored by an older version may still break
those rules; readers show them through :func:`showable`, which never fails.
"""

from __future__ import annotations

import json
import math
import re
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any, Final

#: Deepest nesting of a stored result, and of any value shown by the API or the dashboard
#: (pydantic refuses to serialize past ~255 levels; Python's JSON parser stops near 1,000).
MAX_DEPTH: Final = 64
#: The latest time written to the store: a day before ``datetime.max`` so that showing it in
#: any UTC offset still fits in a ``datetime``.
FAR_FUTURE: Final = datetime(9999, 12, 30, tzinfo=UTC)
#: The longest delay an outbox entry holds (its column is a 32-bit integer).
MAX_DELAY_SECONDS: Final = 2**31 - 1
#: Error type of a job whose result the store cannot hold (checked before writing).
RESULT_NOT_STORABLE: Final = "ResultNotStorable"
#: Error type of a job whose outcome the store refused anyway (found by splitting the batch).
OUTCOME_NOT_STORABLE: Final = "OutcomeNotStorable"
#: Longest exception type name (``jobs.error_type`` is ``VARCHAR(300)``).
ERROR_TYPE_MAX_CHARS: Final = 300
#: Longest exception message stored (the traceback has its own setting).
ERROR_MESSAGE_MAX_CHARS: Final = 4000

# NUL: PostgreSQL's text and jsonb refuse it. A lone surrogate is not UTF-8 at all.
_UNSAFE = re.compile("[\x00\ud800-\udfff]")
_SURROGATE = re.compile("[\ud800-\udfff]")
_REPLACEMENT = "\ufffd"
_TRUNCATED = "…(truncated)"
_NON_FINITE: Final = {"nan": "NaN", "inf": "Infinity", "-inf": "-Infinity"}


class ResultNotStorableError(ValueError):
    """A job's return value that the store cannot hold; the message says why and where."""


def storable_result(value: Any, max_bytes: int) -> Any:
    """``value`` (already JSON-compatible Python) if both stores can hold it, else
    :class:`ResultNotStorableError` naming the first problem: NaN or Infinity, a NUL character,
    a lone surrogate, an integer past Python's digit limit, nesting deeper than
    :data:`MAX_DEPTH`, or more than ``max_bytes`` bytes of JSON."""
    problem = next(_problems(value, "result", 0), None)
    if problem is not None:
        raise ResultNotStorableError(problem)
    try:
        text = json.dumps(value, allow_nan=False, ensure_ascii=False, separators=(",", ":"))
    except (TypeError, ValueError, RecursionError) as exc:
        raise ResultNotStorableError(f"result: not JSON ({exc})") from None
    size = len(text.encode("utf-8"))
    if size > max_bytes:
        raise ResultNotStorableError(
            f"result: {size} bytes as JSON, over the limit of {max_bytes} bytes"
            " (ORCHESTRATOR_MAX_RESULT_BYTES)"
        )
    return value


def _problems(value: Any, where: str, depth: int) -> Iterator[str]:
    if depth > MAX_DEPTH:
        yield f"{where}: nested deeper than {MAX_DEPTH} levels"
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            yield from _problems(item, f"{where}[{index}]", depth + 1)
    elif isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                yield f"{where}: key {key!r} is not a string"
                return
            yield from _text_problems(key, f"{where} key {_quoted(key)}")
            yield from _problems(item, f"{where}[{_quoted(key)}]", depth + 1)
    else:
        problem = _scalar_problem(value)
        if problem is not None:
            yield f"{where}: {problem}"


def _scalar_problem(value: Any) -> str | None:
    if isinstance(value, str):
        return next(_text_problems(value, ""), None)
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        digits = sys.get_int_max_str_digits()
        return f"an integer of more than {digits} digits" if _too_many_digits(value) else None
    if isinstance(value, float):
        return None if math.isfinite(value) else f"{value!r} is not a JSON number"
    return f"a {type(value).__name__} is not JSON"


def _text_problems(text: str, where: str) -> Iterator[str]:
    prefix = f"{where}: " if where else ""
    if "\x00" in text:
        yield f"{prefix}contains a NUL character (\\u0000), which PostgreSQL cannot store"
    elif _SURROGATE.search(text):
        yield f"{prefix}contains a lone surrogate (not valid Unicode)"


def _quoted(key: str) -> str:
    return json.dumps(_UNSAFE.sub(_REPLACEMENT, key[:40]), ensure_ascii=False)


def _too_many_digits(value: int) -> bool:
    limit = sys.get_int_max_str_digits()
    # bit_length * log10(2) estimates the digits without converting (which is what fails).
    return limit > 0 and abs(value).bit_length() * 0.30103 > limit - 1


def clean_text(text: str | None, max_chars: int, *, keep: str = "head") -> str | None:
    """``text`` with NUL and lone surrogates replaced by U+FFFD and cut to ``max_chars``
    (``keep="tail"`` keeps the end, as a traceback's last lines matter most)."""
    if text is None:
        return None
    if len(text) > max_chars:
        text = _TRUNCATED + text[-max_chars:] if keep == "tail" else text[:max_chars] + _TRUNCATED
    return _UNSAFE.sub(_REPLACEMENT, text)


def after(now: datetime, seconds: float | None) -> datetime:
    """``now`` plus ``seconds``, clamped to ``[now, FAR_FUTURE]``: a stored duration of 1e308,
    Infinity or NaN (an older version accepted them) means "as late as the store can say"."""
    if seconds is None or math.isnan(seconds):
        return FAR_FUTURE
    room = (FAR_FUTURE - now).total_seconds()
    if seconds >= room:
        return FAR_FUTURE
    return now + timedelta(seconds=max(0.0, seconds))


def delay_seconds(seconds: float) -> int:
    """Whole seconds of a delay, rounded up and clamped to what the outbox can hold."""
    if math.isnan(seconds) or seconds >= MAX_DELAY_SECONDS:
        return MAX_DELAY_SECONDS
    return max(0, math.ceil(seconds))


def showable(value: Any, depth: int = 0) -> Any:
    """A copy of a stored value that any JSON encoder (and the dashboard) can write: lone
    surrogates replaced, NaN and Infinity as strings, integers past the digit limit and levels
    deeper than :data:`MAX_DEPTH` as placeholders. Never raises."""
    if isinstance(value, str):
        return _SURROGATE.sub(_REPLACEMENT, value)
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int):
        if _too_many_digits(value):
            return f"[an integer of {abs(value).bit_length()} bits, too large to show]"
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else _NON_FINITE[str(value)]
    if depth >= MAX_DEPTH and isinstance(value, list | tuple | dict):
        return f"[nested deeper than {MAX_DEPTH} levels, not shown]"
    if isinstance(value, list | tuple):
        return [showable(item, depth + 1) for item in value]
    if isinstance(value, dict):
        return {_showable_key(k): showable(v, depth + 1) for k, v in value.items()}
    return _SURROGATE.sub(_REPLACEMENT, repr(value))


def _showable_key(key: object) -> str:
    return _SURROGATE.sub(_REPLACEMENT, key if isinstance(key, str) else str(key))


def showable_arguments(args: Any, kwargs: Any) -> tuple[list[Any], dict[str, Any]]:
    """A job's stored arguments as shown, still a list and a dict when what is stored is not
    (an :class:`Unreadable`), so that redaction and display treat them as arguments."""
    shown_args = showable(args)
    shown_kwargs = showable(kwargs)
    if not isinstance(shown_args, list):
        shown_args = [] if args is None else [shown_args]
    if not isinstance(shown_kwargs, dict):
        shown_kwargs = {} if kwargs is None else {"(unreadable)": shown_kwargs}
    return shown_args, shown_kwargs


def showable_result(value: Any, max_bytes: int) -> Any:
    """A stored result as the one-job read shows it: :func:`showable`, and a placeholder for
    one larger than ``max_bytes`` of JSON (older versions stored results of any size)."""
    shown = showable(value)
    size = len(json.dumps(shown, ensure_ascii=False).encode("utf-8"))
    if size > max_bytes:
        return f"[a result of {size} bytes, not shown: over the limit of {max_bytes} bytes]"
    return shown


class Unreadable:
    """A stored JSON value the reader cannot load (nested past Python's recursion limit, an
    integer past the digit limit, text that is not JSON): it stands in for the value so the row
    can still be read. The API and dashboard show its reason; a job whose arguments are
    unreadable fails instead of running."""

    __slots__ = ("reason",)

    def __init__(self, reason: str) -> None:
        self.reason = reason

    def __repr__(self) -> str:
        return f"[unreadable stored value: {self.reason}]"


def load_json(text: str | bytes) -> Any:
    """The store's JSON reader (both engines): :func:`json.loads`, except that what it cannot
    load becomes an :class:`Unreadable` instead of failing every read of the row's page."""
    try:
        return json.loads(text, parse_int=_parse_int)
    except RecursionError:
        return Unreadable("nested too deeply to read")
    except ValueError as exc:
        return Unreadable(f"not JSON ({exc})")


def _parse_int(text: str) -> int | Unreadable:
    try:
        return int(text)
    except ValueError:
        return Unreadable(f"an integer of {len(text)} digits")
