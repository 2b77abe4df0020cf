"""The Dockerfile, checked offline: pinned bases, a non-root user, health checks, one package per
role; its health-check script against a real ops server; and its build steps run for real (the
same `uv sync` lines into a directory per role), each role then started from its own environment
against the real store and broker, as its container would run it."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import tomllib
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import httpx
import pytest
import sqlalchemy as sa

from orchestrator import ops_server
from orchestrator.db import create_engine
from tests.deploy.support import (
    PACKAGE_DIRS,
    ROLES,
    ROOT,
    Dockerfile,
    console_scripts,
    default_port,
    load_healthcheck,
    package_dependencies,
    parse_dockerfile,
    pinned,
    unknown_settings,
)
from tests.support.system import free_port

TARGETS = (*ROLES, "cli")
HEALTHCHECK_IN_IMAGE = "/usr/local/lib/orchestrator/healthcheck.py"


@pytest.fixture(scope="module")
def dockerfile() -> Dockerfile:
    return parse_dockerfile(ROOT / "Dockerfile")


def _package_of(target: str) -> str:
    return f"orchestrator-{target}"


# --- static checks ------------------------------------------------------------------------------


def test_every_pulled_image_is_pinned(dockerfile: Dockerfile) -> None:
    images = dockerfile.external_images()
    assert images, "the Dockerfile pulls its bases"
    for image in images:
        assert pinned(image), f"{image} is not pinned to an exact version"
    pythons = {i for i in images if i.startswith("python:")}
    # One Python image: the venv built in the builder points at its interpreter's path.
    assert len(pythons) == 1
    (python,) = pythons
    assert python.split(":")[1].count(".") >= 2, "python:3.11.x, not a floating 3.11"
    assert python.split(":")[1].startswith("3.11."), "the workspace requires Python 3.11"
    assert any(i.startswith("ghcr.io/astral-sh/uv:") for i in images)


@pytest.mark.parametrize("target", TARGETS)
def test_each_target_runs_its_own_package_as_a_non_root_user(
    dockerfile: Dockerfile, target: str
) -> None:
    chain = dockerfile.chain(target)
    user = dockerfile.effective(target, "USER")
    assert user is not None
    uid = user.arguments.split(":")[0]
    # Numeric, so Kubernetes' runAsNonRoot can verify it, and not root.
    assert uid.isdigit() and int(uid) != 0
    # The runtime stage holds no uv and no sources: only the environment built for this target.
    copies_from = [
        w for s in chain for c in s.all("COPY") for w in c.words if w.startswith("--from=")
    ]
    assert copies_from == [f"--from=build-{target}"]
    assert "uv" not in {s.base for s in chain}
    build = dockerfile.targets[f"build-{target}"]
    syncs = [r.arguments for r in build.all("RUN") if "uv sync" in r.arguments]
    assert len(syncs) == 2
    for sync in syncs:
        for flag in ("--locked", "--no-dev", "--no-editable", f"--package {_package_of(target)}"):
            assert flag in sync, f"build-{target}: {flag} missing"
    assert "--no-install-workspace" in syncs[0], "dependencies first, in a layer of their own"
    # The command is the package's own console script.
    cmd = dockerfile.effective(target, "CMD")
    assert cmd is not None
    command = cmd.exec_form()
    assert command is not None
    script = "orchestrator" if target == "cli" else f"orchestrator-{target}"
    assert command[0] == script and script in console_scripts(_package_of(target))


@pytest.mark.parametrize("role", ROLES)
def test_each_role_checks_its_own_port(dockerfile: Dockerfile, role: str) -> None:
    check = dockerfile.effective(role, "HEALTHCHECK")
    assert check is not None
    assert check.exec_form() == ["python", HEALTHCHECK_IN_IMAGE, role]
    exposed = dockerfile.effective(role, "EXPOSE")
    assert exposed is not None and exposed.words == [str(default_port(role))]


def test_the_health_check_script_is_in_the_image_and_agrees_with_the_settings(
    dockerfile: Dockerfile,
) -> None:
    runtime = dockerfile.targets["runtime"]
    copies = [c.words for c in runtime.all("COPY")]
    assert ["deploy/docker/healthcheck.py", HEALTHCHECK_IN_IMAGE] in copies
    healthcheck = load_healthcheck()
    assert set(healthcheck.ROLE_PORTS) == set(ROLES)
    for role, (variable, port) in healthcheck.ROLE_PORTS.items():
        assert port == default_port(role)
        assert not unknown_settings([variable])


def test_containers_listen_beyond_loopback(dockerfile: Dockerfile) -> None:
    env = {}
    for instruction in dockerfile.targets["runtime"].all("ENV"):
        for word in instruction.words:
            name, _, value = word.partition("=")
            env[name] = value
    assert not unknown_settings(env)
    assert env["ORCHESTRATOR_API_HOST"] == "0.0.0.0"
    assert env["PATH"].startswith("/opt/venv/bin:")
    assert env["PYTHONPATH"] == "/app", "worker images put job modules in /app"


def test_the_builder_copies_every_workspace_member(dockerfile: Dockerfile) -> None:
    # `uv sync --locked` checks the lock against every member, so each pyproject.toml is needed.
    members = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["uv"]["workspace"]
    copied = {
        c.words[0] for c in dockerfile.targets["builder"].all("COPY") if "--from=uv" not in c.words
    }
    assert {f"{m}/pyproject.toml" for m in members["members"]} | {"pyproject.toml"} <= copied
    assert set(PACKAGE_DIRS.values()) == set(members["members"])


def test_the_build_context_keeps_what_the_dockerfiles_copy() -> None:
    kept = [
        line[1:].rstrip("/")
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.startswith("!")
    ]
    for path in (ROOT / "Dockerfile", ROOT / "examples/worker.Dockerfile"):
        for stage in parse_dockerfile(path).stages:
            for copy in stage.all("COPY"):
                if any(w.startswith("--from=") for w in copy.words):
                    continue
                for source in copy.words[:-1]:
                    assert any(
                        source.rstrip("/") == k or source.startswith(k + "/") for k in kept
                    ), source


# --- the health-check script against a real ops server ------------------------------------------


def _run_healthcheck(env: dict[str, str], role: str, path: str | None = None) -> int:
    argv = [sys.executable, str(ROOT / "deploy/docker/healthcheck.py"), role]
    if path:
        argv.append(path)
    return subprocess.run(
        argv, env={**os.environ, **env}, capture_output=True, check=False, timeout=30
    ).returncode


async def test_health_check_script_follows_readiness() -> None:
    state = {"store": True}

    async def ready() -> dict[str, bool]:
        return dict(state)

    port = free_port()
    server = await ops_server.serve("127.0.0.1", port, ready)
    assert server is not None
    env = {"ORCHESTRATOR_SCHEDULER_OPS_PORT": str(port)}
    try:
        async with httpx.AsyncClient() as client:
            for _ in range(100):
                with contextlib.suppress(httpx.HTTPError):
                    if (await client.get(f"http://127.0.0.1:{port}/healthz")).status_code == 200:
                        break
                await asyncio.sleep(0.05)
        assert await asyncio.to_thread(_run_healthcheck, env, "scheduler") == 0
        state["store"] = False  # /readyz now answers 503
        assert await asyncio.to_thread(_run_healthcheck, env, "scheduler") == 1
        assert await asyncio.to_thread(_run_healthcheck, env, "scheduler", "/healthz") == 0
    finally:
        await server.stop()
    # Nothing listening: unhealthy. Ops server switched off (port 0): nothing to check.
    assert _run_healthcheck(env, "scheduler") == 1
    assert _run_healthcheck({"ORCHESTRATOR_SCHEDULER_OPS_PORT": "0"}, "scheduler") == 0
    assert _run_healthcheck({}, "no-such-role") == 2


# --- the build steps, run for real, and the roles started from what they built ------------------


def _uv() -> str:
    found = shutil.which("uv") or str(ROOT / ".tools/bin/uv")
    if not Path(found).exists():
        pytest.skip("uv is not installed (make setup installs it)")
    return found


def _build_environment(dockerfile: Dockerfile, target: str, workdir: Path, venv: Path) -> None:
    """Run the builder's and build-<target>'s COPY, ENV and `uv sync` lines, with the work
    directory and the environment's path moved into tmp and this interpreter as the Python."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("UV_", "VIRTUAL_ENV"))}
    for stage in (dockerfile.targets["builder"], dockerfile.targets[f"build-{target}"]):
        for instruction in stage.instructions:
            words = instruction.words
            if instruction.keyword == "ENV":
                env.update(word.split("=", 1) for word in words)
            elif instruction.keyword == "COPY" and not words[0].startswith("--from="):
                *sources, destination = words
                for source in sources:
                    target_path = workdir / destination
                    if (ROOT / source).is_dir():
                        shutil.copytree(
                            ROOT / source,
                            target_path,
                            dirs_exist_ok=True,
                            ignore=shutil.ignore_patterns("__pycache__", "*.pyc"),
                        )
                    else:
                        target_path.mkdir(parents=True, exist_ok=True)
                        shutil.copy(ROOT / source, target_path)
            elif instruction.keyword == "RUN":
                command = [w for w in words if not w.startswith("--mount=")]
                assert command[0] == "uv"
                # Hard links from uv's cache (the image copies out of its cache mount), and no
                # bytecode: the same packages, without 400 MB of copies per test run.
                env.update(
                    UV_PROJECT_ENVIRONMENT=str(venv),
                    UV_PYTHON=sys.executable,
                    UV_COMPILE_BYTECODE="0",
                    UV_LINK_MODE="hardlink",
                )
                result = subprocess.run(
                    [_uv(), *command[1:]],
                    cwd=workdir,
                    env=env,
                    capture_output=True,
                    text=True,
                    check=False,
                    timeout=600,
                )
                assert result.returncode == 0, result.stderr


