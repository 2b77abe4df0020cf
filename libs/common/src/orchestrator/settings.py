"""The one typed settings object every service reads (environment prefix ``ORCHESTRATOR_``)."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated, Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

QUEUE_NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")


def _split_csv(value: object) -> object:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


class ApiKey:
    """One configured API key: the secret and the role it grants (``admin`` or ``read``)."""

    __slots__ = ("role", "secret")

    def __init__(self, secret: str, role: Literal["admin", "read"]) -> None:
        self.secret = secret
        self.role = role

    @classmethod
    def parse(cls, text: str) -> ApiKey:
        secret, _, role = text.partition(":")
        role = role or "admin"
        if role not in ("admin", "read"):
            raise ValueError(f"API key role must be 'admin' or 'read', not {role!r}")
        if not secret:
            raise ValueError("API key secret is empty")
        return cls(secret, role)  # type: ignore[arg-type]  # narrowed by the check above


class Settings(BaseSettings):
    """Configuration shared by every role; each field maps to ``ORCHESTRATOR_<FIELD>``."""

    model_config = SettingsConfigDict(env_prefix="ORCHESTRATOR_", extra="ignore")

    database_url: str = "sqlite:///./orchestrator.db"
    amqp_url: str = "amqp://guest:guest@localhost:5672/"
    #: Prefix of every exchange and queue name; tests use a unique one each.
    broker_namespace: str = "orchestrator"
    jobs: Annotated[list[str], NoDecode] = Field(default_factory=list)
    api_keys: Annotated[list[str], NoDecode] = Field(default_factory=list)
    api_host: str = "127.0.0.1"
    api_port: int = 5001
    max_body_bytes: int = 1024 * 1024
    #: Quorum-queue delivery limit. On RabbitMQ 3.x every return of a message counts toward it,
    #: including the returns a busy worker makes, so it is generous.
    delivery_limit: int = 20
    publish_timeout_seconds: float = 5.0
    worker_concurrency: int = 16
    worker_queues: Annotated[list[str], NoDecode] = Field(default_factory=lambda: ["default"])
    lease_seconds: float = 30.0
    heartbeat_seconds: float = 5.0
    #: The relay leaves a pending publication alone for this long so the fast path can send it.
    outbox_relay_after_seconds: float = 2.0
    outbox_relay_interval_seconds: float = 1.0
    job_retention_seconds: float = 24 * 3600.0
    traceback_max_chars: int = 16_000
    #: Port of /healthz, /readyz and /metrics for the roles without an HTTP API (0: none).
    worker_ops_port: int = 9101
    scheduler_ops_port: int = 9102
    janitor_ops_port: int = 9103
    log_level: str = "INFO"

    @field_validator("jobs", "api_keys", "worker_queues", mode="before")
    @classmethod
    def _csv(cls, value: object) -> object:
        return _split_csv(value)

    @field_validator("worker_queues")
    @classmethod
    def _queue_names(cls, value: list[str]) -> list[str]:
        for name in value:
            if not QUEUE_NAME_PATTERN.match(name):
                raise ValueError(f"invalid queue name {name!r}")
        return value

    @field_validator("api_keys")
    @classmethod
    def _keys(cls, value: list[str]) -> list[str]:
        for text in value:
            ApiKey.parse(text)
        return value

    @property
    def parsed_api_keys(self) -> list[ApiKey]:
        return [ApiKey.parse(text) for text in self.api_keys]

    @property
    def lease(self) -> timedelta:
        return timedelta(seconds=self.lease_seconds)

    @property
    def job_retention(self) -> timedelta:
        return timedelta(seconds=self.job_retention_seconds)


def load_settings(**overrides: object) -> Settings:
    """Read settings from the environment; keyword overrides win (used by the CLI and tests)."""
    return Settings(**overrides)  # type: ignore[arg-type]  # pydantic-settings accepts field kwargs
