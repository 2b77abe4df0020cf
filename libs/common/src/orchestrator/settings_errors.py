"""Configuration errors as a person reads them: one short message naming the setting, exit 2.

Every entry point (the ``orchestrator`` command and each role's own script) runs under
``exit_on_configuration_error``: a bad setting value, a database URL that can never work or a job
module that does not import ends the process with what was tried, which setting and how to fix
it, instead of a traceback from deep inside a driver. ``ORCHESTRATOR_DEBUG`` (``--debug``) adds
the traceback. A store that is merely down is not a configuration error: long-running roles keep
retrying it.
"""

from __future__ import annotations

import asyncio
import os
import sys
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlsplit, urlunsplit

DATABASE_SETTING = "ORCHESTRATOR_DATABASE_URL"
JOBS_SETTING = "ORCHESTRATOR_JOBS"
EXIT_CODE = 2
#: How long the start-up probe of the store waits for a connection before calling it down.
PROBE_TIMEOUT_SECONDS = 10.0
_SUPPORTED = "postgresql://user:password@host:5432/name or sqlite:///path/to/file.db"

T = TypeVar("T")


class ConfigurationError(Exception):
    """A setting stops this process; the message names the setting and says how to fix it."""


class JobModuleError(ConfigurationError, ImportError):
    """A module named in ``ORCHESTRATOR_JOBS`` does not import."""

    def __init__(self, module: str, cause: BaseException) -> None:
        summary = _one_line(cause)
        super().__init__(
            f"job module {module!r} ({JOBS_SETTING}) does not import: {summary}; make it "
            "importable from the current directory or through PYTHONPATH "
            f"(e.g. PYTHONPATH=/path/to/your/project), or fix {JOBS_SETTING}"
        )
        self.module = module


class StoreUnreachableError(ConfigurationError):
    """The store's URL looks right but nothing answers (refused, timed out): transient for a
    long-running role, fatal for a one-shot command."""


