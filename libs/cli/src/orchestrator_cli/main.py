"""The ``orchestrator`` command: run one role, every role at once (``dev``), or migrate."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable

import click

from orchestrator.settings import Settings, load_settings
from orchestrator.settings_errors import check_database, exit_on_configuration_error
from orchestrator.settings_errors import shown_url as _shown
from orchestrator.signals import Request, SignalCount
from orchestrator_cli.console_commands import register as register_console_commands

ROLES = ("api", "worker", "scheduler", "janitor")


def _set_env(**values: object) -> None:
    """Command-line options override the environment, which the settings object reads."""
    for name, value in values.items():
        if value is not None:
            os.environ[f"ORCHESTRATOR_{name.upper()}"] = str(value)


def _job_modules_importable() -> None:
    # Job modules are named relative to where the command runs, as with `python -m`.
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())


def _role_main(role: str) -> Callable[[], None]:
    if role == "api":
        from orchestrator_api.main import main as api_main

        return api_main
    if role == "worker":
        from orchestrator_worker.main import main as worker_main

        return worker_main
    if role == "scheduler":
        from orchestrator_scheduler.main import main as scheduler_main

        return scheduler_main
    from orchestrator_janitor.main import main as janitor_main

    return janitor_main


jobs_option = click.option("--jobs", help="Comma-separated job modules (ORCHESTRATOR_JOBS).")


@click.group()
@click.version_option(package_name="orchestrator-cli", prog_name="orchestrator")
@click.option(
    "--debug",
    is_flag=True,
    help="Show the traceback of a configuration error too (ORCHESTRATOR_DEBUG).",
)
def cli(debug: bool) -> None:
    """Orchestrator: background jobs on RabbitMQ.

    Run the roles (api, worker, scheduler, janitor, or all of them with dev), migrate the store
    (db upgrade), or look at and act on a running system through its API (status, jobs, job,
    enqueue, requeue, delete).
    """
    if debug:
        # Through the environment: the roles `dev` starts are processes of their own.
        os.environ["ORCHESTRATOR_DEBUG"] = "1"


@cli.command()
@click.option("--host", help="Address to listen on (ORCHESTRATOR_API_HOST).")
@click.option("--port", type=int, help="Port (ORCHESTRATOR_API_PORT, default 5001).")
@jobs_option
def api(host: str | None, port: int | None, jobs: str | None) -> None:
    """Serve the HTTP API and the dashboard."""
    _set_env(api_host=host, api_port=port, jobs=jobs)
    _job_modules_importable()
    _role_main("api")()


@cli.command()
@click.option("--queues", help="Queues in priority order, e.g. critical,default.")
@click.option("--concurrency", type=int, help="Jobs run at once.")
@jobs_option
def worker(queues: str | None, concurrency: int | None, jobs: str | None) -> None:
    """Claim and run jobs."""
    _set_env(worker_queues=queues, worker_concurrency=concurrency, jobs=jobs)
    _job_modules_importable()
    _role_main("worker")()


@cli.command(short_help="Delayed jobs and retries when due, recurring runs.")
def scheduler() -> None:
    """Turn time into work: delayed jobs and retries when due, recurring runs, the outbox relay.

    Several may run: one holds the lease and schedules, every one relays the outbox.
    """
    _role_main("scheduler")()


@cli.command(short_help="Expiry, dead servers, dead letters.")
def janitor() -> None:
    """Remove expired jobs, dead server records and old dead letters; store dead letters."""
    _role_main("janitor")()


@cli.group()
def db() -> None:
    """Database schema commands."""


@db.command()
def upgrade() -> None:
    """Apply every pending migration to ORCHESTRATOR_DATABASE_URL."""
    from orchestrator.migrate import pending_revisions
    from orchestrator.migrate import upgrade as run_upgrade

    settings = load_settings()
    shown = _shown(settings.database_url)
    check_database(settings.database_url, unreachable_is_error=True)
    pending = pending_revisions(settings.database_url)
    if not pending:
        click.echo(f"database at {shown} is up to date; nothing to apply")
        return
    run_upgrade(settings.database_url)
    click.echo(f"database at {shown}: applied {len(pending)} migration(s)")
    for revision in pending:
        click.echo(f"  {revision}")


def _broker_reachable(urls: list[str]) -> str | None:
    from orchestrator.broker import connect

    async def probe() -> None:
        connection = await connect(urls, name="orchestrator-dev-probe", timeout=5)
        await connection.close()

    try:
        asyncio.run(probe())
    except Exception as exc:
        return repr(exc)
    return None


@cli.command()
@jobs_option
def dev(jobs: str | None) -> None:
    """Run every role locally, one process each, on the configured store and broker."""
    _set_env(jobs=jobs)
    settings = load_settings()
    brokers = ", ".join(_shown(url) for url in settings.broker_urls)
    problem = _broker_reachable(settings.broker_urls)
    node = None
    if problem is not None:
        from orchestrator_cli.private_broker import start_or_explain

        # A private node when rabbitmq-server is installed; else it says how to start one.
        node = start_or_explain(settings.broker_urls, brokers, problem)
    try:
        _run_dev(settings, brokers)
    finally:
        if node is not None:
            node.stop()
            click.echo("private RabbitMQ node stopped", err=True)


def _run_dev(settings: Settings, brokers: str) -> None:
    from orchestrator.catalog import Catalog
    from orchestrator.migrate import upgrade as run_upgrade

    check_database(settings.database_url, unreachable_is_error=True)
    _job_modules_importable()
    # Here, before four roles start: a job module that does not import is one message, not four.
    Catalog.from_modules(settings.jobs)
    run_upgrade(settings.database_url)
    click.echo(f"store: {_shown(settings.database_url)}  broker: {brokers}")
    click.echo(f"API and dashboard: http://localhost:{settings.api_port}/hangfire")
    raise SystemExit(_supervise(ROLES))


def _supervise(roles: tuple[str, ...]) -> int:
    """Start one process per role; when one exits or we are stopped, stop them all.

    Signals follow the roles' rule (``orchestrator.signals``): the first Ctrl-C or SIGTERM is
    forwarded at once and every role stops gracefully (the worker lets running jobs finish
    within its grace period); a second one, a second or more later, stops every role at once.
    A Ctrl-C also reaches the roles from the terminal; they take the forwarded copy for its echo.
    """
    children = {
        role: subprocess.Popen([sys.executable, "-m", "orchestrator_cli", role])  # noqa: S603
        for role in roles
    }
    count = SignalCount()
    requests: list[Request] = []

    def forward(*_: object) -> None:
        request = count.received()
        if request is Request.NONE:
            return
        requests.append(request)
        for child in children.values():
            if child.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    child.send_signal(signal.SIGTERM)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    exit_code = 0
    while not requests:
        exited = [role for role, child in children.items() if child.poll() is not None]
        if exited:
            role = exited[0]
            code = children[role].returncode
            click.echo(f"{role} exited with {code}; stopping the others", err=True)
            exit_code = code or 1
            forward()
            break
        time.sleep(0.2)
    click.echo("stopping: running jobs may finish (Ctrl-C again to stop at once)", err=True)
    _report_stops(children, load_settings().worker_shutdown_grace_seconds + 15)
    return exit_code


def _report_stops(children: dict[str, subprocess.Popen[bytes]], limit: float) -> None:
    """One line per role as it stops; a role still running after ``limit`` seconds is killed."""
    deadline = time.monotonic() + limit
    left = dict(children)
    while left:
        for role, child in list(left.items()):
            if child.poll() is not None:
                click.echo(f"{role} stopped (exit {child.returncode})", err=True)
                del left[role]
        if left and time.monotonic() > deadline:
            for role, child in left.items():
                child.kill()
                click.echo(f"{role} killed: still running {limit:.0f} s after the stop", err=True)
            return
        time.sleep(0.1)


register_console_commands(cli)


def main() -> None:
    exit_on_configuration_error(cli)
