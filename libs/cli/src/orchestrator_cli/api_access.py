"""How the console commands reach the API: the shared options, the client, errors as one line.

Importing this module costs click only: ``orchestrator.client`` (httpx, tracing) is loaded when
a command runs, so ``orchestrator worker`` and ``--help`` never pay for it.
"""

from __future__ import annotations

import contextlib
import functools
import json
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from orchestrator.client import Client

DEFAULT_URL = "http://localhost:5001"
URL_SETTING = "ORCHESTRATOR_URL"
KEY_SETTING = "ORCHESTRATOR_API_KEY"
#: Exit codes: the API refused or the job ended badly; the command line itself is wrong.
EXIT_FAILED = 1
EXIT_USAGE = 2


class CommandError(click.ClickException):
    """One line on stderr, ``error: …``, and exit code 1: the API refused, or the job failed."""

    exit_code = EXIT_FAILED

    def show(self, file: IO[Any] | None = None) -> None:
        click.echo(f"error: {self.message}", file=file or sys.stderr)


class CommandLineError(CommandError):
    """A value on the command line that cannot work: one line too, and exit code 2."""

    exit_code = EXIT_USAGE


@dataclass(frozen=True)
class ApiAccess:
    """Where the API is, the key to show it, and whether the answer is printed as JSON."""

    url: str
    key: str | None
    as_json: bool
    timeout: float = 10.0

    @contextlib.contextmanager
    def client(self) -> Iterator[Client]:
        """A client of the API; what goes wrong inside becomes one :class:`CommandError`."""
        from orchestrator.client import Client

        try:
            client = Client(self.url, self.key, timeout=self.timeout)
        except ValueError as exc:  # not an http(s) URL
            raise CommandLineError(f"--url / {URL_SETTING}: {exc}") from None
        try:
            with client:
                yield client
        except Exception as exc:
            raise self.explain(exc) from None

    def explain(self, exc: Exception) -> Exception:
        """The one-line error for what the client raised (other exceptions as they are)."""
        import httpx

        from orchestrator.errors import ApiError, JobFailedError

        if isinstance(exc, ApiError):
            hint = ""
            if exc.status in (401, 403):
                hint = f" (give an API key with --key or {KEY_SETTING})"
            return CommandError(f"the API answered {exc.status} {exc.code}: {exc.message}{hint}")
        if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout):
            reason = getattr(exc, "reason", exc)  # ApiUnavailableError's own words name the URL
            return CommandError(
                f"cannot reach the API at {self.url} ({reason}); is it running (orchestrator dev, "
                f"orchestrator api)? Point --url or {URL_SETTING} at it"
            )
        if isinstance(exc, httpx.TimeoutException):
            return CommandError(f"the API at {self.url} did not answer within {self.timeout:g} s")
        if isinstance(exc, httpx.TransportError):
            return CommandError(f"the connection to the API at {self.url} failed ({exc})")
        if isinstance(exc, JobFailedError):
            return CommandError(str(exc))
        if isinstance(exc, TimeoutError):
            return CommandError(str(exc))
        return exc

    def emit_json(self, value: Any) -> None:
        click.echo(json.dumps(value, indent=2, ensure_ascii=False))


def api_options(command: Callable[..., None]) -> Callable[..., None]:
    """``--url``, ``--key`` and ``--json`` for a command that talks to the API; the command
    receives them as one ``access: ApiAccess`` keyword."""

    @functools.wraps(command)
    def with_access(url: str, key: str | None, as_json: bool, **kwargs: Any) -> None:
        command(access=ApiAccess(url=url, key=key or None, as_json=as_json), **kwargs)

    options = (
        click.option(
            "--url",
            envvar=URL_SETTING,
            show_envvar=True,
            default=DEFAULT_URL,
            show_default=True,
            help="Where the API listens.",
        ),
        click.option(
            "--key",
            envvar=KEY_SETTING,
            show_envvar=True,
            help="API key, sent as a bearer token (when the API sets ORCHESTRATOR_API_KEYS).",
        ),
        click.option(
            "--json",
            "as_json",
            is_flag=True,
            help="Print the API's answer as JSON (for scripts) instead of tables.",
        ),
    )
    decorated: Callable[..., None] = with_access
    for option in reversed(options):
        decorated = option(decorated)
    return decorated
