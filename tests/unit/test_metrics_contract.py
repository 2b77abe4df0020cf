"""docs/metrics.md and orchestrator.metrics describe the same metrics."""

from __future__ import annotations

import re
from pathlib import Path

from prometheus_client import Counter, Gauge, Histogram

from orchestrator import metrics

DOC = Path(__file__).resolve().parents[2] / "docs" / "metrics.md"


def _defined() -> dict[str, tuple[str, tuple[str, ...]]]:
    found = {}
    for value in vars(metrics).values():
        if isinstance(value, Counter | Gauge | Histogram):
            kind = type(value).__name__.lower()
            name = value._name + ("_total" if kind == "counter" else "")
            found[name] = (kind, tuple(value._labelnames))
    return found


def _documented() -> dict[str, tuple[str, tuple[str, ...]]]:
    rows = {}
    for line in DOC.read_text().splitlines():
        match = re.match(r"\| `(orchestrator_\w+)` \| (\w+) \| ([^|]+) \|", line)
        if match:
            labels = tuple(
                part.strip() for part in match.group(3).split(",") if part.strip() != "—"
            )
            rows[match.group(1)] = (match.group(2), labels)
    return rows


def test_every_metric_is_documented_with_its_type_and_labels() -> None:
    assert _documented() == _defined()


def test_no_label_can_hold_a_job_id() -> None:
    for _, labels in _defined().values():
        assert not {"id", "job_id", "message_id"} & set(labels)


def test_no_label_clashes_with_the_labels_prometheus_adds_to_every_series() -> None:
    for _, labels in _defined().values():
        assert not {"job", "instance"} & set(labels)


def _documented_values(label: str) -> tuple[str, ...]:
    for line in DOC.read_text().splitlines():
        match = re.match(rf"\| `{label}` \| ([^|]+) \|", line)
        if match:
            return tuple(value.strip() for value in match.group(1).split(","))
    raise AssertionError(f"docs/metrics.md has no row for the label {label}")


def _counted_return_reasons() -> set[str]:
    """The reasons the worker's code counts ``orchestrator_deliveries_returned_total`` with."""
    source = Path(__file__).resolve().parents[2] / "services" / "worker" / "src"
    found = set()
    for path in source.rglob("*.py"):
        text = path.read_text()
        found |= set(re.findall(r'DELIVERIES_RETURNED\.labels\([^,]+, "(\w+)"\)', text))
    return found


def test_every_return_reason_is_documented_and_counted_somewhere() -> None:
    assert _documented_values("reason") == metrics.RETURN_REASONS
    # Every documented path of a delivery back to its queue is counted, and nothing else.
    assert _counted_return_reasons() == set(metrics.RETURN_REASONS)
