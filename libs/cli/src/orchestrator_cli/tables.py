"""What the console commands print for a person: rich tables of the API's answers."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from rich import box
from rich.console import Console, RenderableType
from rich.table import Table
from rich.text import Text

from orchestrator.lifecycle import State

STATE_ORDER = tuple(state.value for state in State)
STATE_STYLES: dict[str, str] = {
    State.SUCCEEDED: "green",
    State.FAILED: "red",
    State.PROCESSING: "yellow",
    State.DELETED: "dim",
}
#: History data values longer than this are cut (a traceback has its own block).
DATA_VALUE_CHARS = 60
#: Width when the output is not a terminal (a pipe, a file): wide enough that a job id is never
#: folded over two lines, so ``grep`` and ``awk`` see whole rows.
PIPE_WIDTH = 200


def emit(*renderables: RenderableType) -> None:
    """Print to a terminal as rich does; to a pipe or file without colours, as wide as needed
    (``PIPE_WIDTH``) and without the spaces tables pad their last column with."""
    terminal = sys.stdout.isatty()
    width = None if terminal else int(os.environ.get("COLUMNS") or PIPE_WIDTH)
    # No markup: values come from the API, and "[redacted]" must print as it is.
    out = Console(width=width, markup=False, highlight=False, soft_wrap=False)
    if terminal:
        out.print(*renderables, sep="\n")
        return
    with out.capture() as captured:
        out.print(*renderables, sep="\n")
    sys.stdout.write("".join(line.rstrip() + "\n" for line in captured.get().splitlines()))


def _table(title: str | None, *columns: str) -> Table:
    table = Table(
        title=title, title_justify="left", box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False
    )
    for column in columns:
        table.add_column(column, no_wrap=column in ("id", "ID"))
    return table


def when(stamp: str | None) -> str:
    """An API time (ISO 8601, UTC) as local time to the second."""
    if not stamp:
        return "-"
    moment = datetime.fromisoformat(stamp)
    return moment.astimezone().strftime("%Y-%m-%d %H:%M:%S")


def ago(stamp: str) -> str:
    seconds = (datetime.now(UTC) - datetime.fromisoformat(stamp)).total_seconds()
    if seconds < 120:
        return f"{max(seconds, 0):.0f} s ago"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min ago"
    return f"{seconds / 3600:.1f} h ago"


def state_text(state: str) -> Text:
    return Text(state, style=STATE_STYLES.get(state, ""))


def _count(value: int | None) -> str:
    return "?" if value is None else str(value)  # null: the broker could not say


def print_status(servers: list[dict[str, Any]], stats: Mapping[str, Any]) -> None:
    roles = _table("Roles", "role", "host", "pid", "queues", "concurrency", "started", "heartbeat")
    for server in sorted(servers, key=lambda s: (s["role"], s["host"], s["pid"])):
        roles.add_row(
            server["role"],
            server["host"],
            str(server["pid"]),
            ",".join(server.get("queues") or []) or "-",
            str(server.get("concurrency") or "-"),
            when(server["started_at"]),
            ago(server["heartbeat_at"]),
        )
    if not servers:
        roles.add_row("(none running)", "", "", "", "", "", "")
    queues = _table("Queues", "queue", "ready", "consumers", "processing")
    for queue in stats["queues"]:
        queues.add_row(
            queue["name"],
            _count(queue["ready"]),
            _count(queue["consumers"]),
            str(queue["processing"]),
        )
    counts: Mapping[str, int] = stats["states"]
    states = _table("Jobs by state", "state", "jobs")
    for state in [*STATE_ORDER, *sorted(set(counts) - set(STATE_ORDER))]:
        states.add_row(state_text(state), str(counts.get(state, 0)))
    emit(roles, "", queues, "", states)


def print_jobs(items: list[dict[str, Any]], *, more: bool) -> None:
    table = _table(None, "id", "job", "queue", "state", "attempt", "created", "state since")
    for item in items:
        table.add_row(
            item["id"],
            item["job"],
            item["queue"],
            state_text(item["state"]),
            str(item["attempt"]),
            when(item["created_at"]),
            when(item["state_changed_at"]),
        )
    shown = f"{len(items)} job{'' if len(items) == 1 else 's'}"
    emit(table, f"{shown}; more with a higher --limit" if more else shown)


def print_job(found: Mapping[str, Any]) -> None:
    details = Table(box=None, show_header=False, pad_edge=False)
    details.add_column(style="bold")
    details.add_column(overflow="fold")
    for label, value in _details(found):
        details.add_row(label, value)
    history = _table("History", "state", "at", "reason", "data")
    for row in found.get("history") or []:
        history.add_row(
            state_text(row["state"]), when(row["at"]), row.get("reason") or "", _data(row["data"])
        )
    shown: list[RenderableType] = [details, "", history]
    error = found.get("error")
    if error and found["state"] != "Succeeded":
        shown += ["", Text(f"{error['type']}: {error['message']}", style="red")]
        if error.get("traceback"):
            shown.append(Text(error["traceback"].rstrip()))
    emit(*shown)


def _details(found: Mapping[str, Any]) -> Iterable[tuple[str, str | Text]]:
    yield "id", found["id"]
    yield "job", found["job"]
    yield "state", state_text(found["state"])
    yield "queue", found["queue"]
    yield "args", _json(found["args"])
    yield "kwargs", _json(found["kwargs"])
    yield "attempt", f"{found['attempt']} (retries allowed: {found['retries']})"
    yield "created", when(found["created_at"])
    yield "state since", when(found["state_changed_at"])
    optional = {
        "due": when(found.get("due_at")) if found.get("due_at") else None,
        "expires": when(found.get("expires_at")) if found.get("expires_at") else None,
        "parent": found.get("parent_id"),
        "batch": found.get("batch_id"),
        "recurring": found.get("recurring_id"),
    }
    yield from ((label, value) for label, value in optional.items() if value)
    if found["state"] == "Succeeded":
        yield "result", _json(found.get("result"))


def print_outcome(found: Mapping[str, Any]) -> None:
    """After ``enqueue``: the id (alone on the first line, for ``$(…)``), then state/result."""
    line = Text("state: ").append_text(state_text(found["state"]))
    if found["state"] == "Succeeded":
        line.append(f"  result: {_json(found.get('result'))}")
    elif found.get("due_at") and found["state"] == "Scheduled":
        line.append(f"  due: {when(found['due_at'])}")
    emit(Text(found["id"]), line)


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def _data(data: Mapping[str, Any] | None) -> str:
    """A history row's data as ``key=value`` pairs, long values cut."""
    if not data:
        return ""
    parts = []
    for key, value in data.items():
        if key == "traceback":
            continue
        text = value if isinstance(value, str) else _json(value)
        if len(text) > DATA_VALUE_CHARS:
            text = text[: DATA_VALUE_CHARS - 1] + "…"
        parts.append(f"{key}={text}")
    return " ".join(parts)
