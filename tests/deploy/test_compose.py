"""docker-compose.yml, checked offline: against the Compose specification's JSON schema (vendored
in deploy/schemas/), and against the code it runs: build targets, commands, settings, ports,
health checks, start order, and the Prometheus configuration that scrapes it."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from orchestrator.settings import Settings, load_settings
from tests.deploy.support import (
    ROLES,
    ROOT,
    as_strings,
    default_port,
    interpolate,
    load_healthcheck,
    parse_dockerfile,
    pinned,
    read_env_file,
    resolves_to_cli_command,
    role_command_ok,
    unknown_settings,
)
from tests.ops.prometheus import PROMTOOL

COMPOSE = ROOT / "docker-compose.yml"
PROMETHEUS = ROOT / "deploy/prometheus/prometheus.yml"


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(data, dict)
    return data


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, Any]:
    return dict(compose["services"])


def _environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment", {})
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return as_strings(env)


def _replicas(service: dict[str, Any]) -> int:
    return int(service.get("deploy", {}).get("replicas", service.get("scale", 1)))


def _duration_seconds(text: str) -> float:
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    total = 0.0
    for number, unit in re.findall(r"(\d+(?:\.\d+)?)(ms|s|m|h)", text):
        total += float(number) * units[unit]
    return total


def test_valid_against_the_compose_specification_schema(compose: dict[str, Any]) -> None:
    schema = json.loads((ROOT / "deploy/schemas/compose-spec.json").read_text())
    # The file says draft-07 (under a newer URL than the one jsonschema knows it by).
    assert "draft-07" in schema["$schema"]
    jsonschema.Draft7Validator.check_schema(schema)
    errors = sorted(
        jsonschema.Draft7Validator(schema).iter_errors(compose), key=lambda e: list(e.path)
    )
    assert not errors, "\n".join(f"{list(e.path)}: {e.message}" for e in errors)


def test_the_schema_rejects_what_compose_rejects() -> None:
    # The vendored schema is the real one: it refuses an unknown service key.
    schema = json.loads((ROOT / "deploy/schemas/compose-spec.json").read_text())
    broken = {"services": {"api": {"image": "x:1.0.0", "ports_typo": ["5001:5001"]}}}
    assert not jsonschema.Draft7Validator(schema).is_valid(broken)


def test_every_build_names_a_target_of_its_dockerfile(services: dict[str, Any]) -> None:
    built = {name: s["build"] for name, s in services.items() if "build" in s}
    assert set(built) >= {"migrate", *ROLES, "worker-base"}
    for name, build in built.items():
        dockerfile = parse_dockerfile(
            ROOT / build.get("context", ".") / build.get("dockerfile", "Dockerfile")
        )
        if "target" in build:
            assert build["target"] in dockerfile.targets, f"{name}: no target {build['target']}"
        else:
            # A single-stage file FROM another service's image, named by an additional context.
            base = interpolate(dockerfile.stages[0].base, as_strings(build.get("args", {})))
            context = build.get("additional_contexts", {}).get(base, "")
            assert context.startswith("service:"), f"{name}: FROM {base} is not a service image"
            assert "build" in services[context.removeprefix("service:")]


def test_roles_run_their_own_images_and_commands(services: dict[str, Any]) -> None:
    for role in ("api", "scheduler", "janitor"):
        assert services[role]["build"]["target"] == role
        assert role_command_ok(role, services[role]["command"])
    # Workers: the example image FROM the worker target, with examples/ and its job modules.
    worker = services["worker"]
    assert worker["build"]["dockerfile"] == "examples/worker.Dockerfile"
    base = worker["build"]["additional_contexts"]["orchestrator-worker"].removeprefix("service:")
    assert services[base]["build"]["target"] == "worker"
    assert _replicas(services[base]) == 0, "the base image runs no container of its own"
    assert role_command_ok("worker", worker["command"])
    migrate = services["migrate"]
    assert migrate["build"]["target"] == "cli"
    assert migrate["command"][0] == "orchestrator"
    assert resolves_to_cli_command(migrate["command"][1:]) and migrate["command"][1:] == [
        "db",
        "upgrade",
    ]


def test_replicas(services: dict[str, Any]) -> None:
    assert _replicas(services["scheduler"]) == 2
    assert _replicas(services["worker"]) == 2
    assert _replicas(services["api"]) == 1
    assert _replicas(services["janitor"]) == 1


def test_settings_names_exist_and_values_parse(services: dict[str, Any]) -> None:
    """Every ORCHESTRATOR_* variable is a setting, and each role's environment, filled in from
    .env.example, makes valid Settings that point at the compose services."""
    example = read_env_file(ROOT / ".env.example")
    for name in (*ROLES, "migrate"):
        env = {k: interpolate(v, example) for k, v in _environment(services[name]).items()}
        assert not unknown_settings(env), name
        values = {
            k.removeprefix("ORCHESTRATOR_").lower(): v
            for k, v in env.items()
            if k.startswith("ORCHESTRATOR_")
        }
        settings = load_settings(**values)
        assert settings.database_url.startswith("postgresql://orchestrator:")
        assert settings.database_url.endswith("@postgres:5432/orchestrator")
        assert settings.amqp_url.startswith("amqp://orchestrator:")
        assert settings.amqp_url.endswith("@rabbitmq:5672/")
    api_keys = load_settings(
        api_keys=interpolate(_environment(services["api"])["ORCHESTRATOR_API_KEYS"], example)
    ).parsed_api_keys
    assert {key.role for key in api_keys} == {"admin", "read"}


def test_every_variable_compose_requires_is_in_env_example(compose: dict[str, Any]) -> None:
    example = read_env_file(ROOT / ".env.example")
    required = set(re.findall(r"\$\{([A-Z_]+):\?", COMPOSE.read_text()))
    assert required >= {"POSTGRES_PASSWORD", "RABBITMQ_PASSWORD", "ORCHESTRATOR_API_KEYS"}
    assert required <= set(example)
    assert not unknown_settings(example)
    # Without .env compose stops with the message rather than start with empty passwords.
    with pytest.raises(KeyError, match=r"cp \.env\.example \.env"):
        interpolate(str(compose["services"]["postgres"]["environment"]), {})


def test_the_api_key_comes_from_the_env_file_not_the_compose_file(services: dict[str, Any]) -> None:
    keys = _environment(services["api"])["ORCHESTRATOR_API_KEYS"]
    assert keys.startswith("${ORCHESTRATOR_API_KEYS:?")
    for name in ("scheduler", "worker", "janitor", "migrate"):
        assert "ORCHESTRATOR_API_KEYS" not in _environment(services[name])


def test_ports_and_health_checks_agree_with_the_settings(services: dict[str, Any]) -> None:
    healthcheck = load_healthcheck()
    dockerfile = parse_dockerfile(ROOT / "Dockerfile")
    assert services["api"]["ports"] == [f"{default_port('api')}:{default_port('api')}"]
    for role in ROLES:
        test = services[role]["healthcheck"]["test"]
        assert test == ["CMD", "python", "/usr/local/lib/orchestrator/healthcheck.py", role]
        # The same check the image declares, on the port the role serves.
        image_check = dockerfile.effective(role, "HEALTHCHECK")
        assert image_check is not None and image_check.exec_form() == test[1:]
        variable, port = healthcheck.ROLE_PORTS[role]
        assert port == default_port(role)
        assert not unknown_settings([variable])


def test_start_order(services: dict[str, Any]) -> None:
    dockerfile = parse_dockerfile(ROOT / "Dockerfile")
    for role in ROLES:
        depends = services[role]["depends_on"]
        assert depends["migrate"]["condition"] == "service_completed_successfully"
        assert depends["postgres"]["condition"] == "service_healthy"
        assert depends["rabbitmq"]["condition"] == "service_healthy"
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert services["migrate"].get("restart") == "no"
    # Whatever is waited for as healthy has a health check (its own or its image's).
    for name, service in services.items():
        for dependency, rule in service.get("depends_on", {}).items():
            if rule["condition"] == "service_healthy":
                target = services[dependency]
                has_check = "healthcheck" in target or (
                    "target" in target.get("build", {})
                    and dockerfile.effective(target["build"]["target"], "HEALTHCHECK") is not None
                )
                assert has_check, f"{name} waits for {dependency}, which has no health check"


def test_workers_get_their_shutdown_grace_before_being_killed(services: dict[str, Any]) -> None:
    worker = services["worker"]
    grace = float(
        _environment(worker).get(
            "ORCHESTRATOR_WORKER_SHUTDOWN_GRACE_SECONDS",
            Settings.model_fields["worker_shutdown_grace_seconds"].default,
        )
    )
    assert _duration_seconds(worker["stop_grace_period"]) > grace


def test_infrastructure_images_are_pinned_and_state_is_in_named_volumes(
    compose: dict[str, Any], services: dict[str, Any]
) -> None:
    for name, service in services.items():
        if "image" in service:
            assert pinned(service["image"]), f"{name}: {service['image']} is not an exact version"
    assert services["rabbitmq"]["image"].endswith("-management")
    assert "postgres-data:/var/lib/postgresql/data" in services["postgres"]["volumes"]
    assert "postgres-data" in compose["volumes"]
    # RabbitMQ's data directory is named after the host name: it must not change on recreate.
    assert services["rabbitmq"]["hostname"] == "rabbitmq"


def test_grafana_is_provisioned_from_deploy_grafana(services: dict[str, Any]) -> None:
    mounts = {m.split(":")[0]: m.split(":")[1] for m in services["grafana"]["volumes"]}
    assert (
        mounts["./deploy/grafana/provisioning/datasources"]
        == "/etc/grafana/provisioning/datasources"
    )
    assert (
        mounts["./deploy/grafana/provisioning/dashboards"] == "/etc/grafana/provisioning/dashboards"
    )
    dashboards_in_container = mounts["./deploy/grafana/dashboards"]
    # The dashboard provider reads the directory compose mounts the dashboards at, and the
    # datasource is the compose Prometheus.
    for provider_file in (ROOT / "deploy/grafana/provisioning/dashboards").glob("*.y*ml"):
        providers = yaml.safe_load(provider_file.read_text())["providers"]
        assert {p["options"]["path"] for p in providers} == {dashboards_in_container}
    for source_file in (ROOT / "deploy/grafana/provisioning/datasources").glob("*.y*ml"):
        sources = yaml.safe_load(source_file.read_text())["datasources"]
        assert "http://prometheus:9090" in {s.get("url") for s in sources}
    assert services["prometheus"]["volumes"][0] == (
        "./deploy/prometheus/prometheus.yml:/etc/prometheus/prometheus.yml:ro"
    )


def _scrape_targets(config: dict[str, Any]) -> dict[str, set[tuple[str, int]]]:
    """job name -> (host, port) of each static target and DNS name it scrapes."""
    targets: dict[str, set[tuple[str, int]]] = {}
    for job in config["scrape_configs"]:
        found = targets.setdefault(job["job_name"], set())
        for static in job.get("static_configs", []):
            for target in static["targets"]:
                host, _, port = target.rpartition(":")
                found.add((host, int(port)))
        for dns in job.get("dns_sd_configs", []):
            assert dns.get("type", "SRV") == "A", "Docker's DNS answers A records"
            found.update((name, int(dns["port"])) for name in dns["names"])
    return targets


def test_prometheus_scrapes_every_role_and_every_replica(services: dict[str, Any]) -> None:
    config = yaml.safe_load(PROMETHEUS.read_text())
    targets = _scrape_targets(config)
    for role in ROLES:
        # The job label is the role, on the role's port; several replicas need DNS discovery
        # (a static host name would reach one replica only).
        assert targets[role] == {(role, default_port(role))}, role
        job = next(j for j in config["scrape_configs"] if j["job_name"] == role)
        if _replicas(services[role]) > 1:
            assert "dns_sd_configs" in job and "static_configs" not in job, role
    for job, hosts in targets.items():
        for host, _ in hosts:
            assert host in services or host == "127.0.0.1", f"{job} scrapes unknown host {host}"


def test_prometheus_accepts_the_configuration(tmp_path: Path) -> None:
    if not Path(PROMTOOL).exists():
        pytest.skip("promtool is not there (make system-packages unpacks Prometheus)")
    result = subprocess.run(
        [PROMTOOL, "check", "config", str(PROMETHEUS)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_example_worker_image_adds_importable_jobs() -> None:
    from orchestrator.catalog import Catalog

    dockerfile = parse_dockerfile(ROOT / "examples/worker.Dockerfile")
    (stage,) = dockerfile.stages
    assert stage.base == "${ORCHESTRATOR_WORKER_IMAGE}"
    assert pinned(dockerfile.global_args["ORCHESTRATOR_WORKER_IMAGE"])
    env = dict(i.arguments.split("=", 1) for i in stage.all("ENV"))
    assert not unknown_settings(env)
    copies = [i.words for i in stage.all("COPY")]
    assert ["examples/", "/app/examples/"] in copies
    # /app is on the image's PYTHONPATH, so these modules import, and they hold jobs.
    catalog = Catalog.from_modules(env["ORCHESTRATOR_JOBS"].split(","))
    assert len(catalog) > 0
