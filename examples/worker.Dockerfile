# A worker image with your own jobs: the published worker image plus your code.
#
#   docker build --target worker -t orchestrator-worker:0.1.0 .      (or pull the published one)
#   docker build -f examples/worker.Dockerfile -t my-worker:0.1.0 .
#
# docker-compose.yml builds the workers this way, from the base it builds itself. For your own
# project copy this file, point ORCHESTRATOR_WORKER_IMAGE at the base image in your registry,
# copy your package instead of examples/ and name your modules in ORCHESTRATOR_JOBS.
ARG ORCHESTRATOR_WORKER_IMAGE=orchestrator-worker:0.1.0
FROM ${ORCHESTRATOR_WORKER_IMAGE}

# Your jobs' own dependencies, if they have any, go into the image's environment (/opt/venv);
# the base image runs as a non-root user, so switch to root for the install only:
#   USER root
#   COPY --from=ghcr.io/astral-sh/uv:0.13.9 /uv /usr/local/bin/uv
#   COPY requirements.txt /tmp/requirements.txt
#   RUN uv pip install --python /opt/venv/bin/python --no-cache -r /tmp/requirements.txt
#   USER 10001:10001

# Job modules are imported from /app (on PYTHONPATH); root-owned, so read-only to the worker.
COPY examples/ /app/examples/
ENV ORCHESTRATOR_JOBS=examples.jobs