def _installed(venv: Path) -> set[str]:
    out = subprocess.run(
        [
            str(venv / "bin/python"),
            "-c",
            "import importlib.metadata as m, json; "
            "print(json.dumps(sorted({d.metadata['Name'] for d in m.distributions()})))",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return {_canonical(name) for name in json.loads(out)}


def _canonical(name: str) -> str:
    """A distribution's name as PEP 503 compares them (fastapi_offline is fastapi-offline)."""
    return re.sub(r"[-_.]+", "-", name).lower()


@pytest.fixture(scope="module")
def environments(
    dockerfile: Dockerfile, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Path]]:
    """target -> the environment its Dockerfile stage builds (what the image has in /opt/venv)."""
    _uv()
    built = {}
    for target in TARGETS:
        base = tmp_path_factory.mktemp(f"image-{target}")
        _build_environment(dockerfile, target, base / "src", base / "venv")
        built[target] = base / "venv"
    yield built
    for venv in built.values():
        shutil.rmtree(venv.parent, ignore_errors=True)


@pytest.mark.e2e
def test_each_environment_holds_its_role_and_nothing_else(environments: dict[str, Path]) -> None:
    services = {f"orchestrator-{r}" for r in ROLES}
    dev_only = {"pytest", "mypy", "ruff", "playwright", "testcontainers", "import-linter"}
    for target, venv in environments.items():
        installed = _installed(venv)
        package = _package_of(target)
        assert {package, "orchestrator-common"} <= installed
        assert not installed & dev_only, target
        for dependency in package_dependencies(package):
            assert _canonical(dependency) in installed, f"{target}: {dependency} missing"
        if target != "cli":
            assert installed & services == {package}, f"{target} holds another role"
            assert "orchestrator-cli" not in installed
    assert "fastapi" in _installed(environments["api"])
    assert "fastapi" not in _installed(environments["worker"])


@contextlib.contextmanager
def _fresh_database(admin_url: str) -> Iterator[str]:
    """An empty database (not migrated: the cli image's `orchestrator db upgrade` does that)."""
    name = f"orch_img_{uuid.uuid4().hex[:10]}"

    async def admin(statement: str) -> None:
        engine = create_engine(admin_url)
        try:
            async with engine.connect() as conn:
                conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
                await conn.execute(sa.text(statement))
        finally:
            await engine.dispose()

    asyncio.run(admin(f'CREATE DATABASE "{name}"'))
    parts = urlsplit(admin_url)
    try:
        yield urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, parts.fragment))
    finally:
        asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def _wait_healthy(
    venv: Path, role: str, env: dict[str, str], process: subprocess.Popen[bytes], log: Path
) -> None:
    for _ in range(300):
        assert process.poll() is None, f"{role} exited:\n{log.read_text()}"
        check = subprocess.run(
            [str(venv / "bin/python"), str(ROOT / "deploy/docker/healthcheck.py"), role],
            env=env,
            capture_output=True,
            check=False,
        )
        if check.returncode == 0:
            return
        time.sleep(0.2)
    raise AssertionError(f"{role} never became ready:\n{log.read_text()}")


