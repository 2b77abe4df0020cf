"""Commands that talk to a running system through its HTTP API (``orchestrator.Client``):
``status``, ``jobs``, ``job``, ``enqueue``, ``requeue`` and ``delete``.

Tables are drawn by :mod:`orchestrator_cli.tables` (rich), imported when a command prints one.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import click

from orchestrator.lifecycle import State
from orchestrator_cli.api_access import ApiAccess, CommandLineError, api_options

#: The seven states, from the pure lifecycle (it loads no store: every command stays quick).
STATES = tuple(state.value for state in State)
#: The most jobs one ``GET /api/v1/jobs`` page returns; ``--limit`` above it reads more pages.
PAGE_LIMIT = 500


Decorator = Callable[[Callable[..., None]], Callable[..., None]]


def _json_option(name: str, expected: type[list[Any]] | type[dict[str, Any]]) -> Decorator:
    """``--args`` / ``--kwargs``: a JSON array or object, refused in one line otherwise."""
    noun = "array" if expected is list else "object"
    example = "'[\"Ada\", 3]'" if expected is list else '\'{"greeting": "Hi"}\''

    def parse(_ctx: click.Context, _param: click.Parameter, text: str | None) -> Any:
        if text is None:
            return expected()
        try:
            value = json.loads(text)
        except ValueError as exc:
            raise CommandLineError(
                f"--{name} is not valid JSON ({exc}): give a JSON {noun}, e.g. --{name} {example}"
            ) from None
        if not isinstance(value, expected):
            raise CommandLineError(
                f"--{name} must be a JSON {noun}, not {_json_kind(value)}: e.g. --{name} {example}"
            )
        return value

    return click.option(
        f"--{name}",
        callback=parse,
        metavar="JSON",
        help=f"The job's {'positional' if expected is list else 'keyword'} arguments as a JSON "
        f"{noun}, e.g. {example}.",
    )


def _json_kind(value: object) -> str:
    kinds = {dict: "an object", list: "an array", str: "a string", bool: "a boolean"}
    if value is None:
        return "null"
    return kinds.get(type(value), "a number")


@click.command()
@api_options
def status(access: ApiAccess) -> None:
    """Show roles, queues and jobs per state.

    The running roles (servers) with their last heartbeat; per queue, the messages ready in
    RabbitMQ, its consumers and the jobs processing; and how many jobs are in each state.
    """
    with access.client() as client:
        servers = client._call("GET", "/servers")["items"]  # the Client has no servers() yet
        stats = client.stats()
    if access.as_json:
        access.emit_json({"servers": servers, **stats})
        return
    from orchestrator_cli import tables

    tables.print_status(servers, stats)


@click.command()
@click.option(
    "--state",
    type=click.Choice(STATES, case_sensitive=False),
    help="Only jobs in this state.",
)
@click.option("--queue", help="Only jobs on this queue.")
@click.option("--name", help="Only jobs with this job name, e.g. examples.jobs.greet.")
@click.option(
    "--limit",
    type=click.IntRange(min=1),
    default=20,
    show_default=True,
    help="Show at most this many jobs, newest first.",
)
@api_options
def jobs(
    access: ApiAccess, state: str | None, queue: str | None, name: str | None, limit: int
) -> None:
    """List jobs, newest first."""
    found: list[dict[str, Any]] = []
    cursor: str | None = None
    with access.client() as client:
        while len(found) < limit:
            page = client.list(
                state=state,
                queue=queue,
                job=name,
                limit=min(limit - len(found), PAGE_LIMIT),
                cursor=cursor,
            )
            found.extend(page["items"])
            cursor = page["next_cursor"]
            if cursor is None:
                break
    if access.as_json:
        access.emit_json({"items": found, "next_cursor": cursor})
        return
    from orchestrator_cli import tables

    tables.print_jobs(found, more=cursor is not None)


@click.command()
@click.argument("job_id", metavar="ID")
@api_options
def job(access: ApiAccess, job_id: str) -> None:
    """Show one job with its history.

    Its arguments, state, attempts, result (when Succeeded) or last error, and every state it
    went through.
    """
    with access.client() as client:
        found = client.get(job_id)
    if access.as_json:
        access.emit_json(found)
        return
    from orchestrator_cli import tables

    tables.print_job(found)


@click.command()
@click.argument("name")
@_json_option("args", list)
@_json_option("kwargs", dict)
@click.option("--queue", help="Run on this queue instead of the job's own.")
@click.option(
    "--delay",
    type=click.FloatRange(min=0),
    metavar="SECONDS",
    help="Schedule it to run this many seconds from now.",
)
@click.option("--wait", is_flag=True, help="Wait until it ends and print its result.")
@click.option(
    "--timeout",
    type=click.FloatRange(min=0),
    default=60.0,
    show_default=True,
    metavar="SECONDS",
    help="With --wait: give up waiting after this long (the job itself goes on).",
)
@api_options
def enqueue(
    access: ApiAccess,
    name: str,
    args: list[Any],
    kwargs: dict[str, Any],
    queue: str | None,
    delay: float | None,
    wait: bool,
    timeout: float,
) -> None:
    """Enqueue a job by name.

    NAME is the job's name in the catalog, e.g. examples.jobs.greet. Prints the new job's id
    on the first line, then its state (with --wait, once it has ended, and its result).
    """
    from orchestrator.jobs import JobCall

    call = JobCall(name, args, kwargs)
    with access.client() as client:
        if delay is None:
            job_id = client.enqueue(call, queue=queue)
        else:
            job_id = client.schedule(call, delay=delay, queue=queue)
        if wait:
            client.wait(job_id, timeout=timeout + (delay or 0.0))
        # The enqueue answers only the id; the job as it is now says more (state, result).
        found = client.get(job_id)
    if access.as_json:
        access.emit_json(found)
        return
    from orchestrator_cli import tables

    tables.print_outcome(found)


@click.command()
@click.argument("job_id", metavar="ID")
@api_options
def requeue(access: ApiAccess, job_id: str) -> None:
    """Run a job again now.

    With a fresh retry budget; refused (409) while the job is Enqueued or Processing.
    """
    with access.client() as client:
        answer = client.requeue(job_id)
    _print_change(access, answer, "requeued")


@click.command()
@click.argument("job_id", metavar="ID")
@api_options
def delete(access: ApiAccess, job_id: str) -> None:
    """Delete a job.

    A running job is told through ctx.cancelled; a Deleted job stays as it is.
    """
    with access.client() as client:
        answer = client.delete(job_id)
    _print_change(access, answer, "deleted")


def _print_change(access: ApiAccess, answer: dict[str, Any], action: str) -> None:
    if access.as_json:
        access.emit_json(answer)
    else:
        click.echo(f"{action} job {answer['id']}: now {answer['state']}")


COMMANDS = (status, jobs, job, enqueue, requeue, delete)


def register(group: click.Group) -> None:
    for command in COMMANDS:
        group.add_command(command)
