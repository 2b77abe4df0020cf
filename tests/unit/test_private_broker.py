"""What `orchestrator dev` makes of a broker URL when RabbitMQ is not running (pure logic)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from orchestrator_cli.private_broker import PINNED_IMAGE, BrokerAddress, docker_run_line

ROOT = Path(__file__).resolve().parents[2]


def test_the_docker_line_runs_the_image_docker_compose_pins() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    assert compose["services"]["rabbitmq"]["image"] == PINNED_IMAGE


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("amqp://guest:guest@localhost:5672/", BrokerAddress(5672, "guest", "guest", "/")),
        ("amqp://127.0.0.1", BrokerAddress(5672, "guest", "guest", "/")),
        ("amqp://ann:p%40ss@127.0.0.1:5999/jobs", BrokerAddress(5999, "ann", "p@ss", "jobs")),
        ("amqp://localhost:5673/%2F", BrokerAddress(5673, "guest", "guest", "/")),
        ("amqp://[::1]:5673/", None),  # the node listens on 127.0.0.1 only
        # Another machine's broker, or TLS: a private node here would not be what was asked for.
        ("amqp://guest:guest@rabbit.example.com:5672/", None),
        ("amqps://guest:guest@localhost:5671/", None),
        ("amqp://localhost:notaport/", None),
    ],
)
def test_a_private_node_serves_only_a_plain_url_of_this_machine(
    url: str, expected: BrokerAddress | None
) -> None:
    assert BrokerAddress.local(url) == expected


def test_the_docker_line_maps_the_urls_port() -> None:
    line = docker_run_line(BrokerAddress.local("amqp://guest:guest@localhost:5680/"))
    assert line == f"docker run -d --name orchestrator-rabbitmq -p 5680:5672 {PINNED_IMAGE}"


def test_the_docker_line_creates_the_urls_user_and_vhost_without_printing_the_password() -> None:
    line = docker_run_line(BrokerAddress.local("amqp://ann:s3cret@localhost/jobs"))
    assert "-e RABBITMQ_DEFAULT_USER=ann" in line
    assert "-e RABBITMQ_DEFAULT_VHOST=jobs" in line
    assert "RABBITMQ_DEFAULT_PASS=" in line and "s3cret" not in line