@pytest.fixture
def app_dir(tmp_path: Path) -> Path:
    """/app of the example worker image: examples/ copied in, as examples/worker.Dockerfile does."""
    app = tmp_path / "app"
    shutil.copytree(
        ROOT / "examples", app / "examples", ignore=shutil.ignore_patterns("__pycache__", "*.pyc")
    )
    return app


@pytest.mark.e2e
def test_the_roles_run_from_their_environments(
    environments: dict[str, Path],
    postgres_admin_url: str,
    amqp_url: str,
    namespace: str,
    app_dir: Path,
    tmp_path: Path,
) -> None:
    """Migrate with the cli environment, start each role from its own, as compose does, and run
    an example job through them: the API has no job code, it learns the job from the worker."""
    key = "image-test-admin-key"
    with _fresh_database(postgres_admin_url) as database_url:
        common = {
            "PATH": os.environ["PATH"],
            "PYTHONPATH": str(app_dir),  # the images' PYTHONPATH=/app
            "PYTHONUNBUFFERED": "1",
            "ORCHESTRATOR_DATABASE_URL": database_url,
            "ORCHESTRATOR_AMQP_URL": amqp_url,
            "ORCHESTRATOR_BROKER_NAMESPACE": namespace,
            "ORCHESTRATOR_API_HOST": "127.0.0.1",
            "ORCHESTRATOR_API_PORT": str(free_port()),
            "ORCHESTRATOR_WORKER_OPS_PORT": str(free_port()),
            "ORCHESTRATOR_SCHEDULER_OPS_PORT": str(free_port()),
            "ORCHESTRATOR_JANITOR_OPS_PORT": str(free_port()),
        }
        migrate = subprocess.run(
            [str(environments["cli"] / "bin/orchestrator"), "db", "upgrade"],
            env=common,
            cwd=app_dir,
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
        )
        assert migrate.returncode == 0, migrate.stderr
        role_env = {
            "api": {**common, "ORCHESTRATOR_API_KEYS": f"{key}:admin"},
            "worker": {**common, "ORCHESTRATOR_JOBS": "examples.jobs"},  # the example image's ENV
            "scheduler": common,
            "janitor": common,
        }
        processes: dict[str, subprocess.Popen[bytes]] = {}
        try:
            for role in ROLES:
                log = tmp_path / f"{role}.log"
                with log.open("wb") as out:
                    processes[role] = subprocess.Popen(
                        [str(environments[role] / f"bin/orchestrator-{role}")],
                        env=role_env[role],
                        cwd=app_dir,
                        stdout=out,
                        stderr=subprocess.STDOUT,
                    )
            for role in ROLES:
                _wait_healthy(
                    environments[role],
                    role,
                    role_env[role],
                    processes[role],
                    tmp_path / f"{role}.log",
                )
            base = f"http://127.0.0.1:{common['ORCHESTRATOR_API_PORT']}"
            headers = {"Authorization": f"Bearer {key}"}
            with httpx.Client(base_url=base, headers=headers, timeout=10) as client:
                created = client.post(
                    "/api/v1/jobs", json={"job": "examples.jobs.greet", "args": ["Ada"]}
                )
                assert created.status_code == 201, created.text
                job_id = created.json()["id"]
                for _ in range(300):
                    job = client.get(f"/api/v1/jobs/{job_id}").json()
                    if job["state"] in ("Succeeded", "Failed"):
                        break
                    time.sleep(0.1)
                assert job["state"] == "Succeeded", job
                assert job["result"] == "Hello, Ada!"
        finally:
            for process in processes.values():
                if process.poll() is None:
                    process.send_signal(signal.SIGTERM)
            codes = {role: process.wait(timeout=60) for role, process in processes.items()}
        # Each stopped gracefully on SIGTERM, with exit code 0.
        assert codes == dict.fromkeys(ROLES, 0), codes
        assert "Application shutdown complete" in (tmp_path / "api.log").read_text()
