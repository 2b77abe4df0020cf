"""Settings read and refused without any service: broker addresses, retention bounds, API keys,
and configuration errors as a person reads them (orchestrator.settings_errors). The same errors
through the real command, exit code included, are tests/test_settings_errors.py."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from pydantic import ValidationError

from orchestrator.settings import load_settings
from orchestrator.settings_errors import (
    EXIT_CODE,
    ConfigurationError,
    JobModuleError,
    StoreUnreachableError,
    check_database_url,
    database_problem,
    exit_on_configuration_error,
    explain,
    shown_url,
)

DAY = timedelta(days=1)
SECRET = "s3cret-pw"


def test_the_urls_setting_falls_back_to_the_single_url(monkeypatch: pytest.MonkeyPatch) -> None:
    one = "amqp://guest:guest@rabbit-a:5672/"
    monkeypatch.setenv("ORCHESTRATOR_AMQP_URL", one)
    monkeypatch.delenv("ORCHESTRATOR_AMQP_URLS", raising=False)
    assert load_settings().broker_urls == [one]
    many = "amqp://u:p@rabbit-a:5672/, amqp://u:p@rabbit-b:5672/,amqps://u:p@rabbit-c:5671/"
    monkeypatch.setenv("ORCHESTRATOR_AMQP_URLS", many)
    assert load_settings().broker_urls == [
        "amqp://u:p@rabbit-a:5672/",
        "amqp://u:p@rabbit-b:5672/",
        "amqps://u:p@rabbit-c:5671/",
    ]
    monkeypatch.setenv("ORCHESTRATOR_AMQP_URLS", "rabbit-a:5672")
    with pytest.raises(ValueError, match="amqp:// or amqps://"):
        load_settings()


def test_counter_retention_is_at_least_seven_days() -> None:
    assert load_settings(counter_retention="7d").counter_retention == 7 * DAY
    with pytest.raises(ValueError, match="at least 7 days"):
        load_settings(counter_retention="6d")
    assert load_settings().counter_retention == 30 * DAY
    assert load_settings().failed_job_retention is None


def test_short_keys_are_refused_naming_the_setting_not_the_key() -> None:
    with pytest.raises(ValidationError) as refused:
        load_settings(api_keys="long-enough-admin-key,tiny-secret:read")
    message = str(refused.value)
    assert "ORCHESTRATOR_API_KEYS" in message and "at least 16" in message
    assert "tiny-secret" not in message and "long-enough-admin-key" not in message
    assert load_settings(api_keys="x" * 16).parsed_api_keys[0].role == "admin"


def test_a_shown_url_masks_its_password() -> None:
    assert shown_url(f"postgresql://postgres:{SECRET}@db:5432/app") == (
        "postgresql://postgres:***@db:5432/app"
    )
    assert shown_url("amqp://guest@rabbit/") == "amqp://guest@rabbit/"
    assert shown_url(f"postgresql://u:{SECRET}@db:notaport/x") == "<unparsable URL>"


@pytest.mark.parametrize(
    ("url", "words"),
    [
        (f"mysql://root:{SECRET}@127.0.0.1/app", "mysql:// is not supported"),
        ("localhost/orchestrator", "is not a database URL"),
        (f"postgresql://postgres:{SECRET}@127.0.0.1:notaport/x", "is not a database URL"),
    ],
)
def test_a_database_url_that_can_never_work_is_refused_before_connecting(
    url: str, words: str
) -> None:
    with pytest.raises(ConfigurationError) as refused:
        check_database_url(url)
    message = str(refused.value)
    assert message.startswith("ORCHESTRATOR_DATABASE_URL=") and words in message
    assert SECRET not in message


def test_a_sqlite_file_in_a_missing_folder_is_refused_naming_the_folder(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="mkdir -p"):
        check_database_url(f"sqlite:///{tmp_path}/missing/orchestrator.db")
    for fine in (
        f"sqlite:///{tmp_path}/orchestrator.db",
        "sqlite:///:memory:",
        f"postgresql://postgres:{SECRET}@127.0.0.1:5432/app",
    ):
        check_database_url(fine)


def test_an_invalid_value_names_the_setting_and_what_was_tried(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ORCHESTRATOR_LOG_LEVEL", "LOUD")
    monkeypatch.setenv("ORCHESTRATOR_AMQP_URL", f"http://guest:{SECRET}@127.0.0.1:5672/")
    with pytest.raises(ValidationError) as refused:
        load_settings()
    message = explain(refused.value)
    assert message is not None
    lines = message.splitlines()
    assert any(line.startswith("ORCHESTRATOR_LOG_LEVEL='LOUD': ") for line in lines), message
    assert any(
        line.startswith("ORCHESTRATOR_AMQP_URL='http://guest:***@127.0.0.1:5672/': ")
        for line in lines
    ), message
    assert lines[-1].startswith("fix: ")
    assert SECRET not in message


def test_a_key_setting_never_shows_what_was_tried(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORCHESTRATOR_API_KEYS", "tiny-secret:read")
    with pytest.raises(ValidationError) as refused:
        load_settings()
    message = explain(refused.value)
    assert message is not None and message.startswith("ORCHESTRATOR_API_KEYS: ")
    assert "tiny-secret" not in message


def test_a_job_module_that_does_not_import_says_how_to_fix_it() -> None:
    error = JobModuleError("myapp.jobs", ModuleNotFoundError("No module named 'myapp'"))
    message = explain(error)
    assert message is not None
    assert "'myapp.jobs' (ORCHESTRATOR_JOBS)" in message and "PYTHONPATH" in message
    assert "ModuleNotFoundError: No module named 'myapp'" in message


class InvalidCatalogNameError(Exception):
    """Named as asyncpg's error for an unknown database (the check reads the name)."""


def test_the_drivers_error_becomes_a_configuration_error() -> None:
    url = f"postgresql://postgres:{SECRET}@127.0.0.1:5432/orch_missing"
    wrapped = RuntimeError("connection failed")
    wrapped.__cause__ = InvalidCatalogNameError('database "orch_missing" does not exist')
    unknown = database_problem(wrapped, url)
    assert isinstance(unknown, ConfigurationError)
    assert "createdb -h 127.0.0.1 -p 5432 -U postgres orch_missing" in str(unknown)
    assert SECRET not in str(unknown)
    down = database_problem(ConnectionRefusedError(111, "refused"), url)
    assert isinstance(down, StoreUnreachableError)
    assert database_problem(ValueError("something else"), url) is None


def test_a_configuration_error_ends_the_process_with_its_message(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("ORCHESTRATOR_DEBUG", raising=False)

    def main() -> None:
        raise ConfigurationError("ORCHESTRATOR_X: wrong")

    with pytest.raises(SystemExit) as ended:
        exit_on_configuration_error(main)
    assert ended.value.code == EXIT_CODE
    err = capsys.readouterr().err
    assert err.startswith("error: ORCHESTRATOR_X: wrong") and "--debug" in err
    assert "Traceback" not in err
    monkeypatch.setenv("ORCHESTRATOR_DEBUG", "1")
    with pytest.raises(SystemExit):
        exit_on_configuration_error(main)
    assert "Traceback" in capsys.readouterr().err

    def broken() -> None:
        raise KeyError("not a setting")

    with pytest.raises(KeyError):
        exit_on_configuration_error(broken)
