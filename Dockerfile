# syntax=docker/dockerfile:1.7
#
# One image per role, each holding only that role's package and its locked dependencies:
#
#   docker build --target api       -t orchestrator-api:0.1.0 .
#   docker build --target worker    -t orchestrator-worker:0.1.0 .     (base of your worker image)
#   docker build --target scheduler -t orchestrator-scheduler:0.1.0 .
#   docker build --target janitor   -t orchestrator-janitor:0.1.0 .
#   docker build --target cli       -t orchestrator-cli:0.1.0 .        (`orchestrator db upgrade`)
#
# The worker image has no jobs of its own: build yours FROM it (examples/worker.Dockerfile).
# The API needs no job code: it validates requests against the schemas workers register in the
# store. Why each choice: docs/deployment.md.

# --- uv, pinned; only its binary is copied into the builder -------------------------------------
FROM ghcr.io/astral-sh/uv:0.13.9 AS uv

# --- builder: the lock plus every member's pyproject.toml, enough to check the lock -------------
FROM python:3.11.14-slim-bookworm AS builder
COPY --from=uv /uv /usr/local/bin/uv
# Compile bytecode at build time (the runtime file system may be read-only); copy files out of the
# cache mount; never download a Python: the venv must use this image's /usr/local/bin/python3.11,
# which the runtime stage has at the same path.
ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_PYTHON=/usr/local/bin/python3.11 \
    UV_PROJECT_ENVIRONMENT=/opt/venv
WORKDIR /src
COPY pyproject.toml uv.lock ./
COPY libs/common/pyproject.toml libs/common/
COPY libs/cli/pyproject.toml libs/cli/
COPY services/api/pyproject.toml services/api/
COPY services/worker/pyproject.toml services/worker/
COPY services/scheduler/pyproject.toml services/scheduler/
COPY services/janitor/pyproject.toml services/janitor/

# Each build-<role> stage: third-party dependencies first (a layer that survives code changes),
# then the role's own packages, installed as wheels (--no-editable) so /opt/venv stands alone.
FROM builder AS build-api
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --locked --no-dev --no-editable --no-install-workspace --package orchestrator-api
COPY libs/common/ libs/common/
COPY services/api/ services/api/
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --locked --no-dev --no-editable --package orchestrator-api

FROM builder AS build-worker
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --locked --no-dev --no-editable --no-install-workspace --package orchestrator-worker
COPY libs/common/ libs/common/
COPY services/worker/ services/worker/
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --locked --no-dev --no-editable --package orchestrator-worker

FROM builder AS build-scheduler
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --locked --no-dev --no-editable --no-install-workspace --package orchestrator-scheduler
COPY libs/common/ libs/common/
COPY services/scheduler/ services/scheduler/
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --locked --no-dev --no-editable --package orchestrator-scheduler

FROM builder AS build-janitor
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --locked --no-dev --no-editable --no-install-workspace --package orchestrator-janitor
COPY libs/common/ libs/common/
COPY services/janitor/ services/janitor/
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --locked --no-dev --no-editable --package orchestrator-janitor

# The `orchestrator` command depends on every role (it can run any of them).
FROM builder AS build-cli
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --locked --no-dev --no-editable --no-install-workspace --package orchestrator-cli
COPY libs/ libs/
COPY services/ services/
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --locked --no-dev --no-editable --package orchestrator-cli

# --- runtime: the same slim Python, no uv, no build files, a fixed non-root user ----------------
FROM python:3.11.14-slim-bookworm AS runtime
# A numeric USER lets Kubernetes' runAsNonRoot verify it; /app is root-owned and read-only to it.
RUN groupadd --system --gid 10001 orchestrator \
 && useradd --system --uid 10001 --gid 10001 --home-dir /app --no-create-home \
        --shell /usr/sbin/nologin orchestrator
# Containers listen on every interface (the settings default, 127.0.0.1, suits one host) and
# import job modules from /app, where worker images put user code.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONPATH=/app \
    ORCHESTRATOR_API_HOST=0.0.0.0
COPY deploy/docker/healthcheck.py /usr/local/lib/orchestrator/healthcheck.py
WORKDIR /app
USER 10001:10001

FROM runtime AS api
COPY --from=build-api /opt/venv /opt/venv
EXPOSE 5001
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "/usr/local/lib/orchestrator/healthcheck.py", "api"]
CMD ["orchestrator-api"]

FROM runtime AS worker
COPY --from=build-worker /opt/venv /opt/venv
EXPOSE 9101
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "/usr/local/lib/orchestrator/healthcheck.py", "worker"]
CMD ["orchestrator-worker"]

FROM runtime AS scheduler
COPY --from=build-scheduler /opt/venv /opt/venv
EXPOSE 9102
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "/usr/local/lib/orchestrator/healthcheck.py", "scheduler"]
CMD ["orchestrator-scheduler"]

FROM runtime AS janitor
COPY --from=build-janitor /opt/venv /opt/venv
EXPOSE 9103
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "/usr/local/lib/orchestrator/healthcheck.py", "janitor"]
CMD ["orchestrator-janitor"]

# One-shot commands (`orchestrator db upgrade`); no long-running process, so no HEALTHCHECK.
FROM runtime AS cli
COPY --from=build-cli /opt/venv /opt/venv
CMD ["orchestrator", "--help"]
