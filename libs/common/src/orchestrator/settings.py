"""The one typed settings object every service reads (environment prefix ``ORCHESTRATOR_``)."""

from __future__ import annotations

import ipaddress
import re
from datetime import timedelta
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import BeforeValidator, Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from orchestrator.bounds import DEFAULT_ARGUMENT_BYTES, DEFAULT_ARGUMENT_DEPTH
from orchestrator.names import QUEUE_NAME_PATTERN

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$")
_UNIT_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
#: Shorter API keys are refused at start-up: a key is the only thing between a network client
#: and the API, and failed guesses are only throttled, not stopped.
MIN_API_KEY_LENGTH = 16
_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def parse_duration(value: object) -> object:
    """``"90"`` or ``"90s"``, ``"15m"``, ``"24h"``, ``"30d"`` → a timedelta (numbers: seconds)."""
    if isinstance(value, int | float):
        return timedelta(seconds=value)
    if isinstance(value, str):
        match = _DURATION.match(value.lower())
        if match is None:
            raise ValueError(f"not a duration: {value!r} (use e.g. 90, 90s, 15m, 24h, 30d)")
        return timedelta(seconds=float(match[1]) * _UNIT_SECONDS[match[2]])
    return value


Duration = Annotated[timedelta, BeforeValidator(parse_duration)]


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
        if len(secret) < MIN_API_KEY_LENGTH:
            # The length only: the message reaches logs, the key must not.
            raise ValueError(
                f"ORCHESTRATOR_API_KEYS: one {role} key has only {len(secret)} characters; keys "
                f"need at least {MIN_API_KEY_LENGTH} (e.g. python -c 'import secrets; "
                "print(secrets.token_urlsafe(32))')"
            )
        return cls(secret, role)  # type: ignore[arg-type]  # narrowed by the check above