def shown_url(url: str) -> str:
    """The URL with its password masked: what a command prints ends up in shared logs."""
    try:
        parts = urlsplit(url)
        if parts.password is None:
            return url
        port = parts.port
    except ValueError:
        return "<unparsable URL>"
    host = parts.hostname or ""
    netloc = f"{parts.username or ''}:***@{host}" + (f":{port}" if port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def debug_enabled() -> bool:
    """``ORCHESTRATOR_DEBUG`` read directly: the settings object may be what failed."""
    return os.environ.get("ORCHESTRATOR_DEBUG", "").strip().lower() in ("1", "true", "yes", "on")


def exit_on_configuration_error(main: Callable[[], T]) -> T:
    """Run ``main``; a configuration error ends the process with its message and exit code 2."""
    try:
        return main()
    except Exception as exc:
        message = explain(exc)
        if message is None:
            raise
        if debug_enabled():
            traceback.print_exception(exc)
        else:
            message += "\n(run with --debug or ORCHESTRATOR_DEBUG=1 for the traceback)"
        print(f"error: {message}", file=sys.stderr, flush=True)  # noqa: T201 - the CLI's output
        raise SystemExit(EXIT_CODE) from None


def explain(exc: BaseException) -> str | None:
    """The message for a configuration error, or None when ``exc`` is not one."""
    import pydantic

    if isinstance(exc, ConfigurationError):
        return str(exc)
    if isinstance(exc, pydantic.ValidationError) and exc.title == "Settings":
        return _invalid_values(exc)
    return None


def _invalid_values(exc: object) -> str:
    import pydantic

    assert isinstance(exc, pydantic.ValidationError)
    lines = []
    for error in exc.errors():
        setting = "ORCHESTRATOR_" + str(error["loc"][0] if error["loc"] else "?").upper()
        setting = setting.replace("ORCHESTRATOR_ORCHESTRATOR_", "ORCHESTRATOR_")
        message = str(error["msg"]).removeprefix("Value error, ")
        lines.append(f"{setting}{_tried(setting)}: {message}")
    lines.append("fix: correct these environment variables (or the command-line options)")
    return "\n".join(lines)


def _tried(setting: str) -> str:
    value = os.environ.get(setting)
    if value is None:
        value = next((v for k, v in os.environ.items() if k.upper() == setting), None)
    if value is None or "KEY" in setting:
        return ""
    return f"={shown_url(value)!r}" if "URL" in setting else f"={value!r}"


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


# --- the database ---------------------------------------------------------------------------


def check_database_url(url: str) -> None:
    """Refuse a database URL that can never work, before any connection is tried."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    shown = shown_url(url)
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):
        raise ConfigurationError(
            f"{DATABASE_SETTING}={shown!r} is not a database URL; use {_SUPPORTED}"
        ) from None
    backend = parsed.get_backend_name()
    if backend not in ("postgresql", "postgres", "sqlite"):
        raise ConfigurationError(
            f"{DATABASE_SETTING}={shown!r}: {backend}:// is not supported; use {_SUPPORTED}"
        )
    if backend == "sqlite":
        _check_sqlite_path(shown, parsed.database)


def _check_sqlite_path(shown: str, database: str | None) -> None:
    if not database or database == ":memory:" or database.startswith("file:"):
        return
    folder = Path(database).expanduser().absolute().parent
    if not folder.is_dir():
        raise ConfigurationError(
            f"{DATABASE_SETTING}={shown!r}: the folder {str(folder)!r} does not exist; create it "
            f"(mkdir -p {folder}) or point {DATABASE_SETTING} at a file in an existing folder"
        )


def check_database(url: str, *, unreachable_is_error: bool) -> None:
    """Check the URL, then connect and ``SELECT 1``: an unknown database or refused credentials
    become a ``ConfigurationError``; a store that does not answer only when
    ``unreachable_is_error`` (one-shot commands), else the role's own retries deal with it."""
    check_database_url(url)
    try:
        asyncio.run(_select_one(url))
    except Exception as exc:
        problem = database_problem(exc, url)
        transient = problem is None or isinstance(problem, StoreUnreachableError)
        if transient and not unreachable_is_error:
            # Down, starting up, out of connections: the role's own retries wait it out.
            return
        if problem is None:
            raise
        raise problem from exc


async def _select_one(url: str) -> None:
    import sqlalchemy as sa

    from orchestrator.db import create_engine

    engine = create_engine(url, pool_size=1)
    try:
        async with asyncio.timeout(PROBE_TIMEOUT_SECONDS):
            async with engine.connect() as conn:
                await conn.execute(sa.text("SELECT 1"))
    finally:
        await engine.dispose()


def database_problem(exc: BaseException, url: str) -> ConfigurationError | None:
    """What a failed connection to the store says about ``ORCHESTRATOR_DATABASE_URL``."""
    shown = shown_url(url)
    for cause in _chain(exc):
        name = type(cause).__name__
        if name == "InvalidCatalogNameError":
            return ConfigurationError(
                f"{DATABASE_SETTING}={shown!r}: {_one_line(cause)}; create it "
                f"({_createdb(url)}) or point {DATABASE_SETTING} at an existing database"
            )
        if name in ("InvalidPasswordError", "InvalidAuthorizationSpecificationError"):
            return ConfigurationError(
                f"{DATABASE_SETTING}={shown!r}: the server refused the credentials "
                f"({_one_line(cause)}); fix the user or password in {DATABASE_SETTING}"
            )
        if "unable to open database file" in str(cause):
            return ConfigurationError(
                f"{DATABASE_SETTING}={shown!r}: SQLite cannot open the file ({_one_line(cause)}); "
                f"check that its folder exists and is writable, or change {DATABASE_SETTING}"
            )
        if isinstance(cause, OSError | TimeoutError):
            return StoreUnreachableError(
                f"{DATABASE_SETTING}={shown!r}: the database does not answer "
                f"({_one_line(cause)}); start it, or fix the host and port in {DATABASE_SETTING}"
            )
    return None


def _createdb(url: str) -> str:
    parts = urlsplit(url)
    options = [f"-h {parts.hostname}"] if parts.hostname else []
    options += [f"-p {parts.port}"] if parts.port else []
    options += [f"-U {parts.username}"] if parts.username else []
    return " ".join(["createdb", *options, parts.path.lstrip("/") or "NAME"])


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and what caused it: SQLAlchemy wraps the driver's error (``orig``) and asyncpg's
    adapter wraps the server's (``__cause__``)."""
    seen: set[int] = set()
    todo: list[BaseException] = [exc]
    while todo:
        current = todo.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        orig = getattr(current, "orig", None)
        for nxt in (orig, current.__cause__, current.__context__):
            if isinstance(nxt, BaseException):
                todo.append(nxt)
