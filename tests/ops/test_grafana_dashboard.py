"""The Grafana dashboard only queries metrics of the contract, with PromQL that Prometheus
accepts, through the datasource the provisioning files create."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.ops.prometheus import Prometheus, config, running_prometheus
from tests.unit.test_metrics_contract import _defined, _documented

ROOT = Path(__file__).resolve().parents[2]
GRAFANA = ROOT / "deploy" / "grafana"
DASHBOARD = GRAFANA / "dashboards" / "orchestrator.json"
DATASOURCES = GRAFANA / "provisioning" / "datasources" / "prometheus.yml"
PROVIDERS = GRAFANA / "provisioning" / "dashboards" / "orchestrator.yml"
#: Where docker-compose.yml mounts deploy/grafana/dashboards in the Grafana container.
DASHBOARDS_IN_CONTAINER = "/var/lib/grafana/dashboards"
#: What Grafana substitutes before a query reaches Prometheus.
GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$queue": ".*"}

_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'')
_MATCHERS = re.compile(r"\{[^}]*\}")
_RANGES = re.compile(r"\[[^\]]*\]")
_LABEL_LISTS = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_IDENTIFIER = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")
_OPERATOR_WORDS = {"and", "or", "unless", "bool", "offset", "group_left", "group_right"}
_LABEL_VALUES = re.compile(r"label_values\((.+),\s*\w+\)")


def load_dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return data


def panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel, those inside collapsed rows included."""
    for panel in dashboard["panels"]:
        yield panel
        yield from panel.get("panels", [])


def queries(dashboard: dict[str, Any]) -> list[str]:
    """Every PromQL expression: panel targets, and the series selector of each
    ``label_values(<selector>, <label>)`` query variable."""
    found = [t["expr"] for p in panels(dashboard) for t in p.get("targets", [])]
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            match = _LABEL_VALUES.fullmatch(variable["definition"])
            assert match is not None, variable["definition"]
            found.append(match.group(1))
    return found


def metric_names(expr: str) -> set[str]:
    """The metric names an expression selects (histogram series named by their base name).

    What is left once strings, label matchers, ranges and label lists are removed is functions
    and aggregations (followed by a parenthesis), operator words, numbers and metric names.
    """
    text = _STRINGS.sub('""', expr)
    text = _MATCHERS.sub("", text)
    text = _RANGES.sub("", text)
    text = _LABEL_LISTS.sub("", text)
    names = set()
    for match in _IDENTIFIER.finditer(text):
        following = text[match.end() :].lstrip()
        word = match.group()
        if following.startswith("(") or word in _OPERATOR_WORDS:
            continue
        if match.start() > 0 and (
            text[match.start() - 1].isdigit() or text[match.start() - 1] == "."
        ):
            continue  # an exponent or a unit of a number literal
        names.add(re.sub(r"_(bucket|sum|count)$", "", word))
    return names


def test_the_extraction_finds_metric_names_and_nothing_else() -> None:
    expr = (
        "histogram_quantile(0.99, sum by (le, kind) "
        '(rate(orchestrator_x_bucket{queue=~"a|b"}[5m])))'
        " / on (queue) group_left sum without (instance) (orchestrator_y) + up offset 5m > bool 1e3"
    )
    assert metric_names(expr) == {"orchestrator_x", "orchestrator_y", "up"}


def test_every_query_uses_only_metrics_of_the_contract() -> None:
    contract = set(_defined()) | set(_documented())
    assert set(_defined()) == set(_documented())
    histograms = {name for name, (kind, _) in _defined().items() if kind == "histogram"}
    dashboard = load_dashboard()
    used: set[str] = set()
    for expr in queries(dashboard):
        names = metric_names(expr)
        assert names, f"no metric in {expr!r}"
        assert names <= contract, f"{expr!r} uses {names - contract}, not in docs/metrics.md"
        for histogram in names & histograms:
            assert f"{histogram}_bucket" in expr or f"{histogram}_sum" in expr, expr
        used |= names
    # The panels the operations issue asks for.
    for required in (
        "orchestrator_jobs_enqueued_total",
        "orchestrator_jobs_succeeded_total",
        "orchestrator_jobs_failed_total",
        "orchestrator_job_duration_seconds",
        "orchestrator_enqueue_to_start_seconds",
        "orchestrator_queue_depth",
        "orchestrator_scheduler_lateness_seconds",
        "orchestrator_jobs_in_flight",
        "orchestrator_server_heartbeat_age_seconds",
        "orchestrator_outbox_backlog",
    ):
        assert required in used, required


def test_panels_use_the_provisioned_datasource() -> None:
    provisioned = yaml.safe_load(DATASOURCES.read_text())["datasources"]
    [prometheus] = [d for d in provisioned if d["name"] == "Prometheus"]
    assert prometheus["type"] == "prometheus"
    dashboard = load_dashboard()
    [variable] = [v for v in dashboard["templating"]["list"] if v["type"] == "datasource"]
    assert variable["query"] == prometheus["type"]
    # Provisioned, the variable points at that datasource; imported elsewhere, Grafana falls
    # back to the default Prometheus datasource there.
    assert variable["current"]["value"] == prometheus["uid"]
    reference = {"type": "prometheus", "uid": f"${{{variable['name']}}}"}
    for panel in panels(dashboard):
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == reference, panel["title"]
        assert panel["targets"], panel["title"]
        assert all(t["datasource"] == reference for t in panel["targets"]), panel["title"]


def test_layout_and_provider() -> None:
    dashboard = load_dashboard()
    ids = [p["id"] for p in panels(dashboard)]
    assert len(ids) == len(set(ids))
    for panel in panels(dashboard):
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        refs = [t["refId"] for t in panel.get("targets", [])]
        assert len(refs) == len(set(refs)), panel["title"]
    [provider] = yaml.safe_load(PROVIDERS.read_text())["providers"]
    assert provider["type"] == "file"
    assert provider["options"]["path"] == DASHBOARDS_IN_CONTAINER


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Prometheus]:
    """A real Prometheus with nothing to scrape: it parses and evaluates each query."""
    with running_prometheus(tmp_path_factory.mktemp("prometheus"), config({})) as server:
        yield server


def test_prometheus_accepts_every_query(prometheus: Prometheus) -> None:
    for expr in queries(load_dashboard()):
        for variable, value in GRAFANA_VARIABLES.items():
            expr = expr.replace(variable, value)
        assert re.search(r"\$\w+", expr) is None, f"unknown Grafana variable in {expr!r}"
        prometheus.query(expr)  # raises with Prometheus' parse error
