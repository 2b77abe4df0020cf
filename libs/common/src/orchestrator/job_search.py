"""Searching jobs for the dashboard: what a search asks for, its sorts, keyset cursors and
bounded counts, as plain values. The queries are :mod:`orchestrator.store.search`.

Every list is keyset-paged on the sort key plus ``id`` (never OFFSET), so a deep page costs what
the first one does. Counts stop at a bound: "10,000+" is as useful as an exact figure that costs
a scan of every matching row.
"""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Final, Literal

from orchestrator.bounds import check_instant, check_text
from orchestrator.catalog import Registration, secret_parameters
from orchestrator.lifecycle import State

if TYPE_CHECKING:  # the rows' type only: the queries are the store's
    from orchestrator.store.tables import Row

Sort = Literal["-created", "created", "name", "-name"]
SORTS: Final[tuple[Sort, ...]] = ("-created", "created", "name", "-name")
#: Counts above this show as "10,000+".
COUNT_BOUND: Final = 10_000
#: History rows entering these states are counted per second for the realtime graph.
OUTCOMES: Final = (State.SUCCEEDED.value, State.FAILED.value)


@dataclass(frozen=True)
class Search:
    """What a job list shows; every field is optional."""

    state: State | None = None
    queue: str | None = None
    name: str | None = None
    #: Text anywhere in the arguments (case-insensitive).
    text: str | None = None
    created_from: datetime | None = None
    created_to: datetime | None = None
    #: Only Scheduled jobs waiting for an automatic retry.
    retries_only: bool = False
    sort: Sort = "-created"
    #: Per job name, where its secret arguments sit (:func:`hidden_arguments`): text search
    #: never looks at them.
    hidden: Mapping[str, Hidden] = field(default_factory=dict)


@dataclass(frozen=True)
class Hidden:
    """A job's secret parameters as stored: positions in ``args`` and keys in ``kwargs``."""

    positions: tuple[int, ...]
    keys: tuple[str, ...]


def hidden_arguments(registrations: Mapping[str, Registration]) -> dict[str, Hidden]:
    """Where each catalog job with secret parameters keeps them (the catalog's ``writeOnly``
    marks, as redaction reads them)."""
    hidden = {}
    for name, registration in registrations.items():
        secret = secret_parameters(registration.json_schema)
        if secret:
            positions = [i for i, p in enumerate(registration.parameters) if p in secret]
            hidden[name] = Hidden(tuple(positions), tuple(sorted(secret)))
    return hidden


class SearchTooSlowError(Exception):
    """A text search ran past ``store.search.TEXT_SEARCH_TIMEOUT_MS``; narrowing it with other
    filters helps."""


@dataclass(frozen=True)
class Page:
    rows: list[Row]
    #: Pass back as ``after`` for the next page; None on the last page.
    next_cursor: str | None


def sort_key(sort: Sort) -> tuple[tuple[str, ...], bool]:
    """The keyset of a sort (column names, the job's id last) and whether it is descending."""
    if sort in ("name", "-name"):
        return ("name", "created_at", "id"), sort == "-name"
    return ("created_at", "id"), sort == "-created"


def encode_cursor(values: Sequence[Any]) -> str:
    plain = [v.isoformat() if isinstance(v, datetime) else str(v) for v in values]
    return base64.urlsafe_b64encode(json.dumps(plain).encode()).decode().rstrip("=")


def decode_cursor(sort: Sort, cursor: str) -> list[Any]:
    """The keyset values of ``cursor`` for ``sort``; ValueError when it is not one of ours."""
    names, _ = sort_key(sort)
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        plain = json.loads(base64.urlsafe_b64decode(padded))
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise ValueError("invalid cursor") from None
    if not isinstance(plain, list) or len(plain) != len(names):
        raise ValueError("invalid cursor")
    values: list[Any] = []
    for name, text in zip(names, plain, strict=True):
        if not isinstance(text, str):
            raise ValueError("invalid cursor")
        if name == "created_at":
            parsed = datetime.fromisoformat(text)
            if parsed.tzinfo is None:
                raise ValueError("invalid cursor")
            values.append(check_instant(parsed))
        elif name == "id":
            values.append(uuid.UUID(text))
        else:
            values.append(check_text(text))
    return values


def hours_back(now: datetime, hours: int) -> datetime:
    """The start of the hour ``hours - 1`` hours before ``now``'s hour (``hours`` buckets)."""
    return now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=hours - 1)