class Settings(BaseSettings):
    """Configuration shared by every role; each field maps to ``ORCHESTRATOR_<FIELD>``."""

    # Settings hold secrets (keys, passwords in URLs): a refused value is never quoted back.
    model_config = SettingsConfigDict(
        env_prefix="ORCHESTRATOR_", extra="ignore", hide_input_in_errors=True
    )

    database_url: str = "sqlite:///./orchestrator.db"
    amqp_url: str = "amqp://guest:guest@localhost:5672/"
    #: The nodes of a RabbitMQ cluster, comma-separated; when set it is used instead of
    #: ``amqp_url``. Every role connects to one and fails over to another (orchestrator.broker).
    amqp_urls: Annotated[list[str], NoDecode] = Field(default_factory=list)
    #: Prefix of every exchange and queue name; tests use a unique one each.
    broker_namespace: str = "orchestrator"
    #: Replicas of each quorum queue in a cluster (``x-quorum-initial-group-size``), applied
    #: when a queue is first declared; unset: every node the cluster has at that moment. A
    #: queue that already exists keeps its arguments: changing this needs new queues.
    quorum_group_size: int | None = Field(default=None, ge=1)
    jobs: Annotated[list[str], NoDecode] = Field(default_factory=list)
    api_keys: Annotated[list[str], NoDecode] = Field(default_factory=list)
    api_host: str = "127.0.0.1"
    api_port: int = 5001
    max_body_bytes: int = 1024 * 1024
    #: Host names (besides loopback names) the API answers under: ``name`` or ``.example.com``
    #: (that domain and its subdomains), ``*`` for any. Without keys only loopback names and these
    #: are served (a DNS-rebound name is refused); with keys, when set, only these and loopback.
    allowed_hosts: Annotated[list[str], NoDecode] = Field(default_factory=list)
    #: Origins (``scheme://host[:port]``) besides the API's own whose browser pages may send
    #: state-changing requests.
    allowed_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)
    #: Addresses or networks of reverse proxies whose ``X-Forwarded-For``/``-Proto``/``-Host``
    #: are believed (client address for throttling, https for cookies, the public host name).
    #: Loopback-only mode never believes them.
    trusted_proxies: Annotated[list[str], NoDecode] = Field(default_factory=list)
    #: Dashboard cookies ``Secure``: unset follows the request's scheme (https directly or from
    #: a trusted proxy); ``true`` always (behind any TLS proxy), ``false`` never.
    cookie_secure: bool | None = None
    #: Failed sign-ins and unknown bearer keys a client may make at once, then this many a
    #: minute (a token bucket per client address); past it, 429 with Retry-After.
    auth_failure_burst: int = Field(default=10, ge=1)
    auth_failures_per_minute: float = Field(default=6.0, gt=0)
    #: A client has this long to send a request's line and headers (from connecting, or from the
    #: previous answer), and this long to send its body; then the connection is closed.
    header_timeout_seconds: float = Field(default=10.0, gt=0)
    body_timeout_seconds: float = Field(default=30.0, gt=0)
    #: An idle keep-alive connection is closed after this long.
    keep_alive_seconds: int = Field(default=5, ge=1)
    #: A job's arguments: how deeply values may nest, and how many bytes of JSON they may take
    #: (``orchestrator.bounds``); deeper or larger ones are refused at enqueue with 422.
    max_argument_depth: int = Field(default=DEFAULT_ARGUMENT_DEPTH, ge=1, le=200)
    max_argument_bytes: int = Field(default=DEFAULT_ARGUMENT_BYTES, ge=1)
    #: Queues accepted beyond those of the catalog's jobs (an enqueue naming any other queue is
    #: refused, so a request cannot make the broker declare queues nobody consumes).
    queues: Annotated[list[str], NoDecode] = Field(default_factory=list)
    #: Quorum-queue delivery limit. On RabbitMQ 3.x every return of a message counts toward it;
    #: workers never return one (they hand back through the outbox), so only deliveries that
    #: crashed a worker or lost their channel before the claim committed count.
    delivery_limit: int = 20
    publish_timeout_seconds: float = 5.0
    worker_concurrency: int = 16
    worker_queues: Annotated[list[str], NoDecode] = Field(default_factory=lambda: ["default"])
    #: On SIGTERM a worker lets running jobs finish this long, then hands the rest back.
    worker_shutdown_grace_seconds: float = Field(default=30.0, ge=0)
    lease_seconds: float = 30.0
    heartbeat_seconds: float = 5.0
    #: The relay leaves a pending publication alone for this long so the fast path can send it.
    outbox_relay_after_seconds: float = 2.0
    outbox_relay_interval_seconds: float = 1.0
    job_retention_seconds: float = 24 * 3600.0
    #: ``ORCHESTRATOR_JOB_RETENTION`` (e.g. ``24h``); wins over ``_JOB_RETENTION_SECONDS``.
    job_retention_duration: Duration | None = Field(
        default=None, validation_alias="orchestrator_job_retention"
    )
    #: When set, the janitor also deletes Failed jobs this long after they failed (Hangfire's
    #: delete-on-exhaustion); by default Failed jobs stay until a person acts.
    failed_job_retention: Duration | None = None
    #: Per-hour state counters older than this are removed (at least 7 days).
    counter_retention: Duration = timedelta(days=30)
    dead_letter_retention: Duration = timedelta(days=7)
    #: Bytes of a dead letter's body kept in the store.
    dead_letter_body_max_bytes: int = Field(default=64 * 1024, ge=0)
    #: Runs whose worker was lost (lease expired) before the job is Failed ("worker lost").
    worker_lost_limit: int = Field(default=3, ge=1)
    #: An Enqueued job whose message is missing from its queue (purged, lost with a broker node)
    #: is published again once it has waited this long unclaimed; a job that entered Enqueued
    #: more recently is never republished (orchestrator_scheduler.reconcile).
    republish_after_seconds: float = Field(default=300.0, gt=0)
    #: How often the active scheduler looks for expired leases.
    lease_expiry_interval_seconds: float = 1.0
    traceback_max_chars: int = 16_000
    #: Largest result a job may return, as JSON; a larger one fails the job
    #: (``ResultNotStorable``), and the one-job read shows no larger stored one.
    max_result_bytes: int = Field(default=1024 * 1024, ge=1)
    #: A worker whose store writes have failed or hung this long fails its /healthz, so that
    #: an orchestrator (Kubernetes' liveness probe) restarts it; /readyz says so at once.
    worker_stall_seconds: float = Field(default=120.0, gt=0)
    #: Port of /healthz, /readyz and /metrics for the roles without an HTTP API (0: none).
    worker_ops_port: int = 9101
    scheduler_ops_port: int = 9102
    janitor_ops_port: int = 9103
    log_level: str = "INFO"
    #: Configuration errors (a bad setting, a database URL that cannot work, a job module that
    #: does not import) print one message and exit 2; with this (``--debug``) also the traceback.
    debug: bool = False
    #: ``console``: readable lines; ``json``: one JSON object a line, for log collectors. Both
    #: carry the job id, job name and trace id on every line a job produces.
    log_format: Literal["console", "json"] = "console"
    #: Access-log the probes (/healthz, /readyz, /metrics) too; off, they would drown the rest.
    log_probes: bool = False
    #: Job filters, ``module:factory`` each, in order (``orchestrator.filters``).
    filters: Annotated[list[str], NoDecode] = Field(default_factory=list)
    #: The scheduler re-promotes a retry whose message is this late (a safety net: the message
    #: through the delay levels normally brings it back on time).
    retry_grace_seconds: float = 60.0
    #: A sync job past its timeout by this much is flagged as overrunning (it keeps its slot).
    timeout_grace_seconds: float = 5.0
    #: How often the lease-holding scheduler samples queue depth, consumers and heartbeat ages
    #: for /metrics (orchestrator_scheduler.gauges).
    gauge_interval_seconds: float = Field(default=5.0, gt=0)

    @field_validator(
        "jobs",
        "api_keys",
        "worker_queues",
        "queues",
        "filters",
        "allowed_hosts",
        "allowed_origins",
        "trusted_proxies",
        "amqp_urls",
        mode="before",
    )
    @classmethod
    def _csv(cls, value: object) -> object:
        return _split_csv(value)

    @field_validator("worker_queues", "queues")
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

    @field_validator("trusted_proxies")
    @classmethod
    def _proxies(cls, value: list[str]) -> list[str]:
        for text in value:
            try:
                ipaddress.ip_network(text, strict=False)
            except ValueError:
                raise ValueError(
                    f"ORCHESTRATOR_TRUSTED_PROXIES: {text!r} is not an address or network"
                ) from None
        return value

    @field_validator("counter_retention")
    @classmethod
    def _counter_retention(cls, value: timedelta) -> timedelta:
        if value < timedelta(days=7):
            raise ValueError("ORCHESTRATOR_COUNTER_RETENTION must be at least 7 days")
        return value

    @field_validator("amqp_urls")
    @classmethod
    def _amqp_urls(cls, value: list[str]) -> list[str]:
        for url in value:
            if not url.startswith(("amqp://", "amqps://")):
                raise ValueError("ORCHESTRATOR_AMQP_URLS holds amqp:// or amqps:// URLs only")
        return value

    @field_validator("amqp_url")
    @classmethod
    def _amqp_url(cls, value: str) -> str:
        if not value.startswith(("amqp://", "amqps://")):
            raise ValueError(
                "not a broker URL: use amqp://user:password@host:5672/vhost (or amqps://)"
            )
        try:
            urlsplit(value).port  # noqa: B018 - parsing it is the check
        except ValueError:
            raise ValueError("the port is not a number (amqp://user:password@host:5672/)") from None
        return value

    @field_validator("log_level")
    @classmethod
    def _log_level(cls, value: str) -> str:
        if value.upper() not in _LOG_LEVELS:
            raise ValueError(f"unknown log level; use one of {', '.join(_LOG_LEVELS)}")
        return value.upper()

    @property
    def broker_urls(self) -> list[str]:
        """The broker addresses every role connects through: ``amqp_urls``, else ``amqp_url``."""
        return list(self.amqp_urls) or [self.amqp_url]

    @property
    def parsed_api_keys(self) -> list[ApiKey]:
        return [ApiKey.parse(text) for text in self.api_keys]

    @property
    def trusted_proxy_networks(self) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
        return [ipaddress.ip_network(text, strict=False) for text in self.trusted_proxies]

    @property
    def lease(self) -> timedelta:
        return timedelta(seconds=self.lease_seconds)

    @property
    def job_retention(self) -> timedelta:
        if self.job_retention_duration is not None:
            return self.job_retention_duration
        return timedelta(seconds=self.job_retention_seconds)


def load_settings(**overrides: object) -> Settings:
    """Read settings from the environment; keyword overrides win (used by the CLI and tests)."""
    return Settings(**overrides)  # type: ignore[arg-type]  # pydantic-settings accepts field kwargs
